"""The pieces of a transfer study: its split, its fine-tuning runs (one start, one label budget, one strategy,
one seed; each stored as it finishes), the linear probe of a start's layers, and the forgetting scorer.

Every cell of a study shares one split: the held-out reviews, a validation set for choosing learning rates
(carved from the training reviews, never the held-out ones) and a pool the labelled reviews are drawn from.
For a given seed the draws are nested (the 100 reviews of seed 1 are among its 400), and the same for every
start, so two starts at the same budget and seed saw the same labels and differ only in their weights.
A cell runs in the study's process (no model folder is written: a study has dozens of cells) and is scored
in fp32 after training, as a saved model would be.
"""

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from functools import partial

import datasets
import numpy as np
import torch
from transformers import AutoModelForMaskedLM, DataCollatorWithPadding, Trainer

from recipe_utils.core.args import LanguageModelingDataArguments, ModelArguments
from recipe_utils.core.distributed import say
from recipe_utils.core.errors import RecipeError
from recipe_utils.core.hardware import peak_memory_mb, reset_peak_memory
from recipe_utils.core.outputs import write_json
from recipe_utils.data.language_modeling import load_lm_texts, masked_lm_perplexity, masking_collator, tokenize_for_mlm
from recipe_utils.data.reviews import prepare_classification_data, tokenize_reviews
from recipe_utils.evaluation.inference import predict_probabilities
from recipe_utils.evaluation.metrics import classification_metrics
from recipe_utils.models.loading import apply_freezing, load_classifier, load_tokenizer


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

    from recipe_utils.models.loading import load_pretrained

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


class ForgettingScorer:
    """Masked-LM perplexity of a start's encoder, and of encoders fine-tuned from it placed under the start's
    masked-LM head, on held-out general text and held-out reviews: the same blocks and masked positions
    every time, so before and after compare."""

    def __init__(self, mlm_dir: str, texts: dict, blocks: int, seed: int, batch_size: int):
        self.mlm_dir = mlm_dir
        tokenizer = load_tokenizer(ModelArguments(model_name_or_path=mlm_dir))
        self.blocks = {}
        for name, dataset in texts.items():
            packed = tokenize_for_mlm(dataset, tokenizer, 128, whole_word_mask=False)
            self.blocks[name] = packed.select(range(min(blocks, len(packed))))
        self.collator = masking_collator(tokenizer, 0.15, whole_word_mask=False, seed=seed)
        self.batch_size = batch_size

    def perplexities(self, classifier=None) -> dict:
        model = AutoModelForMaskedLM.from_pretrained(self.mlm_dir, dtype="float32")
        if classifier is not None:
            encoder = getattr(model, model.base_model_prefix)
            tuned = getattr(classifier, classifier.base_model_prefix).state_dict()
            missing, _ = encoder.load_state_dict(tuned, strict=False)
            if missing:
                raise RecipeError(f"the fine-tuned encoder does not fit {self.mlm_dir}: missing {missing[:3]}")
        return {
            name: masked_lm_perplexity(model, blocks, self.collator, self.batch_size)
            for name, blocks in self.blocks.items()
        }


