"""Classification metrics computed offline with scikit-learn (no metric scripts from the Hub)."""

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(labels, predictions, num_labels: int = 2) -> dict:
    """accuracy, precision/recall/F1 (binary on the positive class when there are two classes) and macro F1."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    metrics = {"accuracy": float(accuracy_score(labels, predictions))}
    if num_labels == 2:
        precision, recall, f1, _ = precision_recall_fscore_support(
            labels, predictions, average="binary", pos_label=1, zero_division=0
        )
        metrics.update(precision=float(precision), recall=float(recall), f1=float(f1))
    metrics["f1_macro"] = float(
        f1_score(labels, predictions, average="macro", labels=range(num_labels), zero_division=0)
    )
    return metrics


def confusion(labels, predictions, num_labels: int = 2) -> list[list[int]]:
    """Rows are true classes, columns predicted classes."""
    return confusion_matrix(labels, predictions, labels=list(range(num_labels))).tolist()


def compute_metrics(prediction):
    """The Trainer's compute_metrics: the classification metrics of its logits."""
    logits, labels = prediction
    return classification_metrics(labels, np.argmax(logits, axis=-1), num_labels=logits.shape[-1])
