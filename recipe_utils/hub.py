"""Publishing a finished run folder to the Hugging Face Hub.

Recipes take the TrainingArguments hub flags (push_to_hub, hub_model_id, hub_private_repo,
hub_strategy, hub_token) but push once, at the end, after the card, results and plots are written:
the Trainer's own push would upload a folder that is not finished yet, and a refused push must never
cost the trained weights. The same function republishes a finished folder later (recipes/push.py).
"""

import os
from dataclasses import dataclass

from recipe_utils.errors import RecipeError

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
    ignore = list(IGNORED)
    if request.strategy != "all_checkpoints":
        # Only all_checkpoints publishes checkpoint-* folders; checkpoint adds the latest as last-checkpoint/.
        ignore.append("checkpoint-*")
    api = HfApi(token=token)
    try:
        url = api.create_repo(request.repo_id, private=request.private, exist_ok=True)
        api.upload_folder(
            folder_path=output_dir,
            repo_id=url.repo_id,
            commit_message="Upload run from movie-review recipes",
            ignore_patterns=ignore,
        )
        if request.strategy == "checkpoint":
            latest = _latest_checkpoint(output_dir)
            if latest:
                api.upload_folder(
                    folder_path=latest, repo_id=url.repo_id, path_in_repo="last-checkpoint", ignore_patterns=IGNORED
                )
        _rewrite_local_references(api, output_dir, url.repo_id)
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


def _rewrite_local_references(api, output_dir: str, repo_id: str) -> None:
    """Publish versions of two files that name things only the training machine has (the local
    copies stay as they are): the card's usage snippet names the repo instead of the run folder, and
    an adapter's base model is the Hub id of an embedded model instead of its site-packages path."""
    import json

    from recipe_utils.models import EMBEDDED_MODELS, hub_model_id, resolve_model_path

    rewritten = {}
    card_path = os.path.join(output_dir, "README.md")
    if os.path.isfile(card_path):
        with open(card_path, encoding="utf-8") as handle:
            text = handle.read()
        if f'"{output_dir}"' in text:
            rewritten["README.md"] = text.replace(f'"{output_dir}"', f'"{repo_id}"')
    adapter_path = os.path.join(output_dir, "adapter_config.json")
    if os.path.isfile(adapter_path):
        with open(adapter_path, encoding="utf-8") as handle:
            config = json.load(handle)
        embedded = {os.path.realpath(resolve_model_path(name)): hub_model_id(name) for name in EMBEDDED_MODELS}
        base = os.path.realpath(config.get("base_model_name_or_path") or "")
        if base in embedded:
            config["base_model_name_or_path"] = embedded[base]
            rewritten["adapter_config.json"] = json.dumps(config, indent=2, sort_keys=True) + "\n"
    for path_in_repo, text in rewritten.items():
        api.upload_file(
            path_or_fileobj=text.encode("utf-8"),
            path_in_repo=path_in_repo,
            repo_id=repo_id,
            commit_message=f"{path_in_repo}: name the Hub, not local paths",
        )


def _latest_checkpoint(output_dir: str) -> str | None:
    checkpoints = [name for name in os.listdir(output_dir) if name.startswith("checkpoint-")]
    if not checkpoints:
        return None
    return os.path.join(output_dir, max(checkpoints, key=lambda name: int(name.split("-")[-1])))