def forgetting_texts(general_checkpoint: str, held_out_reviews, seed: int) -> dict:
    """The general text the general start held out (its own run's split) and the held-out reviews."""
    with open(os.path.join(general_checkpoint, "run_config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    general_args = LanguageModelingDataArguments(
        dataset_name=config["dataset_name"],
        dataset_config=config.get("dataset_config"),
        eval_fraction=config["eval_fraction"],
    )
    _, general, _ = load_lm_texts(general_args, config["seed"])
    reviews = held_out_reviews.shuffle(seed=seed).select_columns(["text"])
    return {"general": general, "reviews": reviews}


class StartRuns:
    """The fine-tuning runs of one start: its tokenized reviews, its forgetting scorer, and each run stored in
    runs_dir as it finishes (a run stored with the same settings is read back, not repeated)."""

    def __init__(self, start, data, scorer, runs_dir, settings, model_args, training_args, study_args):
        self.start, self.data, self.scorer, self.runs_dir, self.settings = start, data, scorer, runs_dir, settings
        self.model_args, self.training_args, self.study_args = model_args, training_args, study_args

    def _finetune(self, labelled, scored, strategy: str, rate: float, seed: int):
        data = self.data
        return finetune(
            self.start,
            self.model_args,
            labelled,
            scored,
            data["tokenizer"],
            data["label_names"],
            strategy,
            rate,
            seed,
            self.training_args,
            self.study_args.min_train_steps,
        )

    def _validation_accuracy(self, strategy: str, rate: float) -> float:
        result, _ = self._finetune(
            self.data["selection"], self.data["validation"], strategy, rate, self.study_args.split_seed
        )
        return result.accuracy

    def choose_rate(self, candidates: list[float], strategy: str) -> dict:
        """The candidate learning rate with the best validation accuracy (a tie goes to the smaller rate).

        A single candidate is a rate pinned by the config (the demo pins the full study's choice), so no
        validation run is spent on it and its validation accuracy is left empty."""
        if len(candidates) == 1:
            return {"chosen": candidates[0], "validation_accuracy": {}}
        trials = {}
        for rate in sorted(candidates):
            path = os.path.join(self.runs_dir, f"select_{self.start.name}_{strategy}_lr{rate:g}.json")
            fingerprint = {**self.settings, "strategy": strategy, "rate": rate}
            trials[rate] = run_once(path, fingerprint, partial(self._validation_accuracy, strategy, rate))
            say(f"{self.start.name} {strategy} lr {rate:g}: validation accuracy {trials[rate]:.4f}")
        best = max(trials, key=lambda rate: (trials[rate], -rate))
        return {"chosen": best, "validation_accuracy": {f"{rate:g}": accuracy for rate, accuracy in trials.items()}}

    def _held_out_run(self, budget: int, strategy: str, rate: float, seed: int) -> dict:
        # The first `budget` reviews of this seed's draw: nested across budgets, shared across starts.
        labelled = self.data[f"draw_{seed}"].select(range(budget))
        result, model = self._finetune(labelled, self.data["held_out"], strategy, rate, seed)
        return {"result": result.to_json(), "perplexity": self.scorer.perplexities(model) if self.scorer else None}

    def seed_run(self, budget: int, strategy: str, rate: float, seed: int) -> dict:
        """One seed of one cell: its held-out scores and, for a start with a masked-LM head, its forgetting."""
        path = os.path.join(self.runs_dir, f"{self.start.name}_{strategy}_{budget}_seed{seed}.json")
        fingerprint = {**self.settings, "strategy": strategy, "labels": budget, "seed": seed, "rate": rate}
        stored = run_once(path, fingerprint, partial(self._held_out_run, budget, strategy, rate, seed))
        result = CellResult.from_json(stored["result"])
        state = "FAILED (one class)" if result.one_class else f"accuracy {result.accuracy:.4f}"
        say(f"{self.start.name} {strategy} {budget} labels, seed {seed}: {state}, {result.train_runtime:.0f} s")
        return {"seed": seed, "result": result, "perplexity": stored["perplexity"]}


def run_settings(start: Start, study_args, data_args, training_args) -> dict:
    """Everything a stored run's figures depend on besides its cell: a run made otherwise is run again."""
    stage = None
    if start.mlm_dir or os.path.isdir(start.model):
        folder = start.mlm_dir or start.model
        with open(os.path.join(folder, "all_results.json"), "rb") as handle:
            stage = hashlib.sha256(handle.read()).hexdigest()
    return {
        "start": start.name,
        "model": start.model,
        "random_init": start.random_init,
        "pretraining_results_sha256": stage,
        "split_seed": study_args.split_seed,
        "validation_size": study_args.validation_size,
        "selection_budget": study_args.selection_budget,
        "min_train_steps": study_args.min_train_steps,
        "forgetting_blocks": study_args.forgetting_blocks,
        "data": {
            key: getattr(data_args, key)
            for key in ("dataset_name", "eval_size", "max_length", "truncation", "head_tokens")
        },
        "training": {
            key: str(getattr(training_args, key))
            for key in ("per_device_train_batch_size", "weight_decay", "warmup_steps", "lr_scheduler_type", "bf16")
        },
    }


def stage_summary(start: Start) -> dict:
    """What the start's own masked-LM run (or, for MiniLM, its head probe) did, from its all_results.json."""
    with open(os.path.join(start.mlm_dir, "all_results.json"), encoding="utf-8") as handle:
        stage = json.load(handle)
    with open(os.path.join(start.mlm_dir, "run_config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    return {
        "folder": start.mlm_dir,
        "corpus": config["dataset_name"],
        "texts": stage["train_samples"],
        "blocks": stage["train_blocks"],
        "block_size": config["block_size"],
        "steps": stage.get("train_steps")
        or round(stage["train_blocks"] * stage["train_epoch"] / stage["global_batch_size"]),
        "trained": stage["freeze_strategy"],
        "excluded_held_out_texts": stage["excluded_held_out_texts"],
        "train_runtime_s": round(stage["train_runtime"]),
        "held_out_perplexity": stage["perplexity"],
        "held_out_review_perplexity": stage["review_perplexity"],
    }
