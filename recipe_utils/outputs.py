"""Writing a run's folder: guard against clobbering, resolved config without secrets, JSON files."""

import dataclasses
import json
import os
import re
import shutil

from recipe_utils.errors import RecipeError

# Arguments that may carry credentials; never written to disk or a card.
SECRET_FIELDS = {"hub_token", "push_to_hub_token", "token", "wandb_api_key"}


def check_output_dir(path: str, overwrite: bool) -> None:
    """Refuse to run into a folder that already holds files unless overwriting was asked for."""
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise RecipeError(
            f"output_dir {path} is not empty; pass --overwrite_output_dir to replace it, "
            "or --resume_from_checkpoint to continue its run"
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise RecipeError(f"output_dir {path} is a file, not a folder")


def clear_output_dir(path: str) -> None:
    """Empty an output_dir that is being overwritten, just before the new run writes into it."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)


def resolved_config(*argument_objects) -> dict:
    """All arguments of a run, merged into one flat mapping, secrets removed."""
    config = {}
    for arguments in argument_objects:
        values = arguments.to_dict() if hasattr(arguments, "to_dict") else dataclasses.asdict(arguments)
        config.update({key: value for key, value in values.items() if key not in SECRET_FIELDS})
    return config


def write_json(path: str, payload) -> None:
    """Write through a temporary file and rename: a crash leaves the old file or the new one, never half."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    os.replace(temporary, path)


def finish_run(output_dir: str, results: dict) -> None:
    """Write all_results.json, the marker of a complete run folder: last, after weights, card and plots,
    so a run interrupted while saving never looks finished (recipes/push.py refuses such a folder)."""
    write_json(os.path.join(output_dir, "all_results.json"), results)


def resolve_resume(training_args) -> None:
    """`--resume_from_checkpoint latest` becomes the newest complete checkpoint in output_dir.

    The Trainer writes trainer_state.json last in a checkpoint, so a checkpoint without it was cut off
    while saving; it is skipped, never resumed from.
    """
    value = training_args.resume_from_checkpoint
    if not value:
        return
    if value in ("latest", "last", "True", "true"):
        folder = training_args.output_dir
        candidates = [
            os.path.join(folder, name)
            for name in (os.listdir(folder) if os.path.isdir(folder) else [])
            if re.fullmatch(r"checkpoint-\d+", name)
        ]
        complete = [path for path in candidates if os.path.isfile(os.path.join(path, "trainer_state.json"))]
        if not complete:
            raise RecipeError(f"no complete checkpoint in {folder} to resume from")
        training_args.resume_from_checkpoint = max(complete, key=lambda path: int(path.rsplit("-", 1)[1]))
        print(f"resuming from {training_args.resume_from_checkpoint}", flush=True)
    elif not os.path.isdir(value):
        raise RecipeError(f"checkpoint folder not found: {value}")
    elif not os.path.isfile(os.path.join(value, "trainer_state.json")):
        raise RecipeError(f"{value} is an incomplete checkpoint (no trainer_state.json): it was cut off while saving")


def remove_pickled_training_args(output_dir: str) -> None:
    """Drop the Trainer's pickled training_args.bin: run_config.json holds the same as JSON, and a
    published folder stays pickle-free (loading pickles from a pulled repo can run code)."""
    path = os.path.join(output_dir, "training_args.bin")
    if os.path.exists(path):
        os.remove(path)
