"""Bad input, for every recipe: one `error:` line, exit code 2, no traceback, nothing in output_dir changed.

Cases run in-process through each recipe's command-line entry point (the same code `python recipes/X.py`
runs, without paying for a fresh interpreter per case); one case also runs as a real process.
Handled without an error, by design: empty texts are dropped and counted (empty_texts_dropped), and very
long texts are truncated to max_length / packed into blocks.
"""

import os
import sys

import pytest

from recipe_utils.training.task_launch import run_task
from tests.conftest import ROOT, folder_snapshot, run_script

sys.path.insert(0, os.path.join(ROOT, "recipes"))
import clm_distilgpt2  # noqa: E402
import dpo_bonus  # noqa: E402
import sft_sentiment  # noqa: E402

RECIPES = {
    "sft_sentiment": (lambda argv: sft_sentiment.cli(argv), "recipes/configs/sft_sentiment/demo.yaml"),
    "lora": (lambda argv: run_task({"peft_method": "lora"}, argv), "recipes/configs/lora/demo.yaml"),
    "qlora": (
        lambda argv: run_task({"peft_method": "lora", "load_in_4bit": True}, argv),
        "recipes/configs/qlora/demo.yaml",
    ),
    "clm_distilgpt2": (lambda argv: clm_distilgpt2.cli(argv), "recipes/configs/clm_distilgpt2/demo.yaml"),
    "dpo_bonus": (lambda argv: dpo_bonus.cli(argv), "recipes/configs/dpo_bonus/demo.yaml"),
}
# Recipes that read labelled reviews (the causal LM's demo asks for reviews of a given label).
CLASSIFIERS = ("sft_sentiment", "lora", "qlora", "clm_distilgpt2")
NOT_UTF8 = b"text,label\n" + b"caf\xe9 cr\xe8me, great\n" * 30
GARBAGE_PARQUET = b"PAR1 this is not a parquet file"

