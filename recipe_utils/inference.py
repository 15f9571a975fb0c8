"""Batch scoring of tokenized reviews with a classifier (used for evaluation, baselines and judging)."""

import numpy as np
import torch
from transformers import DataCollatorWithPadding


@torch.inference_mode()
def predict_probabilities(model, tokenized, tokenizer, batch_size: int = 16) -> np.ndarray:
    """Class probabilities for every row of `tokenized`, in its order.

    Rows are scored longest-first so each padded batch holds reviews of similar length:
    far less padding than the dataset's order, hence far less wasted compute.
    """
    model.eval()
    collator = DataCollatorWithPadding(tokenizer)
    features = tokenized.remove_columns([name for name in tokenized.column_names if name == "labels"])
    order = np.argsort([-len(ids) for ids in features["input_ids"]], kind="stable")
    device = next(model.parameters()).device
    probabilities = np.zeros((len(features), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = collator([features[int(row)] for row in rows])
        logits = model(**{key: value.to(device) for key, value in batch.items()}).logits
        probabilities[rows] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return probabilities
