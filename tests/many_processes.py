"""What the recipes' tests check of a run launched as two CPU processes (accelerate launch, DDP over gloo) with
--overwrite_output_dir --push_to_hub over a finished one-process run: the same files as that run, every write
from the main process and each file written once, one commit on the Hub, result lines printed once."""

import json
import os
import shutil
import subprocess

import numpy as np

from tests.conftest import HUB_TOKEN, audit_events, audited, hub_env, launch, relative_files, results_of

# Cheap on top of any sentiment test config: 64 training reviews, 40 held out, two steps per process.
TINY_CLASSIFIER = [
    "--max_train_samples",
    "64",
    "--eval_size",
    "40",
    "--max_length",
    "64",
    "--head_tokens",
    "16",
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "8",
]


def two_processes_over(
    reference: str, script: str, args: list[str], tmp_path, hub, repo: str, extra_env: dict | None = None
) -> tuple[dict, str, subprocess.CompletedProcess]:
    """Copy the finished one-process run `reference`, run `script` as two processes over the copy, check it."""
    two = str(tmp_path / "two")
    shutil.copytree(reference, two)  # an older finished run the two processes must replace, not half-delete
    log = str(tmp_path / "writes.jsonl")
    env = audited({**hub_env(hub, str(tmp_path / "hf")), **(extra_env or {})}, str(tmp_path), log)
    flags = ["--output_dir", two, "--overwrite_output_dir", "--push_to_hub", "--hub_model_id", repo]
    double = launch(script, *args, *flags, processes=2, env=env)
    results = results_of(double, two)
    assert HUB_TOKEN not in double.stdout + double.stderr

    assert double.stdout.count(" x 2 processes") == 1  # the global batch line, printed once
    assert double.stdout.count(f"Saved to {two}") == 1
    tensorboard_logs = {path for path in relative_files(two) if path.startswith("runs/")}  # only when asked for
    assert relative_files(two) - tensorboard_logs == relative_files(reference)
    assert not os.path.exists(two + ".staging") and not os.path.exists(two + ".replaced")
    events = [event for event in audit_events(log) if event["path"].startswith(two)]
    assert events, "the write audit saw nothing"
    assert {event["rank"] for event in events} == {"0"}, [e for e in events if e["rank"] != "0"][:5]
    # Each file written once; TensorBoard's event logs grow by appending, from the main process alone.
    written = [event["path"] for event in events if event["kind"] == "write" and "/runs/" not in event["path"]]
    twice = sorted({path for path in written if written.count(path) > 1})
    assert not twice, twice
    repo_state = hub.repos[repo]
    assert len(repo_state.commits) == 1, repo_state.commits
    assert set(repo_state.files) >= {"README.md", "all_results.json"}
    return results, two, double


def held_out_accuracy(folder: str) -> float:
    """Accuracy of a saved classifier on its run's whole held-out set, scored here in one process."""
    from recipe_utils.core.args import DataArguments, ModelArguments
    from recipe_utils.data.reviews import prepare_classification_data, tokenize_reviews
    from recipe_utils.evaluation.inference import predict_probabilities
    from recipe_utils.models.adapters import QuantizationArguments
    from recipe_utils.models.classifiers import load_saved_classifier
    from recipe_utils.models.loading import load_tokenizer

    with open(os.path.join(folder, "run_config.json")) as handle:
        config = json.load(handle)

    def fields(cls):
        return cls(**{name: config[name] for name in cls.__dataclass_fields__ if name in config})

    model_args, data_args = fields(ModelArguments), fields(DataArguments)
    data = prepare_classification_data(data_args, config["seed"])
    tokenizer = load_tokenizer(ModelArguments(model_name_or_path=folder))
    model = load_saved_classifier(folder, model_args, fields(QuantizationArguments), data.label_names)
    tokenized = tokenize_reviews(data.eval, tokenizer, data_args)
    batch = config["per_device_eval_batch_size"]
    predictions = predict_probabilities(model, tokenized, tokenizer, batch).argmax(axis=1)
    return float(np.mean(predictions == np.array(tokenized["labels"])))


def check_classifier_run(results: dict, folder: str, monkeypatch) -> None:
    """Gathered, not one process's shard: every held-out review counted, and the figure is the saved model's."""
    assert results["eval_samples"] == 40 and sum(sum(row) for row in results["eval_confusion_matrix"]) == 40
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes"))
    assert results["eval_accuracy"] == held_out_accuracy(folder)
