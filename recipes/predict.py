"""Classify movie reviews with a fine-tuned model folder or Hub id; prints label and score per text.

    python recipes/predict.py --model outputs/sft_sentiment "A tender, funny film." "Two hours I won't get back."
    echo "Loved every minute" | python recipes/predict.py --model outputs/sft_sentiment

Texts are prepared exactly as in training (cleaning, and head+tail truncation when the run used it,
read from the run_config.json published with the model, locally or on the Hub), so scores match the run's
held-out evaluation.
"""

import recipe_utils.quiet  # noqa: F401  (first: keeps library import noise off the screen)

# isort: split
import argparse
import os
import sys
from types import SimpleNamespace

import datasets
from transformers import AutoModelForSequenceClassification

from recipe_utils.compression.weights import COMPRESSION_FILE, load_compressed
from recipe_utils.core.errors import RecipeError, exit_on_recipe_error
from recipe_utils.data.reviews import clean_text, tokenize_reviews
from recipe_utils.evaluation.inference import predict_probabilities
from recipe_utils.models.loading import load_pretrained, load_tokenizer, saved_truncation


@exit_on_recipe_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Model folder or Hub id of a fine-tuned classifier.")
    parser.add_argument("--revision", default="main", help="Hub branch, tag or commit.")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("texts", nargs="*", help="Texts to classify; none: one text per line on stdin.")
    args = parser.parse_args(argv)
    texts = args.texts or [line for line in sys.stdin.read().splitlines() if line.strip()]
    if not texts:
        raise RecipeError("no text to classify: pass texts as arguments or one per line on stdin")
    model_args = SimpleNamespace(
        model_name_or_path=args.model, model_revision=args.revision, trust_remote_code=False, dtype="float32"
    )
    tokenizer = load_tokenizer(model_args)
    if os.path.isfile(os.path.join(args.model, COMPRESSION_FILE)):  # a folder written by recipes/compress.py
        model = load_compressed(args.model)
    else:
        model = load_pretrained(AutoModelForSequenceClassification, model_args)
    dataset = datasets.Dataset.from_dict({"text": [clean_text(text) for text in texts]})
    tokenized = tokenize_reviews(dataset, tokenizer, saved_truncation(args.model, args.revision, tokenizer))
    probabilities = predict_probabilities(model, tokenized, tokenizer, args.batch_size)
    for text, row in zip(texts, probabilities, strict=True):
        best = int(row.argmax())
        print(f"{model.config.id2label[best]}\t{row[best]:.4f}\t{text}")


if __name__ == "__main__":
    main()
