"""Files of a run folder: the resolved config without secrets, JSON written atomically, no pickles."""

import dataclasses
import json
import os

# Arguments that may carry credentials; never written to disk or a card.
SECRET_FIELDS = {"hub_token", "push_to_hub_token", "token", "wandb_api_key"}


def resolved_config(*argument_objects) -> dict:
    """All arguments of a run, merged into one flat mapping, secrets removed."""
    config = {}
    for arguments in argument_objects:
        values = arguments.to_dict() if hasattr(arguments, "to_dict") else dataclasses.asdict(arguments)
        config.update({key: value for key, value in values.items() if key not in SECRET_FIELDS})
    return config


def write_text(path: str, text: str) -> None:
    """Write through a temporary file and rename: a crash leaves the old file or the new one, never half."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def write_json(path: str, payload) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str):
    """The JSON file's content, or None where there is no such file."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def remove_pickled_training_args(output_dir: str) -> None:
    """Drop the Trainer's pickled training_args.bin: run_config.json holds the same as JSON, and a
    published folder stays pickle-free (loading pickles from a pulled repo can run code)."""
    path = os.path.join(output_dir, "training_args.bin")
    if os.path.exists(path):
        os.remove(path)
