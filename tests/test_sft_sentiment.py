"""End-to-end runs of the sentiment recipe on real reviews and the real MiniLM encoder, as a user runs it."""

import json
import os

import numpy as np
import pytest

from tests.conftest import (
    assert_token_absent,
    folder_snapshot,
    push_and_pull,
    results_of,
    run_in_process,
)
from tests.many_processes import TINY_CLASSIFIER, check_classifier_run, two_processes_over

CONFIG = "recipes/configs/sft_sentiment/demo.yaml"
# Small enough for CI, large enough to show real learning: 640 reviews, 40 steps at 128 tokens, head+tail.
TINY = [
    "--max_train_samples",
    "640",
    "--eval_size",
    "200",
    "--max_length",
    "128",
    "--head_tokens",
    "32",
    "--learning_rate",
    "1e-4",
    "--logging_steps",
    "5",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("sft") / "run")
    result = run_in_process("recipes/sft_sentiment.py", "--config", CONFIG, *TINY, "--output_dir", output_dir)
    return output_dir, results_of(result, output_dir), result.stdout


def test_tiny_run_learns_well_above_the_majority_baseline(trained_run):
    _, results, _ = trained_run
    assert results["eval_accuracy"] >= 0.70, results["eval_accuracy"]
    assert results["eval_accuracy"] > results["before_accuracy"] + 0.15
    assert results["eval_samples"] == 200 and results["eval_accuracy"] >= results["baseline_majority_accuracy"] + 0.15


def test_training_loss_falls(trained_run):
    output_dir, _, _ = trained_run
    with open(os.path.join(output_dir, "log_history.json")) as handle:
        losses = [entry["loss"] for entry in json.load(handle) if "loss" in entry]
    assert len(losses) >= 4 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.05, losses


def test_output_folder_holds_everything_to_rebuild_the_result(trained_run):
    output_dir, results, stdout = trained_run
    files = set(os.listdir(output_dir))
    expected = {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "README.md",
        "all_results.json",
        "run_config.json",
        "log_history.json",
        "training_curves.png",
        "confusion_matrix.png",
    }
    assert expected <= files, expected - files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)  # safetensors only, no pickles
    for prefix in ("baseline_majority", "baseline_tfidf", "baseline_tfidf_tuned", "before", "eval"):
        assert {f"{prefix}_accuracy", f"{prefix}_f1", f"{prefix}_precision", f"{prefix}_recall"} <= set(results)
    assert {"train_runtime", "train_loss", "trainable_params", "global_batch_size"} <= set(results)
    assert "| fine-tuned |" in stdout and "| tfidf |" in stdout and "| tfidf tuned |" in stdout


def test_model_card_reports_the_measured_numbers(trained_run):
    from huggingface_hub import ModelCard

    output_dir, results, _ = trained_run
    card = ModelCard.load(os.path.join(output_dir, "README.md"))
    metrics = {m["type"]: m["value"] for m in card.data.to_dict()["model-index"][0]["results"][0]["metrics"]}
    assert metrics["accuracy"] == round(results["eval_accuracy"], 4)
    assert "{{" not in card.text and "None" not in card.text.split("## Framework versions")[0]
    assert f"| before fine-tuning | {results['before_accuracy']:.4f} |" in card.text
    assert "- *before fine-tuning*:" in card.text


def test_pipeline_on_the_saved_folder_reads_plain_verdicts(trained_run):
    from transformers import pipeline

    output_dir, _, _ = trained_run
    classifier = pipeline("text-classification", model=output_dir)
    verdicts = classifier(
        [
            "An absolute delight, wonderful acting and a moving story.",
            "Awful. Boring, badly acted and far too long; a waste of time.",
        ]
    )
    assert [v["label"] for v in verdicts] == ["positive", "negative"]


