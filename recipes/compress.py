"""Compress a fine-tuned sentiment classifier and measure what each technique costs and buys.

Uniform quantization (k-bit, per tensor or per channel, symmetric or not; int8 weights with int8 dynamic
activations), non-uniform quantization (k-means codebooks; nf4 / fp4 through bitsandbytes), weight
clustering, and pruning (global magnitude; attention heads or feed-forward neurons), each with or without a
short recovery fine-tune. Every setting is saved as a folder, reloaded as a user loads it, and scored on the
same held-out reviews the classifier was evaluated on: accuracy with a 95% interval, F1, size on disk as
stored, weight memory, and reviews/s against the default fp32 `pipeline("text-classification")` call.

Offline demo (the classifier of `make sft_sentiment`, a few minutes on 2 CPU cores):
    python recipes/compress.py --config recipes/configs/compress/demo.yaml

Settings chain steps with "+" (see recipe_utils/compression/weights.py), e.g.:
    python recipes/compress.py --config recipes/configs/compress/demo.yaml \
        --settings uniform-4-channel-asym kmeans-3 ffn-50+recover+int8-dynamic --output_dir outputs/compress_mine
"""

import recipe_utils.quiet  # noqa: F401  (first: keeps library import noise off the screen)

# isort: split
import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

from recipe_utils.compression.weights import (
    COMPRESSION_FILE,
    apply_structure,
    choose_structure,
    load_compressed,
    magnitude_prune,
    make_permanent,
    parse_setting,
    save_bitsandbytes,
    save_compressed,
    weights_in_ram,
)
from recipe_utils.core.args import DataArguments, OutputArguments, parse_args
from recipe_utils.core.distributed import say, world_size
from recipe_utils.core.errors import RecipeError, exit_on_recipe_error
from recipe_utils.core.hardware import machine_description, settle_cpu_precision
from recipe_utils.core.outputs import resolved_config, write_json
from recipe_utils.data.reviews import prepare_classification_data, tokenize_reviews
from recipe_utils.evaluation.inference import time_pipeline, timed_scoring, warm_up
from recipe_utils.evaluation.intervals import accuracy_interval, paired_difference_interval
from recipe_utils.evaluation.metrics import classification_metrics
from recipe_utils.models.adapters import folder_size_bytes
from recipe_utils.models.loading import load_pretrained, load_tokenizer, resolve_model_path, saved_truncation
from recipe_utils.publishing.cards import write_setting_card
from recipe_utils.publishing.report import markdown_table, plot_size_accuracy
from recipe_utils.publishing.run_folder import claim_output_dir, finish_run, open_run_folder


@dataclass
class CompressArguments:
    model_name_or_path: str = field(
        default="outputs/sft_sentiment",
        metadata={"help": "A fine-tuned classifier: a folder written by sft_sentiment, or a Hub id."},
    )
    model_revision: str = field(default="main", metadata={"help": "Hub branch, tag or commit of the model."})
    settings: list[str] = field(
        default_factory=lambda: ["uniform-8-channel-sym", "uniform-4-channel-asym", "kmeans-4", "int8-dynamic"],
        metadata={
            "help": "Compression settings, each a chain of steps joined by '+' (recipe_utils/compression/weights.py)."
        },
    )
    tolerance: float = field(
        default=0.01, metadata={"help": "Accuracy a setting may lose and still count as keeping it (0.01: 1 point)."}
    )
    score_batch_size: int = field(default=16, metadata={"help": "Reviews per scoring batch."})
    time_pipeline: bool = field(
        default=True, metadata={"help": "Time the default fp32 pipeline call on the same reviews (the speed baseline)."}
    )


def make_parser_types():
    return [CompressArguments, DataArguments, OutputArguments, TrainingArguments]


def scoring_device(training_args) -> str:
    return "cuda" if torch.cuda.is_available() and not training_args.use_cpu else "cpu"


def source_model_args(compress_args) -> SimpleNamespace:
    """The model arguments the loaders take, for the classifier being compressed (fp32, no remote code)."""
    return SimpleNamespace(
        model_name_or_path=compress_args.model_name_or_path,
        model_revision=compress_args.model_revision,
        trust_remote_code=False,
        dtype="float32",
    )


def load_source_tokenizer(compress_args):
    return load_tokenizer(source_model_args(compress_args))


def load_source(compress_args, device: str = "cpu"):
    return load_pretrained(AutoModelForSequenceClassification, source_model_args(compress_args)).to(device).eval()


