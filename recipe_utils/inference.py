"""Batch scoring of tokenized reviews with a classifier (used for evaluation, baselines and judging)."""

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from recipe_utils.distributed import gather_rows, shard


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
