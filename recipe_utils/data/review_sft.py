"""Reviews as SFT data for TRL's SFTTrainer, in two shapes, and the held-out split they are judged on.

text: the review itself (language modelling, seed 002's continuation shape; packed into blocks).
conversational: prompt/completion rows where the user asks for a review of a given sentiment ("Write a negative
review of a horror film.") and the assistant answers with a real review of that label; the loss falls on the
answer only (TRL's completion_only_loss), so the model learns to write what is asked, not to ask.
"""

from dataclasses import dataclass, field

import numpy as np

from recipe_utils.core.args import DatasetArguments
from recipe_utils.core.errors import RecipeError

SHAPES = ("text", "conversational")
# A genre named in the request when the review names one (first match in this order); else "a movie".
GENRES = ("horror", "comedy", "western", "musical", "documentary", "thriller", "romance", "war", "animated", "drama")
REQUESTS = (
    "Write a {sentiment} review of {subject}.",
    "Write a {sentiment} movie review.",
    "Give me a {sentiment} review of {subject}.",
    "I'd like a {sentiment} review of {subject}, please.",
)
# Held-out requests: the first template, over these subjects in turn.
EVAL_SUBJECTS = ("a movie", "a horror film", "a comedy film", "a drama film", "a thriller film", "a western film")


@dataclass
class ReviewSFTArguments(DatasetArguments):
    """Which reviews to train on, in which shape, and how the generator is judged."""

    data_shape: str = field(
        default="conversational",
        metadata={
            "help": "text: the reviews as plain text; conversational: review requests and answers.",
            "choices": list(SHAPES),
        },
    )
    label_column: str | None = field(
        default="label",
        metadata={"help": "Sentiment label (0 negative, 1 positive); a text dataset without it is split by document."},
    )
    dataset_test_split: str | None = field(
        default=None,
        metadata={
            "help": "Split to hold out (test). Unset: hold out eval_size balanced reviews of the training split."
        },
    )
    eval_size: int = field(
        default=1000,
        metadata={"help": "Held-out reviews: the same balanced set sft_sentiment holds out with the same seed."},
    )
    eval_fraction: float = field(default=0.1, metadata={"help": "Held-out share of an unlabelled text dataset."})
    max_review_words: int | None = field(
        default=None,
        metadata={
            "help": "Train on reviews of at most this many words (unset: any). Short reviews fit whole in max_length, "
            "so the model learns to write a complete review, verdict included, within the tokens a sample gets."
        },
    )
    perplexity_reviews: int = field(default=100, metadata={"help": "Held-out reviews whose perplexity is measured."})
    judge_model: str | None = field(
        default="outputs/sft_sentiment",
        metadata={"help": "The sentiment classifier that judges generated reviews (unset or missing: left out)."},
    )
    judge_positive_label: str = field(default="positive", metadata={"help": "The judge's label for positive."})
    independent_judge_reviews: int = field(
        default=8000,
        metadata={"help": "Training-side reviews the independent TF-IDF judge is fitted on (none the classifier saw)."},
    )
    controllability_samples: int = field(
        default=48, metadata={"help": "Reviews generated per sentiment to measure controllability (0: skip)."}
    )
    ceiling_reviews: int = field(
        default=400, metadata={"help": "Held-out real reviews the judges read, for the imitation ceiling."}
    )

    def __post_init__(self):
        if self.eval_size < 2:
            raise ValueError(f"eval_size must be at least 2, got {self.eval_size}")
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be between 0 and 1, got {self.eval_fraction}")
        if self.data_shape == "conversational" and not self.label_column:
            raise ValueError("data_shape conversational needs labelled reviews (set label_column)")


def review_request(sentiment: str, review: str, rng: np.random.Generator) -> str:
    lowered = f" {review.lower()} "
    genre = next((name for name in GENRES if f" {name} " in lowered), None)
    subject = f"a {genre} film" if genre else "a movie"
    return REQUESTS[int(rng.integers(len(REQUESTS)))].format(sentiment=sentiment, subject=subject)


def sft_rows(texts: list[str], labels: list[int] | None, shape: str, class_names: list[str], seed: int) -> dict:
    """The dataset columns SFTTrainer reads for `shape`: text, or conversational prompt/completion."""
    if shape == "text":
        return {"text": list(texts)}
    if labels is None:
        raise RecipeError("data_shape conversational needs labelled reviews (set label_column)")
    rng = np.random.default_rng(seed)
    prompts = [
        [{"role": "user", "content": review_request(class_names[y], t, rng)}]
        for t, y in zip(texts, labels, strict=True)
    ]
    return {"prompt": prompts, "completion": [[{"role": "assistant", "content": text}] for text in texts]}


CLASS_NAMES = ["negative", "positive"]


@dataclass
class Reviews:
    """The training and held-out sides of a review (or text) dataset; labels are None for unlabelled text."""

    train_texts: list[str]
    train_labels: list[int] | None
    eval_texts: list[str]
    eval_labels: list[int] | None
    pool_texts: list[str]  # every labelled review outside the held-out set: where the independent judge may fit
    pool_labels: list[int]
    class_names: list[str]
    stats: dict


def split_reviews(args: ReviewSFTArguments, seed: int) -> Reviews:
    """Labelled reviews: held out exactly as sft_sentiment holds them out with the same seed and eval_size (so
    neither the generator nor the classifier judging it trains on them), training texts drawn balanced from the
    rest. Unlabelled text (label_column unset): split by document (lm.load_lm_texts)."""
    from recipe_utils.core.args import DataArguments, LanguageModelingDataArguments
    from recipe_utils.data.language_modeling import load_lm_texts
    from recipe_utils.data.reviews import balanced_sample, prepare_classification_data

    if not args.label_column:
        lm_args = LanguageModelingDataArguments(
            dataset_name=args.dataset_name,
            dataset_config=args.dataset_config,
            dataset_train_split=args.dataset_train_split,
            text_column=args.text_column,
            max_train_samples=args.max_train_samples,
            max_eval_samples=args.max_eval_samples,
            eval_fraction=args.eval_fraction,
        )
        train, held_out, stats = load_lm_texts(lm_args, seed)
        return Reviews(list(train["text"]), None, list(held_out["text"]), None, [], [], CLASS_NAMES, stats)
    common = {
        "dataset_name": args.dataset_name,
        "dataset_config": args.dataset_config,
        "dataset_train_split": args.dataset_train_split,
        "text_column": args.text_column,
        "label_column": args.label_column,
        "class_names": CLASS_NAMES,
        "dataset_test_split": args.dataset_test_split,
        "eval_size": args.eval_size,
        "max_eval_samples": args.max_eval_samples,
    }
    # The whole pool once; the training reviews are a balanced draw from it.
    data = prepare_classification_data(DataArguments(**common), seed)
    pool = data.train.to_pandas()
    short = pool if args.max_review_words is None else pool[pool["text"].str.split().str.len() <= args.max_review_words]
    if short["label"].nunique() < len(CLASS_NAMES):
        raise RecipeError(f"no review of each label has at most {args.max_review_words} words")
    train = balanced_sample(short, args.max_train_samples, seed)
    stats = {**data.stats, "train_samples": len(train), "pool_samples": len(pool)}
    stats["train_class_counts"] = {CLASS_NAMES[k]: int(v) for k, v in sorted(train["label"].value_counts().items())}
    return Reviews(
        train["text"].tolist(),
        train["label"].tolist(),
        list(data.eval["text"]),
        list(data.eval["label"]),
        pool["text"].tolist(),
        pool["label"].tolist(),
        CLASS_NAMES,
        stats,
    )
