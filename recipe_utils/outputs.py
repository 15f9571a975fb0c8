"""Writing a run's folder: guard against clobbering, resolved config without secrets, JSON files."""

import dataclasses
import json
import os
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
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


def remove_pickled_training_args(output_dir: str) -> None:
    """Drop the Trainer's pickled training_args.bin: run_config.json holds the same as JSON, and a
    published folder stays pickle-free (loading pickles from a pulled repo can run code)."""
    path = os.path.join(output_dir, "training_args.bin")
    if os.path.exists(path):
        os.remove(path)
