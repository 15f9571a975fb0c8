"""Seed 000's transfer study: when pretraining pays, on general or in-domain text, and what it costs.

    make transfer_study    # recipes/configs/transfer_study/full.yaml: every start, 100/400/1,600 labels, 3 seeds
    python recipes/transfer_study.py --config recipes/configs/transfer_study/demo.yaml    # make demo's smaller grid

The starts, each a model folder (pretraining stages run recipes/pretrain_mlm.py and are reused when complete):
  random             the small ModernBERT's architecture and tokenizer with random weights: the control
  general            the small ModernBERT pretrained on Wikipedia text (make pretrain_mlm)
  in_domain          the same architecture pretrained from scratch on the texts of the IMDB reviews
  general_in_domain  general, then pretraining continued on those reviews
  minilm             MiniLM as shipped (pretrained by others, at scale)
  minilm_in_domain   MiniLM after continued masked-LM pretraining on the reviews (domain-adaptive pretraining)
No pretraining stage reads a label, and none reads the held-out reviews: they are removed from its corpus.

Each start is fine-tuned in full with every label budget, and with the head only and the top-k layers at
the largest, over several seeds; every cell sees the same labelled draws for a seed and is scored on the same
held-out reviews. Learning rates are chosen per start (one for full and top-k, one for the head) on a
validation split of the training reviews, never the held-out ones. A run that ends predicting one class for
every review is a failed run, counted and left out of its cell's mean. Costs: trainable parameters, time,
peak memory, and forgetting both ways: masked-LM perplexity on held-out general text and on held-out reviews,
before and after fine-tuning, with the fine-tuned encoder under its start's masked-LM head.

Writes to output_dir: comparison.md / comparison.json (cells, and each start against its control with a 95%
interval of the difference), accuracy_vs_labels.png, accuracy_vs_forgetting.png, all_results.json (last).
"""

import hashlib
import json
import os
import shlex
import time
from dataclasses import dataclass, field
from functools import partial

from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, TrainingArguments

from recipe_utils.args import DataArguments, LanguageModelingDataArguments, ModelArguments, parse_args
from recipe_utils.distributed import say, world_size
from recipe_utils.errors import RecipeError, exit_on_recipe_error
from recipe_utils.hardware import machine_description, settle_cpu_precision
from recipe_utils.lm import load_lm_texts, masked_lm_perplexity, tokenize_for_mlm
from recipe_utils.models import load_tokenizer
from recipe_utils.study import Variant, run_variant
from recipe_utils.transfer import (
    CellResult,
    Start,
    finetune,
    labelled_draw,
    layer_probe,
    run_once,
    study_split,
    tokenized_for,
)
from recipe_utils.transfer_report import cell_summary, control_differences, write_transfer_report

SMALL_STARTS = ("random", "general", "in_domain", "general_in_domain")
MINILM_STARTS = ("minilm", "minilm_in_domain")
PRETRAINING_CONFIGS = {
    "in_domain": "recipes/configs/pretrain_mlm/in_domain.yaml",
    "general_in_domain": "recipes/configs/pretrain_mlm/general_then_in_domain.yaml",
    "minilm_mlm_probe": "recipes/configs/pretrain_mlm/minilm_head_probe.yaml",
    "minilm_in_domain": "recipes/configs/pretrain_mlm/minilm_in_domain.yaml",
}


