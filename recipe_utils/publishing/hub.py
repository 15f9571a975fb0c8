"""Publishing a finished run folder to the Hugging Face Hub.

Recipes take the TrainingArguments hub flags (push_to_hub, hub_model_id, hub_private_repo,
hub_strategy, hub_token) but push once, at the end, after the card, results and plots are written:
the Trainer's own push would upload a folder that is not finished yet, and a refused push must never
cost the trained weights. The same function republishes a finished folder later (recipes/push.py).
"""

import os
from dataclasses import dataclass

from recipe_utils.core.errors import RecipeError

# Never published: optimizer state and RNG snapshots in checkpoints are large and useless to users,
# and pickles can run code when loaded.
IGNORED = ["*.pt", "*.pth", "*.bin", "*.pkl", "**/optimizer.*", "**/scheduler.*", "**/rng_state*"]


@dataclass
class PushRequest:
    repo_id: str
    private: bool | None
    strategy: str
    token: str | None


def take_push_request(training_args) -> PushRequest | None:
    """Read the hub flags, then turn the Trainer's own pushing off (the recipe pushes when it is done)."""
    if not training_args.push_to_hub:
        return None
    repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
    request = PushRequest(
        repo_id=repo_id,
        private=training_args.hub_private_repo,
        strategy=str(getattr(training_args.hub_strategy, "value", training_args.hub_strategy)),
        token=training_args.hub_token,
    )
    training_args.push_to_hub = False
    training_args.hub_token = None  # the token is not a training argument worth keeping in memory twice
    return request


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:300]


def publish(output_dir: str, request: PushRequest) -> str:
    """Create the repo if needed and upload the folder; one RecipeError line on any failure."""
    import httpx
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    token = request.token or get_token()
    retry = f"the run is saved in {output_dir}; push it later with: python recipes/push.py --output_dir {output_dir}"
    if not token:
        raise RecipeError(f"cannot push to the Hub: no token (set HF_TOKEN or run `hf auth login`); {retry}")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        raise RecipeError(f"cannot push to the Hub: HF_HUB_OFFLINE is set; {retry}")
    api = HfApi(token=token)
    try:
        url = api.create_repo(request.repo_id, private=request.private, exist_ok=True)
        # One commit holds every file, the card and adapter config already rewritten for the Hub: a repo never
        # shows a half-published run, and a failed push changes nothing on it.
        api.create_commit(
            repo_id=url.repo_id,
            operations=commit_operations(output_dir, url.repo_id, request.strategy),
            commit_message="Upload run from movie-review recipes",
        )
    except (HfHubHTTPError, RuntimeError) as err:
        # An LFS upload failure arrives as a RuntimeError wrapping the HTTP error.
        http_error = err if isinstance(err, HfHubHTTPError) else err.__cause__
        if not isinstance(http_error, HfHubHTTPError):
            raise RecipeError(f"the push to {request.repo_id} failed: {_short(err)}; {retry}") from None
        err = http_error
        status = getattr(err.response, "status_code", "?")
        message = f"the Hub refused the push to {request.repo_id} (HTTP {status}): {_short(err)}; {retry}"
        raise RecipeError(message) from None
    except ValueError as err:  # the Hub's check of the card's metadata
        raise RecipeError(f"the Hub refused the push to {request.repo_id}: {_short(err)}; {retry}") from None
    except (OSError, httpx.TransportError) as err:  # connection refused, DNS, timeouts
        raise RecipeError(f"cannot reach the Hub to push {request.repo_id}: {_short(err)}; {retry}") from None
    print(f"Pushed {output_dir} to {url}", flush=True)
    return str(url)


def commit_operations(output_dir: str, repo_id: str, strategy: str) -> list:
    """The files of a run folder as one commit's additions (checkpoints only as hub_strategy asks)."""
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.utils import filter_repo_objects

    ignore = list(IGNORED)
    if strategy != "all_checkpoints":
        # Only all_checkpoints publishes checkpoint-* folders; checkpoint adds the latest as last-checkpoint/.
        ignore.append("checkpoint-*")
    files = {path: os.path.join(output_dir, path) for path in _relative_files(output_dir)}
    if strategy == "checkpoint" and _latest_checkpoint(output_dir):
        latest = _latest_checkpoint(output_dir)
        kept = filter_repo_objects(_relative_files(latest), ignore_patterns=IGNORED)
        files.update({f"last-checkpoint/{path}": os.path.join(latest, path) for path in kept})
    rewritten = _hub_versions(output_dir, repo_id)
    return [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=rewritten.get(path, files[path]))
        for path in filter_repo_objects(sorted(files), ignore_patterns=ignore)
    ]


def _relative_files(folder: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
        for root, _, names in os.walk(folder)
        for name in names
    )


def _hub_versions(output_dir: str, repo_id: str) -> dict[str, bytes]:
    """Published versions of two files that name things only the training machine has (the local copies
    stay as they are): the card's usage code names the repo instead of the run folder, and an adapter's base
    model is the Hub id of an embedded model instead of its site-packages path."""
    import json

    from recipe_utils.models.loading import EMBEDDED_MODELS, hub_model_id, resolve_model_path

    rewritten = {}
    card_path = os.path.join(output_dir, "README.md")
    if os.path.isfile(card_path):
        with open(card_path, encoding="utf-8") as handle:
            text = handle.read()
        for local in {output_dir, os.path.normpath(output_dir)}:
            text = text.replace(f'"{local}"', f'"{repo_id}"').replace(f"--model {local} ", f"--model {repo_id} ")
        rewritten["README.md"] = text.encode("utf-8")
    adapter_path = os.path.join(output_dir, "adapter_config.json")
    if os.path.isfile(adapter_path):
        with open(adapter_path, encoding="utf-8") as handle:
            config = json.load(handle)
        embedded = {os.path.realpath(resolve_model_path(name)): hub_model_id(name) for name in EMBEDDED_MODELS}
        base = os.path.realpath(config.get("base_model_name_or_path") or "")
        if base in embedded:
            config["base_model_name_or_path"] = embedded[base]
            rewritten["adapter_config.json"] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode("utf-8")
    return rewritten


def _latest_checkpoint(output_dir: str) -> str | None:
    checkpoints = [name for name in os.listdir(output_dir) if name.startswith("checkpoint-")]
    if not checkpoints:
        return None
    return os.path.join(output_dir, max(checkpoints, key=lambda name: int(name.split("-")[-1])))
