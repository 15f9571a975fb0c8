"""Publish a finished run folder to the Hugging Face Hub without retraining.

    python recipes/push.py --output_dir outputs/sft_sentiment --hub_model_id you/minilm-imdb-sentiment
    make push RUN=outputs/sft_sentiment REPO=you/minilm-imdb-sentiment

The token comes from HF_TOKEN or the login cache (`hf auth login`), never from the command line.
Uploads weights or adapter, tokenizer, model card, results and plots; never pickles or optimizer state.
"""

import recipe_utils.quiet  # noqa: F401  (first: keeps library import noise off the screen)

# isort: split
import argparse
import os
import sys

from recipe_utils.core.errors import RecipeError, exit_on_recipe_error
from recipe_utils.publishing.hub import PushRequest, publish


@exit_on_recipe_error
def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True, help="A finished run folder (holds all_results.json).")
    parser.add_argument("--hub_model_id", required=True, help="Repo to create or update: user/name or org/name.")
    parser.add_argument("--hub_private_repo", action="store_true", help="Create the repo private.")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.output_dir, "all_results.json")):
        raise RecipeError(f"{args.output_dir} is not a finished run folder (no all_results.json)")
    return publish(args.output_dir, PushRequest(args.hub_model_id, args.hub_private_repo or None, "end", None))


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