def recover(model, train_tokenized, tokenizer, training_args) -> float:
    """A short fine-tune of a pruned model on training reviews (magnitude-pruned weights stay masked to zero);
    returns its training time. Its checkpoints, if any, go to a scratch folder, never into the run's."""
    scratch = tempfile.mkdtemp(prefix="recover_")
    trainer = Trainer(
        model=model,
        args=dataclasses.replace(training_args, output_dir=scratch, save_strategy="no"),
        train_dataset=train_tokenized,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    runtime = trainer.train().metrics["train_runtime"]
    shutil.rmtree(scratch, ignore_errors=True)
    return runtime


def saliency_batches(train_tokenized, tokenizer, count: int = 8, size: int = 16) -> list[dict]:
    """A few batches of training reviews on which structured pruning ranks heads and neurons."""
    collator = DataCollatorWithPadding(tokenizer)
    rows = train_tokenized.shuffle(seed=0).select(range(min(len(train_tokenized), count * size)))
    return [
        collator([rows[index] for index in range(start, min(start + size, len(rows)))])
        for start in range(0, len(rows), size)
    ]


def compress_one(setting, compress_args, folder, train_tokenized, tokenizer, training_args) -> dict:
    """Apply a setting to a fresh copy of the source model and save it to `folder`; returns what was done."""
    made = {"recovery_runtime_s": 0.0}
    source_path = resolve_model_path(compress_args.model_name_or_path)
    if setting.encoding in ("nf4", "fp4"):
        save_bitsandbytes(source_path, folder, setting.encoding)
        return made
    model = load_source(compress_args)
    structure = None
    if setting.structured:
        structure = choose_structure(model, setting.heads, setting.ffn, saliency_batches(train_tokenized, tokenizer))
        apply_structure(model, structure)
    if setting.prune:
        magnitude_prune(model, setting.prune)
    if setting.recover:
        made["recovery_runtime_s"] = recover(model, train_tokenized, tokenizer, training_args)
    make_permanent(model)
    save_compressed(model, folder, setting, structure, training_args.seed)
    return made


def pipeline_baseline(compress_args, data, device: str = "cpu") -> dict:
    """Speed and accuracy of the default fp32 pipeline call on the held-out reviews (the speed baseline)."""
    texts = list(data.eval["text"])
    _, predicted, elapsed = time_pipeline(resolve_model_path(compress_args.model_name_or_path), texts, device)
    return {
        "pipeline_reviews_per_s": len(texts) / elapsed,
        "pipeline_accuracy": float((predicted == np.asarray(data.eval["label"])).mean()),
    }


def mark_pareto(rows: list[dict]) -> None:
    """A setting is on the Pareto front when no other is both smaller on disk and at least as accurate."""
    for row in rows:
        row["pareto"] = not any(
            other["size_mb"] < row["size_mb"] and other["accuracy"] >= row["accuracy"]
            for other in rows
            if other is not row
        )


def main(compress_args, data_args, output_args, training_args):
    run = claim_output_dir(training_args, output_args.overwrite_output_dir)
    if world_size() > 1:
        raise RecipeError("compress scores and times models in one process: run it with python, not many processes")
    settings = [parse_setting(text) for text in compress_args.settings]
    names = [setting.name for setting in settings]
    if len(set(names)) != len(names) or "fp32" in names:
        raise RecipeError("settings must be distinct, and fp32 (the uncompressed model) is always scored first")
    source = compress_args.model_name_or_path
    if source.startswith(("outputs/", "./", "/")) and not os.path.isfile(os.path.join(source, "config.json")):
        raise RecipeError(f"no fine-tuned classifier in {source}: run make sft_sentiment first, or pass a Hub id")
    settle_cpu_precision(training_args)
    tokenizer = load_source_tokenizer(compress_args)
    # The held-out reviews are cut exactly as the classifier was evaluated (its run_config.json says how).
    truncation = saved_truncation(source, compress_args.model_revision, tokenizer)
    data_args.max_length, data_args.truncation, data_args.head_tokens = (
        truncation.max_length,
        truncation.truncation,
        truncation.head_tokens,
    )
    data = prepare_classification_data(data_args, training_args.seed)
    labels = np.asarray(data.eval["label"])
    needs_training = any(setting.recover or setting.structured for setting in settings)
    train_tokenized = tokenize_reviews(data.train, tokenizer, data_args) if needs_training else None
    open_run_folder(run)
    device = scoring_device(training_args)

    results = {
        **data.stats,
        "source_model": source,
        "eval_truncation": vars(truncation),
        "machine": machine_description(),
    }
    if compress_args.time_pipeline:
        results.update(pipeline_baseline(compress_args, data, device))
        say(f"pipeline baseline: {results['pipeline_reviews_per_s']:.1f} reviews/s")

    rows, reference = [], None
    for setting in [parse_setting("fp32"), *settings]:
        folder = run.path(setting.name)
        os.makedirs(folder, exist_ok=True)
        if setting.name == "fp32":
            made = {"recovery_runtime_s": 0.0}
            load_source(compress_args).save_pretrained(folder)
        else:
            made = compress_one(setting, compress_args, folder, train_tokenized, tokenizer, training_args)
        tokenizer.save_pretrained(folder)
        write_json(os.path.join(folder, "run_config.json"), vars(truncation))
        # Scored as a user loads it: reloaded from the folder, through the loader its card shows.
        if os.path.isfile(os.path.join(folder, COMPRESSION_FILE)):
            model = load_compressed(folder, device=device)
        else:
            model = load_source(SimpleNamespace(model_name_or_path=folder, model_revision="main"), device)
        warm_up_s = warm_up(model, data.eval, tokenizer, data_args, compress_args.score_batch_size)
        probabilities, elapsed = timed_scoring(model, data.eval, tokenizer, data_args, compress_args.score_batch_size)
        predictions = probabilities.argmax(axis=1)
        correct = predictions == labels
        if reference is None:
            reference = correct
        metrics = classification_metrics(labels, predictions, num_labels=len(data.label_names))
        low, high = accuracy_interval(correct, training_args.seed)
        difference = paired_difference_interval(correct, reference, training_args.seed)
        row = {
            "setting": setting.name,
            "accuracy": metrics["accuracy"],
            "accuracy_95": f"{low:.3f}-{high:.3f}",
            "vs_fp32": float(correct.mean() - reference.mean()),
            "vs_fp32_95": f"{difference[0]:+.3f}..{difference[1]:+.3f}",
            "f1": metrics["f1"],
            "size_mb": folder_size_bytes(folder) / 2**20,
            "ram_mb": weights_in_ram(model) / 2**20,
            "reviews_per_s": len(labels) / elapsed,
        }
        if "pipeline_reviews_per_s" in results:
            row["x_pipeline"] = row["reviews_per_s"] / results["pipeline_reviews_per_s"]
        row["recovery_s"] = made["recovery_runtime_s"]
        row["warm_up_s"] = warm_up_s
        rows.append(row)
        write_json(os.path.join(folder, "eval_predictions.json"), predictions.tolist())
        write_json(os.path.join(folder, "all_results.json"), {**row, "eval_samples": len(labels), **metrics})
        say(
            f"{setting.name}: accuracy {row['accuracy']:.4f} ({row['vs_fp32']:+.4f}), {row['size_mb']:.1f} MB, "
            f"{row['reviews_per_s']:.1f} reviews/s"
        )
        del model

    baseline = rows[0]
    for row in rows:
        row["x_smaller"] = baseline["size_mb"] / row["size_mb"]
    mark_pareto(rows)
    kept = [row for row in rows if row["vs_fp32"] >= -compress_args.tolerance]
    results.update(
        settings=rows,
        eval_samples=len(labels),
        eval_accuracy=baseline["accuracy"],
        smallest_within_tolerance=min(kept, key=lambda row: row["size_mb"])["setting"],
        fastest_within_tolerance=max(kept, key=lambda row: row["reviews_per_s"])["setting"],
        tolerance=compress_args.tolerance,
    )
    table = markdown_table([{key: value for key, value in row.items() if key != "warm_up_s"} for row in rows])
    for row in rows:
        write_setting_card(run, row, baseline, results, compress_args, data_args)
    plot_size_accuracy(rows, run.path("size_accuracy.png"))
    write_json(run.path("comparison.json"), rows)
    with open(run.path("comparison.md"), "w", encoding="utf-8") as handle:
        handle.write(f"# Compression of {source}\n\n{table}\n")
    write_json(run.path("run_config.json"), resolved_config(compress_args, data_args, training_args))
    finish_run(run, results)
    say(
        f"\nHeld-out results ({len(labels)} reviews):\n{table}\n\n"
        f"smallest within {compress_args.tolerance:.0%}: {results['smallest_within_tolerance']}; "
        f"fastest: {results['fastest_within_tolerance']}\nSaved to {run.final}"
    )
    return results


@exit_on_recipe_error
def cli(args=None):
    return main(*parse_args(make_parser_types(), args))


if __name__ == "__main__":
    cli()
