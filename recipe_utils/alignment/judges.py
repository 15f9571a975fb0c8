"""Judges of generated reviews: the fine-tuned sentiment classifier, and an independent judge of another kind.

A generator tuned against one judge (DPO's pair ranking, RL's reward) can learn that judge's blind spots, so every
generation figure is also read by a second judge that took no part in training: TF-IDF + logistic regression
fitted on labelled reviews the first judge never trained on and the generator's held-out reviews never include.
"""

import os

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from recipe_utils.core.errors import RecipeError
from recipe_utils.core.outputs import read_json
from recipe_utils.evaluation.intervals import accuracy_interval


class TfidfJudge:
    """P(positive) from word uni+bigram TF-IDF and logistic regression: a judge no neural policy was tuned against."""

    name = "TF-IDF + logistic regression"

    def __init__(self, texts: list[str], labels: list[int], seed: int):
        if len(set(labels)) != 2:
            raise RecipeError("the independent judge needs reviews of both labels to fit on")
        self.pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
            LogisticRegression(C=4.0, max_iter=2000, random_state=seed),
        )
        self.pipeline.fit(list(texts), list(labels))
        self.fitted_on = len(texts)

    def positive_probability(self, texts: list[str]) -> np.ndarray:
        return self.pipeline.predict_proba(list(texts))[:, 1]


def sentiment_classifier_judge(name: str, positive_label: str, device="cpu", trust_remote_code: bool = False):
    """The sentiment classifier `name` (a run folder or a Hub id) as a judge of P(positive), on `device`."""
    from transformers import AutoModelForSequenceClassification

    from recipe_utils.alignment.preferences import SentimentJudge
    from recipe_utils.core.args import ModelArguments
    from recipe_utils.models.loading import load_pretrained, load_tokenizer

    judge_args = ModelArguments(model_name_or_path=name, trust_remote_code=trust_remote_code)
    model = load_pretrained(AutoModelForSequenceClassification, judge_args).to(device)
    return SentimentJudge(model, load_tokenizer(judge_args), positive_label)


def classifier_training_texts(judge_folder: str) -> set[str]:
    """The reviews the sft_sentiment classifier in `judge_folder` trained on, rebuilt from its run_config.json
    (same data, held-out size, sample cap and seed give the same draw); empty when the folder has none."""
    from recipe_utils.core.args import DataArguments
    from recipe_utils.data.reviews import prepare_classification_data

    config = read_json(os.path.join(judge_folder, "run_config.json")) if os.path.isdir(judge_folder) else None
    if not config or "eval_size" not in config:
        return set()
    judge_data = DataArguments(
        dataset_name=config["dataset_name"],
        dataset_test_split=config.get("dataset_test_split"),
        eval_size=config["eval_size"],
        max_train_samples=config.get("max_train_samples"),
    )
    return set(prepare_classification_data(judge_data, config["seed"]).train["text"])


def independent_judge(pool_texts, pool_labels, excluded: set[str], size: int, seed: int) -> TfidfJudge:
    """A TfidfJudge fitted on up to `size` reviews of the pool (a random draw) that are not in `excluded`."""
    rng = np.random.default_rng(seed)
    rows = [i for i, text in enumerate(pool_texts) if text not in excluded]
    rows = [rows[i] for i in rng.permutation(len(rows))[:size]]
    if len(rows) < 50:
        raise RecipeError(f"only {len(rows)} reviews left to fit the independent judge on; lower the judge's sample")
    return TfidfJudge([pool_texts[i] for i in rows], [int(pool_labels[i]) for i in rows], seed)


def share_with_interval(verdicts, seed: int) -> dict:
    """The share of True verdicts and its 95% bootstrap interval."""
    verdicts = np.asarray(verdicts, dtype=bool)
    low, high = accuracy_interval(verdicts, seed) if len(verdicts) else (0.0, 0.0)
    return {"share": float(verdicts.mean()) if len(verdicts) else 0.0, "low": low, "high": high, "n": len(verdicts)}


def independent_judge_of_reviews(dataset_name: str, classifier_folder: str | None, held_out, size: int, seed: int):
    """The independent judge for a generator tuned against the classifier in `classifier_folder`: fitted on labelled
    reviews of `dataset_name` that the classifier never trained on and that are not among `held_out` (the texts
    whose openings prompt the judged samples). None when the dataset has no sentiment labels."""
    from recipe_utils.core.args import DataArguments
    from recipe_utils.data.reviews import prepare_classification_data

    if size < 1:
        return None
    try:
        data = prepare_classification_data(DataArguments(dataset_name=dataset_name, eval_size=2), seed)
    except RecipeError:
        return None
    texts = list(data.train["text"]) + list(data.eval["text"])
    labels = list(data.train["label"]) + list(data.eval["label"])
    excluded = classifier_training_texts(classifier_folder) if classifier_folder else set()
    return independent_judge(texts, labels, excluded | set(held_out), size, seed)