# (case id, recipes it applies to, files to write, arguments ({name} = path of a written file), message)
COMMON = [
    ("yaml-syntax", {"c.yaml": "output_dir: [unclosed\n"}, ["--config", "{c.yaml}"], "cannot read config file"),
    ("yaml-unknown-key", {"c.yaml": "learning_rte: 0.1\n"}, ["--config", "{c.yaml}"], "unknown key 'learning_rte'"),
    ("cli-unknown-key", {}, ["--learning_rte", "0.1"], "unknown argument 'learning_rte'"),
    ("wrong-type", {}, ["--num_train_epochs", "two"], "invalid float value: 'two'"),
    ("negative-learning-rate", {}, ["--learning_rate=-1e-4"], "learning_rate must be positive"),
    ("zero-batch", {}, ["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be at least 1"),
]
DATASET = [
    ("missing-file", {}, ["--dataset_name", "missing.csv"], "dataset file not found"),
    ("unreadable-file", {"d.parquet": GARBAGE_PARQUET}, ["--dataset_name", "{d.parquet}"], "cannot read"),
    ("not-utf8", {"d.csv": NOT_UTF8}, ["--dataset_name", "{d.csv}"], "not UTF-8"),
    ("missing-text-column", {"d.csv": "review,label\nok,1\n"}, ["--dataset_name", "{d.csv}"], "column 'text'"),
    ("hub-id-offline", {}, ["--dataset_name", "nobody/no-such-dataset"], "cannot load dataset"),
]
CLASSIFICATION = [
    ("empty-dataset", {"d.csv": "text,label\n"}, ["--dataset_name", "{d.csv}"], "has no rows"),
    ("missing-label-column", {"d.csv": "text\nok\n"}, ["--dataset_name", "{d.csv}"], "column 'label'"),
    (
        "labels-outside-classes",
        {"d.csv": "text,label\n" + "".join(f"t{i},{i % 3}\n" for i in range(40))},
        ["--dataset_name", "{d.csv}"],
        "values outside the 2 classes",
    ),
    (
        "only-empty-texts",
        {"d.csv": 'text,label\n"",0\n"  ",1\n'},
        ["--dataset_name", "{d.csv}"],
        "empty after cleaning",
    ),
    ("model-hub-id-offline", {}, ["--model_name_or_path", "nobody/no-such-model"], "cannot load"),
]
PER_RECIPE = {
    "sft_sentiment": [
        ("k-above-layer-count", {}, ["--freeze_strategy", "top_k", "--unfreeze_top_k", "99"], "layer count 6"),
    ],
    "lora": [("lora-targets-match-nothing", {}, ["--lora_target_modules", "no_such_layer"], "match no module")],
    "qlora": [("lora-targets-match-nothing", {}, ["--lora_target_modules", "no_such_layer"], "match no module")],
    "clm_distilgpt2": [
        (
            "only-empty-texts",
            {"d.csv": 'text,label\n"",0\n"  ",1\n'},
            ["--dataset_name", "{d.csv}"],
            "empty after cleaning",
        ),
        (
            "text-only-empty-texts",
            {"d.csv": 'text\n""\n"  "\n'},
            ["--dataset_name", "{d.csv}", "--data_shape", "text", "--label_column", ""],
            "fewer than two non-empty",
        ),
        ("conversational-without-labels", {}, ["--label_column", ""], "needs labelled reviews"),
        ("model-hub-id-offline", {}, ["--model_name_or_path", "nobody/no-such-model"], "cannot load"),
    ],
    "dpo_bonus": [
        ("pairs-missing-file", {}, ["--preference_dataset", "missing.jsonl"], "dataset file not found"),
        ("pairs-empty", {"p.jsonl": ""}, ["--preference_dataset", "{p.jsonl}"], "has no rows"),
        (
            "pairs-missing-rejected",
            {"p.jsonl": '{"prompt": "A", "chosen": " b"}\n'},
            ["--preference_dataset", "{p.jsonl}"],
            "column 'rejected'",
        ),
        (
            "pairs-missing-prompt",
            {"p.jsonl": '{"chosen": " b", "rejected": " c"}\n'},
            ["--preference_dataset", "{p.jsonl}"],
            "column 'prompt'",
        ),
        ("no-judge-no-pairs", {}, ["--judge_model", "", "--preference_dataset", ""], "set judge_model"),
        ("one-sample-per-prompt", {}, ["--samples_per_prompt", "1"], "samples_per_prompt must be at least 2"),
        ("adapter-method", {}, ["--peft_method", "ia3"], "not peft_method=ia3"),
        ("policy-hub-id-offline", {}, ["--model_name_or_path", "nobody/no-such-model"], "cannot load"),
    ],
}


def cases():
    for recipe in RECIPES:
        table = list(COMMON) + list(PER_RECIPE[recipe])
        if recipe != "dpo_bonus":
            table += DATASET
        if recipe in CLASSIFIERS:
            table += CLASSIFICATION
        for case_id, files, arguments, message in table:
            yield pytest.param(recipe, files, arguments, message, id=f"{recipe}-{case_id}")


@pytest.fixture
def existing_output(tmp_path):
    output_dir = tmp_path / "earlier_run"
    output_dir.mkdir()
    (output_dir / "all_results.json").write_text('{"eval_accuracy": 0.9}\n')
    (output_dir / "model.safetensors").write_bytes(b"weights of an earlier run")
    return str(output_dir)


@pytest.mark.parametrize(("recipe", "files", "arguments", "message"), list(cases()))
def test_bad_input_ends_in_one_line_and_changes_nothing(
    recipe, files, arguments, message, tmp_path, existing_output, capsys, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry, config = RECIPES[recipe]
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    arguments = [str(tmp_path / arg[1:-1]) if arg[1:-1] in files else arg for arg in arguments]
    config_args = [] if "--config" in arguments else ["--config", config]
    before = folder_snapshot(existing_output)
    # --overwrite_output_dir: even a run allowed to replace the folder must fail before touching it.
    with pytest.raises(SystemExit) as exit_info:
        entry([*config_args, *arguments, "--output_dir", existing_output, "--overwrite_output_dir"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], lines[-3:]
    assert folder_snapshot(existing_output) == before


def test_a_real_process_prints_no_traceback(existing_output):
    before = folder_snapshot(existing_output)
    result = run_script(
        "recipes/sft_sentiment.py",
        "--config",
        RECIPES["sft_sentiment"][1],
        "--dataset_name",
        "missing.csv",
        "--output_dir",
        existing_output,
        "--overwrite_output_dir",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: dataset file not found: missing.csv"
    assert folder_snapshot(existing_output) == before


@pytest.mark.parametrize(
    "arguments, stdin, message",
    [
        (["--model", "missing_model_folder", "Loved it"], None, "missing_model_folder"),
        (["--model", "outputs/sft_sentiment"], "\n  \n", "no text to classify"),
    ],
    ids=["missing-model", "empty-stdin"],
)
def test_predict_ends_bad_input_in_one_line(arguments, stdin, message):
    result = run_script("recipes/predict.py", *arguments, stdin=stdin, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-500:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
