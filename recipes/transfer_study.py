"""Seed 000's transfer study: when pretraining pays, on general or in-domain text, and what it costs.

    make transfer_study    # recipes/configs/transfer_study/full.yaml: every start, 100/400/1,600 labels, 3 seeds
    python recipes/transfer_study.py --config recipes/configs/transfer_study/demo.yaml    # make demo's smaller grid

The starts, each a model folder (pretraining stages run recipes/pretrain_mlm.py and are reused when complete):
  random             the control: in_domain's architecture and tokenizer (general's when the study has no
                     in_domain start) with random weights
  general            the small ModernBERT pretrained on Wikipedia text (general_checkpoint)
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

import recipe_utils.quiet  # noqa: F401  (first: keeps library import noise off the screen)

# isort: split
import os
import shlex
import time
from dataclasses import dataclass, field
from functools import partial

from transformers import TrainingArguments

from recipe_utils.core.args import DataArguments, ModelArguments, parse_args
from recipe_utils.core.distributed import say, world_size
from recipe_utils.core.errors import RecipeError, exit_on_recipe_error
from recipe_utils.core.hardware import machine_description, settle_cpu_precision
from recipe_utils.publishing.transfer_report import cell_summary, control_differences, write_transfer_report
from recipe_utils.training.study import Variant, run_variant
from recipe_utils.training.transfer import (
    ForgettingScorer,
    Start,
    StartRuns,
    forgetting_texts,
    labelled_draw,
    layer_probe,
    run_once,
    run_settings,
    stage_summary,
    study_split,
    tokenized_for,
)

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
        default="outputs/pretrain_mlm",
        metadata={"help": "The general-text checkpoint (make pretrain_mlm; full.yaml: its 4-epoch general.yaml)."},
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
        default_factory=lambda: [3e-4, 1e-3], metadata={"help": "Candidates for full and top-k runs."}
    )
    minilm_learning_rates: list[float] = field(
        default_factory=lambda: [1e-4, 2e-4], metadata={"help": "The same for the MiniLM starts."}
    )
    head_learning_rates: list[float] = field(
        default_factory=lambda: [3e-3, 1e-2], metadata={"help": "Candidates for head-only runs."}
    )
    min_train_steps: int = field(
        default=100,
        metadata={
            "help": "Small budgets train whole epochs until they reach this many steps (pretrained starts need "
            "more steps than random weights: see docs/transfer_study.md)."
        },
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
    # Random weights take a pretrained start's architecture and tokenizer: the in-domain start's when the study
    # has one (its tokenizer was trained on reviews, as the fine-tuning data is), else the general checkpoint's.
    random_like = "in_domain" if "in_domain" in wanted else "general"
    built_from = {random_like if name == "random" else name for name in wanted}
    needs_general = {"general", "general_in_domain"} & built_from
    if needs_general and not os.path.isfile(os.path.join(general, "all_results.json")):
        raise RecipeError(f"no finished pretraining run in {general}; run pretrain_mlm.py into it")
    overrides = study_args.pretraining_overrides
    folders = {"general": general}
    if "in_domain" in wanted:
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
        if name == "random":
            starts.append(Start("random", folders[random_like], random_init=True))
        else:
            starts.append(Start(name, folders[name], mlm_dir=folders[name]))
    return starts


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
    # One draw per seed at the largest budget; every smaller budget takes its first reviews.
    draws = {seed: labelled_draw(split.pool, largest, seed) for seed in study_args.seeds}
    texts = forgetting_texts(study_args.general_checkpoint, split.held_out, study_args.split_seed)

    cells, runs, rates, probes = [], {}, {}, {}
    runs_dir = os.path.join(study_dir, "runs")
    for start in starts:
        say(f"\n=== start: {start.name} ({'random weights of ' if start.random_init else ''}{start.model})")
        plan = cell_plan(start, study_args)
        needed = {f"draw_{seed}": draw for seed, draw in draws.items()}
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