@dataclass
class StudyArguments:
    starts: list[str] = field(
        default_factory=lambda: [*SMALL_STARTS, *MINILM_STARTS],
        metadata={"help": "Starting points to fine-tune.", "choices": [*SMALL_STARTS, *MINILM_STARTS]},
    )
    general_checkpoint: str = field(
        default="outputs/pretrain_mlm", metadata={"help": "The general-text checkpoint (make pretrain_mlm)."}
    )
    label_budgets: list[int] = field(
        default_factory=lambda: [100, 400, 1600], metadata={"help": "Labelled reviews for full fine-tuning."}
    )
    minilm_label_budgets: list[int] = field(
        default_factory=lambda: [1600], metadata={"help": "Label budgets of the MiniLM starts (4.8x the compute)."}
    )
    strategies: list[str] = field(
        default_factory=lambda: ["head", "top_1"],
        metadata={"help": "Partial strategies (head, top_<k>) run at the largest label budget, besides full."},
    )
    minilm_strategies: list[str] = field(default_factory=list, metadata={"help": "The same for the MiniLM starts."})
    seeds: list[int] = field(
        default_factory=lambda: [1, 2, 3],
        metadata={"help": "One run per seed and cell: the seed draws the labelled reviews and initialises."},
    )
    split_seed: int = field(
        default=42, metadata={"help": "Seed of the held-out split (sft_sentiment's and pretrain_mlm's)."}
    )
    validation_size: int = field(default=500, metadata={"help": "Training reviews set aside to choose rates."})
    selection_budget: int = field(default=400, metadata={"help": "Labelled reviews of a learning-rate trial."})
    learning_rates: list[float] = field(
        default_factory=lambda: [1e-4, 3e-4, 1e-3], metadata={"help": "Candidates for full and top-k runs."}
    )
    minilm_learning_rates: list[float] = field(
        default_factory=lambda: [5e-5, 1e-4, 2e-4], metadata={"help": "The same for the MiniLM starts."}
    )
    head_learning_rates: list[float] = field(
        default_factory=lambda: [1e-3, 3e-3, 1e-2], metadata={"help": "Candidates for head-only runs."}
    )
    min_train_steps: int = field(
        default=50, metadata={"help": "Small budgets train whole epochs until they reach this many steps."}
    )
    probe_budgets: list[int] = field(
        default_factory=lambda: [400, 1600],
        metadata={"help": "Label budgets of the linear probe of each frozen start's layers (none: no probe)."},
    )
    forgetting_blocks: int = field(
        default=128, metadata={"help": "Blocks of 128 tokens of each held-out text scored for forgetting."}
    )
    starts_dir: str | None = field(
        default=None,
        metadata={"help": "Where pretraining stages go and are reused from (unset: output_dir/starts)."},
    )
    pretraining_overrides: str = field(
        default="", metadata={"help": "Extra arguments for every pretraining stage, e.g. '--max_steps 20'."}
    )


def make_parser_types():
    return [StudyArguments, DataArguments, ModelArguments, TrainingArguments]


def pretrain(stage: str, starts_dir: str, overrides: str, *arguments: str) -> str:
    """Run one pretraining stage into starts_dir/<stage>, or reuse it when a complete run is there."""
    folder = os.path.join(starts_dir, stage)
    if os.path.isfile(os.path.join(folder, "all_results.json")):
        say(f"reusing the complete pretraining stage {folder}")
        return folder
    variant = Variant(stage, "recipes/pretrain_mlm.py", ["--config", PRETRAINING_CONFIGS[stage], *arguments])
    run_variant(variant, starts_dir, shlex.split(overrides))
    return folder


def prepare_starts(study_args, starts_dir: str) -> list[Start]:
    """Every start asked for, running (or reusing) the pretraining it needs."""
    wanted = study_args.starts
    general = study_args.general_checkpoint
    needs_general = {"general", "general_in_domain"} & set(wanted)
    if needs_general and not os.path.isfile(os.path.join(general, "all_results.json")):
        raise RecipeError(f"no finished pretraining run in {general}; run: make pretrain_mlm")
    overrides = study_args.pretraining_overrides
    folders = {"general": general}
    if {"in_domain", "random"} & set(wanted):
        folders["in_domain"] = pretrain("in_domain", starts_dir, overrides)
    if "general_in_domain" in wanted:
        folders["general_in_domain"] = pretrain(
            "general_in_domain", starts_dir, overrides, "--model_name_or_path", general
        )
    if set(MINILM_STARTS) & set(wanted):
        # MiniLM's shipped encoder, untouched, under a fitted masked-LM head. Both MiniLM starts are fine-tuned
        # from masked-LM folders, so they differ only in what in-domain pretraining changed (neither keeps
        # BERT's pooler, which a masked-LM model does not have: both classifiers get a new one).
        folders["minilm"] = pretrain("minilm_mlm_probe", starts_dir, overrides)
    if "minilm_in_domain" in wanted:
        folders["minilm_in_domain"] = pretrain(
            "minilm_in_domain", starts_dir, overrides, "--model_name_or_path", folders["minilm"]
        )
    starts = []
    for name in wanted:
        if name == "random":  # the in-domain start's architecture and tokenizer, none of its weights
            starts.append(Start("random", folders["in_domain"], random_init=True))
        else:
            starts.append(Start(name, folders[name], mlm_dir=folders[name]))
    return starts


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
        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=seed)
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
        """The candidate learning rate with the best validation accuracy (a tie goes to the smaller rate)."""
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