def test_existing_output_is_never_overwritten_without_the_flag(trained_run, capsys, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes"))
    import sft_sentiment

    output_dir, _, _ = trained_run
    before = folder_snapshot(output_dir)
    with pytest.raises(SystemExit) as exited:  # in-process: the same entry point `python recipes/...` runs
        sft_sentiment.cli(["--config", CONFIG, *TINY, "--output_dir", output_dir])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: output_dir")
    assert folder_snapshot(output_dir) == before


def test_push_to_the_local_hub_and_pull_back_reproduces_the_evaluation(trained_run, local_hub, tmp_path):
    output_dir, results, _ = trained_run
    report = push_and_pull(local_hub, output_dir, "tester/minilm-imdb-sft", "classifier", str(tmp_path / "hf"))
    assert report["differing_files"] == []
    assert {"model.safetensors", "tokenizer.json", "README.md", "all_results.json", "training_curves.png"} <= set(
        report["files"]
    )
    assert not any(name.endswith((".bin", ".pkl", ".pt")) for name in report["files"])
    assert report["max_logit_difference"] == 0.0
    # The pulled card's usage code keeps head and tail as training did: the card's accuracy, exactly.
    assert report["pulled_accuracy"] == results["eval_accuracy"]
    # So does predict.py on the Hub id: it reads the run's truncation from the repo with the Hub client.
    assert report["predict_accuracy"] == results["eval_accuracy"]
    # The card's model-index holds the run's own numbers, and its usage snippet names the repo.
    assert report["card_eval_results"]["accuracy"] == round(results["eval_accuracy"], 4)
    assert report["card_eval_results"]["f1"] == round(results["eval_f1"], 4)
    assert (
        'repo = "tester/minilm-imdb-sft"' in report["card_text"]
        and "--model tester/minilm-imdb-sft " in report["card_text"]
    )
    assert_token_absent(output_dir, str(tmp_path))


def test_two_processes_over_a_finished_run_write_once_publish_once_and_score_everything(
    trained_run, tmp_path, local_hub, monkeypatch
):
    reference, _, _ = trained_run
    args = ["--config", CONFIG, *TINY, *TINY_CLASSIFIER]
    results, folder, _ = two_processes_over(
        reference, "recipes/sft_sentiment.py", args, tmp_path, local_hub, "tester/ddp-sft"
    )
    check_classifier_run(results, folder, monkeypatch)


def test_demo_report_holds_the_run_figures_with_paired_tests_and_links_that_resolve(trained_run):
    """REPORT.md's sentiment section, written from a real run: its figures are the run's all_results.json,
    its McNemar p-values those of the per-review answers, its error analysis the most confident mistakes."""
    import math
    import re

    from demo.report import write_report
    from demo.tour import STAGES
    from recipe_utils.evaluation.predictions import read_predictions

    output_dir, results, _ = trained_run
    stage = next(stage for stage in STAGES if stage.name == "sft_sentiment")
    stage = type(stage)(stage.name, stage.summary, output_dir, stage.configs, stage.headline)
    outputs = os.path.dirname(output_dir)
    report = write_report([stage], {"sft_sentiment": {"seconds": 61.0, "machine": "test CPU"}}, outputs)
    text = open(report.path, encoding="utf-8").read()

    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in text.splitlines() if line.startswith("| ")}
    assert float(rows["fine-tuned MiniLM"][0]) == round(results["eval_accuracy"], 4)
    answers = read_predictions(output_dir)
    labels = [row["label"] for row in answers]
    model_right = [row["prediction"] == row["label"] for row in answers]
    for name, prefix in (
        ("TF-IDF + logistic regression (defaults)", "baseline_tfidf"),
        ("majority class", "baseline_majority"),
    ):
        assert float(rows[name][0]) == round(results[f"{prefix}_accuracy"], 4)
        other_right = [row[prefix] == label for row, label in zip(answers, labels, strict=True)]
        only_model = sum(m and not o for m, o in zip(model_right, other_right, strict=True))
        only_other = sum(o and not m for m, o in zip(model_right, other_right, strict=True))
        n, k = only_model + only_other, min(only_model, only_other)
        p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0  # exact McNemar
        shown = rows[name][7].strip()
        assert shown == ("<0.001" if p < 0.001 else f"{p:.3f}"), (name, shown, p)
        difference = 100 * (sum(model_right) - sum(other_right)) / len(labels)
        assert rows[name][5].strip() == f"{difference:+.1f}"

    wrong = sorted((-max(row["probabilities"]), row["text"]) for row in answers if row["prediction"] != row["label"])
    first_error = " ".join(wrong[0][1].replace("<br />", " ").split())[:60]
    assert first_error in text, "the most confidently wrong review is not the first one shown"

    for target in re.findall(r"\]\(([^)]+)\)", text):
        assert os.path.exists(os.path.join(outputs, target)), f"REPORT.md links to {target}, which is missing"
    assert "training_curves.png" in text and "1 min 01 s" in text
    rerun = write_report([stage], {"sft_sentiment": {"seconds": 61.0, "machine": "test CPU"}}, outputs)
    assert open(rerun.path, encoding="utf-8").read() == text, "the same run gave a different report"


