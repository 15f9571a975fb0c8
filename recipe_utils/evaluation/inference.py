"""Batch scoring of reviews with a classifier (used for evaluation, baselines and judging), and its timing
against the default pipeline call."""

import time

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from recipe_utils.core.distributed import gather_rows, shard
from recipe_utils.data.reviews import tokenize_reviews
from recipe_utils.evaluation.metrics import classification_metrics


@torch.inference_mode()
def predict_probabilities(model, tokenized, tokenizer, batch_size: int = 16) -> np.ndarray:
    """Class probabilities for every row of `tokenized`, in its order.

    Rows are scored longest-first so each padded batch holds reviews of similar length:
    far less padding than the dataset's order, hence far less wasted compute. Under several processes each
    scores every world_size-th batch and the rows are gathered, so every process returns all of them.
    """
    model.eval()
    collator = DataCollatorWithPadding(tokenizer)
    features = tokenized.remove_columns([name for name in tokenized.column_names if name == "labels"])
    order = np.argsort([-len(ids) for ids in features["input_ids"]], kind="stable")
    device = next(model.parameters()).device
    probabilities = np.zeros((len(features), model.config.num_labels), dtype=np.float32)
    starts = range(0, len(order), batch_size)
    scored = []
    for index in shard(len(starts)):
        rows = order[starts[index] : starts[index] + batch_size]
        batch = collator([features[int(row)] for row in rows])
        logits = model(**{key: value.to(device) for key, value in batch.items()}).logits
        scored.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    for index, batch_probabilities in zip(range(len(starts)), gather_rows(scored, len(starts)), strict=True):
        probabilities[order[starts[index] : starts[index] + batch_size]] = batch_probabilities
    return probabilities


def timed_scoring(model, dataset, tokenizer, data_args, batch_size: int = 16) -> tuple[np.ndarray, float]:
    """Probabilities of every review of `dataset` and the wall time from text to scores (tokenizing included)."""
    start = time.perf_counter()
    probabilities = predict_probabilities(model, tokenize_reviews(dataset, tokenizer, data_args), tokenizer, batch_size)
    return probabilities, time.perf_counter() - start


def warm_up(model, dataset, tokenizer, data_args, batch_size: int = 16) -> float:
    """Score a few batches of every length class first, so that neither a compiled model's compilation nor the
    first calls' thread set-up is timed. Returns the seconds it took."""
    lengths = np.array([len(text) for text in dataset["text"]])
    picks = np.argsort(lengths)[np.linspace(0, len(lengths) - 1, 3 * batch_size).astype(int)]
    return timed_scoring(model, dataset.select(picks), tokenizer, data_args, batch_size)[1]


def time_pipeline(model_path: str, texts: list[str], device: str = "cpu", repeats: int = 2):
    """The default call a user would make, `pipeline("text-classification")` in fp32, one review at a time
    with the tokenizer's own truncation: the baseline every scoring speed-up is measured against.

    Warmed up, then timed `repeats` times and the fastest pass kept: one pass over the same 1,000 reviews ran
    anywhere from 18 to 26 reviews/s on one VM, and a speed-up must beat the fastest baseline.
    Returns the pipeline, its predicted label ids and the fastest pass's seconds."""
    from transformers import pipeline

    classifier = pipeline("text-classification", model=model_path, device=device)
    classifier(texts[:8], truncation=True)
    elapsed = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        # truncation=True: without it the pipeline fails on reviews longer than the model's window.
        predictions = classifier(texts, truncation=True)
        elapsed = min(elapsed, time.perf_counter() - start)
    label_ids = {name: index for index, name in classifier.model.config.id2label.items()}
    return classifier, np.array([label_ids[p["label"]] for p in predictions]), elapsed


def score_held_out(model, tokenized, tokenizer, batch_size: int, prefix: str) -> tuple[dict, np.ndarray]:
    """Held-out metrics under `prefix` with the reviews scored per second (the cost of an answer, tokenized
    reviews in), and the class probabilities of every review."""
    start = time.perf_counter()
    probabilities = predict_probabilities(model, tokenized, tokenizer, batch_size)
    speed = len(tokenized) / (time.perf_counter() - start)
    predictions = probabilities.argmax(axis=1)
    metrics = classification_metrics(tokenized["labels"], predictions, num_labels=model.config.num_labels)
    results = {f"{prefix}_{key}": value for key, value in metrics.items()}
    results[f"{prefix}_reviews_per_second"] = speed
    return results, probabilities
