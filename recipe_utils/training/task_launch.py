"""Entry points that are one recipe with other defaults (lora.py, qlora.py): `--task NAME` picks the recipe file,
which runs from its path with the caller's defaults, so no recipe imports another."""

import os
import runpy
import sys

from recipe_utils import REPO_ROOT

RECIPES_DIR = os.path.join(REPO_ROOT, "recipes")
TASKS = {"sentiment": "sft_sentiment.py", "clm": "clm_distilgpt2.py"}


def split_task(argv: list[str]) -> tuple[str, list[str]]:
    """Take --task NAME (or --task=NAME) out of argv; the rest goes to the task's recipe."""
    task, rest, index = "sentiment", [], 0
    while index < len(argv):
        item = argv[index]
        if item == "--task" and index + 1 < len(argv):
            task, index = argv[index + 1], index + 2
            continue
        if item.startswith("--task="):
            task = item.split("=", 1)[1]
        else:
            rest.append(item)
        index += 1
    if task not in TASKS:
        print(f"error: unknown task '{task}'; choose one of {', '.join(TASKS)}", file=sys.stderr)
        sys.exit(2)
    return task, rest


def run_task(defaults: dict, argv: list[str] | None = None):
    """Run the --task recipe's command line (`cli`) on argv with `defaults` in place of its dataclass defaults."""
    task, rest = split_task(list(sys.argv[1:] if argv is None else argv))
    recipe = runpy.run_path(os.path.join(RECIPES_DIR, TASKS[task]), run_name=f"{task}_recipe")
    return recipe["cli"](rest, defaults=defaults)
