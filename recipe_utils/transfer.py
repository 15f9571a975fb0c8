"""The fine-tuning cells of a transfer study: one start, one label budget, one strategy, one seed.

Every cell of a study shares one split: the held-out reviews, a validation set for choosing learning rates
(carved from the training reviews, never the held-out ones) and a pool the labelled reviews are drawn from.
For a given seed the draws are nested (the 100 reviews of seed 1 are among its 400), and the same for every
start, so two starts at the same budget and seed saw the same labels and differ only in their weights.
A cell runs in the study's process (no model folder is written: a study has dozens of cells) and is scored
in fp32 after training, as a saved model would be.
"""

import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from transformers import DataCollatorWithPadding, Trainer

from recipe_utils.data import prepare_classification_data, tokenize_reviews
from recipe_utils.hardware import peak_memory_mb, reset_peak_memory
from recipe_utils.inference import predict_probabilities
from recipe_utils.metrics import classification_metrics
from recipe_utils.models import apply_freezing, load_classifier, load_tokenizer
from recipe_utils.outputs import write_json


@dataclass
class StudySplit:
    """Texts and labels of the held-out set, the validation set and the labelled pool."""

    held_out: datasets.Dataset
    validation: datasets.Dataset
    pool: datasets.Dataset
    label_names: list[str]
    stats: dict


def study_split(data_args, split_seed: int, validation_size: int) -> StudySplit:
    """The classification recipes' own split (same held-out reviews as sft_sentiment with seed=split_seed),
    then a balanced validation set taken out of the training side."""
    prepared = prepare_classification_data(dataclasses.replace(data_args, max_train_samples=None), split_seed)
    order = _balanced_order(prepared.train["label"], split_seed)
    validation_rows = order[:validation_size]
    pool_rows = np.setdiff1d(np.arange(len(prepared.train)), validation_rows)
    stats = {**prepared.stats, "validation_samples": len(validation_rows), "pool_samples": len(pool_rows)}
    return StudySplit(
        held_out=prepared.eval,
        validation=prepared.train.select(validation_rows),
        pool=prepared.train.select(pool_rows),
        label_names=prepared.label_names,
        stats=stats,
    )