def test_demo_report_sets_the_llm_beside_the_encoder_on_the_same_reviews(trained_run, tiny_llama, tmp_path):
    """REPORT.md's "Encoder or LLM?" from real runs: a tiny LLM classifier (LoRA on the random tiny Llama, the
    same model prompted as its baselines) on the encoder's held-out reviews. Each prompted row's accuracy is the
    LLM run's, its paired difference the per-review answers' of the two runs; the sentiment section shows the
    prompted rows too."""
    from demo.report import write_report
    from demo.tour import STAGES
    from recipe_utils.evaluation.predictions import read_predictions

    output_dir, results, _ = trained_run
    llm_dir = str(tmp_path / "llm_classifier")
    llm_run = run_in_process(
        "recipes/lora.py",
        "--config",
        "recipes/configs/lora/smollm2_classifier.yaml",
        *TINY,
        "--model_name_or_path",
        tiny_llama,
        "--prompted_llm",
        tiny_llama,
        "--prompted_llm_calibration_reviews",
        "40",
        "--learning_rate",
        "5e-3",
        "--output_dir",
        llm_dir,
    )
    llm_results = results_of(llm_run, llm_dir)
    stages = {stage.name: stage for stage in STAGES}
    chosen = [
        type(stage)(stage.name, stage.summary, folder, stage.configs, stage.headline)
        for stage, folder in ((stages["sft_sentiment"], output_dir), (stages["llm_classifier"], llm_dir))
    ]
    report = write_report(chosen, {}, str(tmp_path))
    text = open(report.path, encoding="utf-8").read()
    section = text.split("## Encoder or LLM?")[1].split("\n## ")[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in section.splitlines() if line.startswith("| ")}

    encoder = read_predictions(output_dir)
    llm = read_predictions(llm_dir)
    assert [row["text"] for row in encoder] == [row["text"] for row in llm]
    encoder_right = np.array([row["prediction"] == row["label"] for row in encoder])
    for name, key in (
        ("SmolLM2 prompted, zero-shot", "baseline_llm_zero_shot"),
        ("SmolLM2 prompted, few-shot, calibrated", "baseline_llm_few_shot_calibrated"),
    ):
        assert float(rows[name][1]) == round(llm_results[f"{key}_accuracy"], 4)
        right = np.array([row[key] == row["label"] for row in llm])
        difference = 100 * (right.mean() - encoder_right.mean())
        assert rows[name][4].strip().startswith(f"{difference:+.1f} ("), (name, rows[name][4])
        assert name in text.split("## Encoder or LLM?")[0], f"the sentiment section lacks {name}"
    llm_row = next(cells for label, cells in rows.items() if label.startswith("SmolLM2 + LoRA"))
    assert float(llm_row[1]) == round(llm_results["eval_accuracy"], 4)
    assert "tuned TF-IDF baseline" in section and "zero-shot" in section
