"""Per-review held-out predictions, saved beside a classifier so a reader can recompute its figures, test it
against its baselines on the same reviews (McNemar) and read the reviews it gets wrong."""

import json
import os

import numpy as np

from recipe_utils.core.outputs import write_text

PREDICTIONS_FILE = "eval_predictions.jsonl"


def write_predictions(folder: str, texts, labels, probabilities: np.ndarray, others: dict[str, np.ndarray]) -> None:
    """One JSON line per held-out review: its text and label, the model's class probabilities and prediction,
    and the prediction of every other model scored on it (before fine-tuning, baselines), by name."""
    lines = []
    for row, (text, label) in enumerate(zip(texts, labels, strict=True)):
        record = {
            "text": text,
            "label": int(label),
            "prediction": int(probabilities[row].argmax()),
            "probabilities": [round(float(p), 6) for p in probabilities[row]],
            **{name: int(predictions[row]) for name, predictions in others.items()},
        }
        lines.append(json.dumps(record) + "\n")
    write_text(os.path.join(folder, PREDICTIONS_FILE), "".join(lines))


def read_predictions(folder: str) -> list[dict]:
    with open(os.path.join(folder, PREDICTIONS_FILE), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
