"""Run several recipe variants on the same data and put their results side by side.

Each variant is a separate process (a recipe command line), so peak memory and training time are each
run's own. Results come from each run's all_results.json; the table, JSON and plot go to the study folder.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np

from recipe_utils import REPO_ROOT
from recipe_utils.core.errors import RecipeError
from recipe_utils.core.outputs import write_json
from recipe_utils.evaluation.intervals import accuracy_interval, paired_comparison
from recipe_utils.evaluation.predictions import read_predictions
from recipe_utils.publishing.report import markdown_table, plot_comparison


@dataclass
class Variant:
    name: str
    script: str
    arguments: list[str] = field(default_factory=list)


def run_variant(variant: Variant, study_dir: str, extra: list[str]) -> dict:
    """Run one variant into study_dir/name (replacing an earlier run of it) and return its all_results.json."""
    output_dir = os.path.join(study_dir, variant.name)
    command = [
        sys.executable,
        os.path.join(REPO_ROOT, variant.script),
        *variant.arguments,
        *extra,
        "--output_dir",
        output_dir,
        "--overwrite_output_dir",
        "true",
    ]
    print(f"\n=== {variant.name}: {' '.join(command[1:])}", flush=True)
    completed = subprocess.run(command, cwd=REPO_ROOT)
    if completed.returncode != 0:
        raise RecipeError(
            f"variant '{variant.name}' failed with exit code {completed.returncode}; see its output above"
        )
    with open(os.path.join(output_dir, "all_results.json"), encoding="utf-8") as handle:
        return json.load(handle)


def write_study(study_dir: str, rows: list[dict], title: str, plot_metrics=("accuracy",)) -> str:
    """comparison.json, comparison.md and comparison.png in study_dir; returns the markdown table."""
    table = markdown_table(rows)
    write_json(os.path.join(study_dir, "comparison.json"), rows)
    with open(os.path.join(study_dir, "comparison.md"), "w", encoding="utf-8") as handle:
        handle.write(f"# {title}\n\n{table}\n")
    plot_comparison(rows, os.path.join(study_dir, "comparison.png"), plot_metrics)
    return table


def correct_answers(folder: str) -> tuple[list[str], np.ndarray]:
    """The held-out texts a classifier run scored and whether it got each right (its eval_predictions.jsonl)."""
    rows = read_predictions(folder)
    return [row["text"] for row in rows], np.array([row["prediction"] == row["label"] for row in rows])


def classifier_row(results: dict, folder: str, seed: int) -> dict:
    """A classifier run's quality with its 95% interval, and what it cost: training time, held-out reviews
    scored per second, peak training memory, trainable parameters and size on disk."""
    low, high = accuracy_interval(correct_answers(folder)[1], seed)
    return {
        "accuracy": results["eval_accuracy"],
        "accuracy_95": f"{low:.3f}-{high:.3f}",
        "f1": results["eval_f1"],
        "trainable_params": results["trainable_params"],
        "saved_MB": round(results["saved_weights_bytes"] / 2**20, 2),
        "train_peak_memory_MB": round(results["train_peak_memory_mb"]),
        "train_runtime_s": round(results["train_runtime"], 1),
        "reviews_per_s": round(results["eval_reviews_per_second"], 1),
    }


def paired_columns(folder: str, reference_folder: str, reference: str, seed: int) -> dict:
    """The run in `folder` minus the one in `reference_folder` on the same held-out reviews: points, 95% paired
    interval and McNemar's p, in columns named after `reference`."""
    texts, correct = correct_answers(folder)
    reference_texts, reference_correct = correct_answers(reference_folder)
    if texts != reference_texts:
        raise RecipeError(f"{folder} and {reference_folder} scored different held-out reviews: no paired test")
    comparison = paired_comparison(correct, reference_correct, seed)
    low, high = comparison["difference_95"]
    return {
        f"minus_{reference}_points": round(comparison["difference_points"], 1),
        f"minus_{reference}_95": f"{low:+.1f} to {high:+.1f}",
        f"mcnemar_p_vs_{reference}": round(comparison["mcnemar_p"], 4),
    }