def cell_plan(start: Start, study_args) -> list[tuple[int, str]]:
    """(labelled reviews, strategy) of every cell of one start."""
    small = start.name in SMALL_STARTS
    budgets = study_args.label_budgets if small else study_args.minilm_label_budgets
    strategies = [] if start.random_init else study_args.strategies if small else study_args.minilm_strategies
    return [(budget, "full") for budget in sorted(budgets)] + [(max(budgets), name) for name in strategies]


def main(study_args, data_args, model_args, training_args):
    if world_size() > 1:
        raise RecipeError("the transfer study runs its cells one after another: launch it with python, not many")
    began = time.perf_counter()
    settle_cpu_precision(training_args)
    study_dir = training_args.output_dir
    os.makedirs(study_dir, exist_ok=True)
    starts = prepare_starts(study_args, study_args.starts_dir or os.path.join(study_dir, "starts"))

    split = study_split(data_args, study_args.split_seed, study_args.validation_size)
    largest = max([*study_args.label_budgets, *study_args.minilm_label_budgets])
    draws = {(size, seed): labelled_draw(split.pool, size, seed) for size in (largest,) for seed in study_args.seeds}
    texts = forgetting_texts(study_args.general_checkpoint, split.held_out, study_args.split_seed)

    cells, runs, rates, probes = [], {}, {}, {}
    runs_dir = os.path.join(study_dir, "runs")
    for start in starts:
        say(f"\n=== start: {start.name} ({'random weights of ' if start.random_init else ''}{start.model})")
        plan = cell_plan(start, study_args)
        needed = {f"draw_{seed}": draws[(largest, seed)] for seed in study_args.seeds}
        needed.update(
            held_out=split.held_out,
            validation=split.validation,
            selection=labelled_draw(split.pool, study_args.selection_budget, study_args.split_seed),
        )
        tokenizer, tokenized = tokenized_for(start, model_args, data_args, needed)
        data = {**tokenized, "tokenizer": tokenizer, "label_names": split.label_names}
        settings = run_settings(start, study_args, data_args, training_args)
        if study_args.probe_budgets:
            budgets = [budget for budget in study_args.probe_budgets if budget <= largest]
            probe = partial(
                layer_probe,
                start,
                model_args,
                data[f"draw_{study_args.seeds[0]}"],
                data["held_out"],
                tokenizer,
                budgets,
                study_args.split_seed,
                training_args.per_device_eval_batch_size,
            )
            path = os.path.join(runs_dir, f"probe_{start.name}.json")
            probes[start.name] = run_once(path, {**settings, "probe_budgets": budgets}, probe)
        scorer = before = None
        if start.mlm_dir:
            scorer = ForgettingScorer(
                start.mlm_dir,
                texts,
                study_args.forgetting_blocks,
                study_args.split_seed,
                training_args.per_device_eval_batch_size,
            )
            before = scorer.perplexities()
        start_runs = StartRuns(start, data, scorer, runs_dir, settings, model_args, training_args, study_args)
        small = start.name in SMALL_STARTS
        rates[start.name] = {
            "full": start_runs.choose_rate(
                study_args.learning_rates if small else study_args.minilm_learning_rates, "full"
            )
        }
        if any(strategy == "head" for _, strategy in plan):
            rates[start.name]["head"] = start_runs.choose_rate(study_args.head_learning_rates, "head")
        for budget, strategy in plan:
            rate = rates[start.name]["head" if strategy == "head" else "full"]["chosen"]
            seeds_run = [start_runs.seed_run(budget, strategy, rate, seed) for seed in study_args.seeds]
            runs[(start.name, strategy, budget)] = seeds_run
            cells.append(cell_summary(start.name, strategy, budget, rate, seeds_run, before, study_args.split_seed))

    differences = control_differences(runs, study_args.split_seed)
    pretraining = {start.name: stage_summary(start) for start in starts if start.mlm_dir}
    results = {
        **{f"split_{key}": value for key, value in split.stats.items() if not isinstance(value, dict)},
        "seeds": study_args.seeds,
        "learning_rates": rates,
        "layer_probes": probes,
        "pretraining": pretraining,
        "machine": machine_description(),
        "precision": "bf16 autocast training, fp32 scoring" if training_args.bf16 else "fp32",
        "study_runtime_s": round(time.perf_counter() - began, 1),
    }
    table = write_transfer_report(study_dir, cells, differences, results)
    say(f"\n{table}\n\nWritten to {study_dir}/comparison.md")
    return results


@exit_on_recipe_error
def cli(args=None):
    return main(*parse_args(make_parser_types(), args))


if __name__ == "__main__":
    cli()
