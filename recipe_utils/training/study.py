"""Run several recipe variants on the same data and put their results side by side.

Each variant is a separate process (a recipe command line), so peak memory and training time are each
run's own. Results come from each run's all_results.json; the table, JSON and plot go to the study folder.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

from recipe_utils import REPO_ROOT
from recipe_utils.core.errors import RecipeError
from recipe_utils.core.outputs import write_json
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