def _balanced_order(labels, seed: int) -> np.ndarray:
    """Row indices in a seeded order that alternates the classes, so any prefix of even length is balanced."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == label)) for label in np.unique(labels)]
    shortest = min(len(rows) for rows in per_class)
    return np.stack([rows[:shortest] for rows in per_class], axis=1).reshape(-1)


def labelled_draw(pool: datasets.Dataset, size: int, seed: int) -> datasets.Dataset:
    """`size` balanced reviews of the pool; for one seed a smaller draw is the start of a larger one."""
    order = _balanced_order(pool["label"], seed)
    if size > len(order):
        raise ValueError(f"asked for {size} labelled reviews; the pool holds {len(order)} balanced ones")
    return pool.select(order[:size])


@dataclass
class Start:
    """A starting point of the study: a model folder (or name), trained from its weights or from random ones."""

    name: str
    model: str
    random_init: bool = False
    mlm_dir: str | None = None  # a masked-LM checkpoint whose head scores this start's encoders (None: not scored)


@dataclass
class CellResult:
    accuracy: float
    f1: float
    correct: np.ndarray  # per held-out review, for paired intervals
    one_class: bool  # the model ended predicting a single class: a failed run, not a result
    trainable_params: int
    train_runtime: float
    train_peak_memory_mb: float

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "correct": self.correct.tolist()}

    @classmethod
    def from_json(cls, stored: dict) -> "CellResult":
        return cls(**{**stored, "correct": np.asarray(stored["correct"], dtype=np.int8)})


def run_once(path: str, fingerprint: dict, compute) -> dict:
    """What compute() returned when it last ran with these settings (stored at `path` as JSON), else compute()
    now and store it: a study stopped midway, or run again, repeats only the runs it had not finished."""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
        if stored.get("fingerprint") == fingerprint:
            return stored["result"]
    result = compute()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(path, {"fingerprint": fingerprint, "result": result})
    return result


def steps_to_epochs(examples: int, batch_size: int, min_steps: int) -> int:
    """Whole epochs that give at least `min_steps` optimizer steps (a budget of 100 reviews is 7 steps of 16)."""
    return max(1, math.ceil(min_steps / math.ceil(examples / batch_size)))


def finetune(
    start: Start,
    model_args,
    labelled: datasets.Dataset,
    scored: datasets.Dataset,
    tokenizer,
    label_names: list[str],
    strategy: str,
    learning_rate: float,
    seed: int,
    training_args,
    min_steps: int,
) -> tuple[CellResult, object]:
    """Fine-tune `start` on tokenized `labelled` reviews with a freeze strategy (full, head, top_<k>), then
    score the tokenized `scored` reviews. Returns the scores and the fine-tuned model."""
    args = dataclasses.replace(
        training_args,
        output_dir=tempfile.mkdtemp(prefix="transfer_cell_"),
        learning_rate=learning_rate,
        seed=seed,
        num_train_epochs=steps_to_epochs(len(labelled), training_args.per_device_train_batch_size, min_steps),
        max_steps=-1,
    )
    from transformers import set_seed

    set_seed(seed)
    cell_args = dataclasses.replace(model_args, model_name_or_path=start.model, random_init=start.random_init)
    model = load_classifier(cell_args, label_names)
    freeze, top_k = ("top_k", int(strategy.split("_")[1])) if strategy.startswith("top_") else (strategy, 0)
    counts = apply_freezing(model, freeze, top_k)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=labelled,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    reset_peak_memory()
    began = time.perf_counter()
    trainer.train()
    runtime = time.perf_counter() - began
    peak = peak_memory_mb()
    # The Trainer leaves its mixed-precision autocast on the model's forward; a saved model has none.
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False).float()
    predictions = predict_probabilities(model, scored, tokenizer, training_args.per_device_eval_batch_size).argmax(1)
    labels = np.asarray(scored["labels"])
    metrics = classification_metrics(labels, predictions, num_labels=len(label_names))
    return CellResult(
        accuracy=metrics["accuracy"],
        f1=metrics["f1"] if "f1" in metrics else metrics["f1_macro"],
        correct=(predictions == labels).astype(np.int8),
        one_class=len(np.unique(predictions)) == 1,
        trainable_params=counts["trainable_params"],
        train_runtime=runtime,
        train_peak_memory_mb=peak,
    ), model


def tokenized_for(start: Start, model_args, data_args, texts: dict[str, datasets.Dataset]):
    """The start's tokenizer and each named set of reviews tokenized with it (truncated as data_args says)."""
    tokenizer = load_tokenizer(dataclasses.replace(model_args, model_name_or_path=start.model))
    tokenizer.model_max_length = data_args.max_length
    return tokenizer, {name: tokenize_reviews(dataset, tokenizer, data_args) for name, dataset in texts.items()}


@torch.inference_mode()
def layer_features(model, tokenized: datasets.Dataset, tokenizer, batch_size: int) -> np.ndarray:
    """Mean-pooled hidden states of every layer (the embeddings first): (reviews, layers + 1, width)."""
    model.eval()
    collator = DataCollatorWithPadding(tokenizer)
    inputs = tokenized.remove_columns([name for name in tokenized.column_names if name == "labels"])
    pooled = []
    for begin in range(0, len(inputs), batch_size):
        batch = collator([inputs[index] for index in range(begin, min(begin + batch_size, len(inputs)))])
        states = model(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled.append(torch.stack([(state.float() * mask).sum(1) / mask.sum(1) for state in states], dim=1))
    return torch.cat(pooled).numpy()


def layer_probe(start: Start, model_args, train, test, tokenizer, budgets: list[int], seed: int, batch_size: int):
    """Held-out accuracy of a logistic regression on each layer's mean-pooled features of the start's encoder,
    frozen, trained on the first `budget` reviews of `train`: how much sentiment each layer carries before any
    fine-tuning."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoModel, set_seed

    from recipe_utils.models import load_pretrained

    set_seed(seed)  # the random start's weights
    encoder_args = dataclasses.replace(model_args, model_name_or_path=start.model, random_init=start.random_init)
    encoder = load_pretrained(AutoModel, encoder_args)
    train_features = layer_features(encoder, train.select(range(max(budgets))), tokenizer, batch_size)
    test_features = layer_features(encoder, test, tokenizer, batch_size)
    train_labels, test_labels = np.asarray(train["labels"][: max(budgets)]), np.asarray(test["labels"])
    probes = {}
    for budget in budgets:
        probes[str(budget)] = [
            float(
                make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
                .fit(train_features[:budget, layer], train_labels[:budget])
                .score(test_features[:, layer], test_labels)
            )
            for layer in range(train_features.shape[1])
        ]
    return probes
