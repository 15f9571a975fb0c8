"""Reviews as SFT data for TRL's SFTTrainer, in two shapes, and the held-out figures of a review generator.

text: the review itself (language modelling, seed 002's continuation shape; packed into blocks).
conversational: prompt/completion rows where the user asks for a review of a given sentiment ("Write a negative
review of a horror film.") and the assistant answers with a real review of that label; the loss falls on the
answer only (TRL's completion_only_loss), so the model learns to write what is asked, not to ask.
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from recipe_utils.args import DatasetArguments
from recipe_utils.distributed import gather_rows, shard
from recipe_utils.errors import RecipeError
from recipe_utils.generation_metrics import distinct_n
from recipe_utils.judges import share_with_interval

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


@torch.inference_mode()
def answer_perplexity(
    model, tokenizer, prompts: list[str], answers: list[str], max_length: int, batch: int = 8
) -> dict:
    """Perplexity per token and bits per byte of `answers` given `prompts` (rendered text; "" for plain text, where
    the first token, having no context, is not scored), over at most max_length tokens of prompt + answer.
    Bits per byte divide the summed loss by the UTF-8 bytes of the scored text, so they compare across tokenizers.
    Inputs go to the model's device, sums come back to the CPU; processes share the batches and gather."""
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for prompt, answer in zip(prompts, answers, strict=True):
        head = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        ids = (head + tokenizer(answer, add_special_tokens=False)["input_ids"])[:max_length]
        start = max(len(head), 1)
        if start < len(ids):
            rows.append((ids, start))
    if not rows:
        raise RecipeError(f"no answer token fits in max_length {max_length}")
    starts = range(0, len(rows), batch)
    sums = []
    for index in shard(len(starts)):
        chunk = rows[starts[index] : starts[index] + batch]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id or 0)
        scored = torch.zeros((len(chunk), width), dtype=torch.bool)
        for i, (ids, start) in enumerate(chunk):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            scored[i, start : len(ids)] = True
        mask = (torch.arange(width)[None, :] < torch.tensor([len(ids) for ids, _ in chunk])[:, None]).long()
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
        log_probs = torch.log_softmax(logits, -1).gather(-1, input_ids[:, 1:, None].to(device)).squeeze(-1)
        nats = float(-(log_probs * scored[:, 1:].to(device)).sum().cpu())
        text_bytes = sum(len(tokenizer.decode(ids[start:]).encode("utf-8")) for ids, start in chunk)
        sums.append((nats, int(scored.sum()), text_bytes))
    nats, tokens, text_bytes = (sum(values) for values in zip(*gather_rows(sums, len(starts)), strict=True))
    return {
        "perplexity": float(np.exp(nats / tokens)),
        "bits_per_byte": nats / np.log(2) / text_bytes,
        "tokens": tokens,
    }


def judged_as_asked(judges: dict, texts: list[str], wanted: list[int], seed: int) -> dict:
    """Per judge and sentiment: the share of `texts` each judge reads as the label wanted, with its interval."""
    wanted = np.asarray(wanted)
    figures = {}
    for name, judge in judges.items():
        verdicts = (judge.positive_probability(texts) > 0.5).astype(int) == wanted
        for label, sentiment in enumerate(("negative", "positive")):
            figures[f"{name}_{sentiment}"] = share_with_interval(verdicts[wanted == label], seed)
    return figures


def words_like(texts: list[str], reference: list[str]) -> list[str]:
    """Real reviews cut to the generated ones' median word count, so distinct-2 compares like with like."""
    length = int(np.median([len(text.split()) for text in reference])) if reference else 0
    return [" ".join(text.split()[: max(length, 2)]) for text in texts]


def diversity(generated: list[str], real: list[str]) -> dict:
    return {"distinct_2": distinct_n(generated, 2), "real_distinct_2": distinct_n(words_like(real, generated), 2)}


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
    from recipe_utils.args import DataArguments, LanguageModelingDataArguments
    from recipe_utils.data import balanced_sample, prepare_classification_data
    from recipe_utils.lm import load_lm_texts

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


def load_judges(args: ReviewSFTArguments, reviews: Reviews, tokenizer, seed: int, device="cpu") -> dict:
    """{"classifier": the sft_sentiment judge (a folder, or a Hub id), "tfidf": the independent judge fitted on pool
    reviews the classifier never trained on}. None where nothing is judged: unlabelled text, or a model without a
    chat template (it cannot be asked for a sentiment)."""
    import os

    from recipe_utils.distributed import say
    from recipe_utils.judges import classifier_training_texts, independent_judge, sentiment_classifier_judge

    chat = bool(getattr(tokenizer, "chat_template", None))
    if reviews.train_labels is None or not chat or args.controllability_samples < 1:
        return {}
    judges = {}
    local = args.judge_model and args.judge_model.startswith(("outputs", ".", "/"))
    if local and not os.path.isdir(args.judge_model):
        say(f"note: no judge folder {args.judge_model} (make sft_sentiment); the independent judge reads alone")
    elif args.judge_model:  # a run folder, or a Hub id
        judges["classifier"] = sentiment_classifier_judge(args.judge_model, args.judge_positive_label, device)
    excluded = classifier_training_texts(args.judge_model) if "classifier" in judges else set()
    judges["tfidf"] = independent_judge(
        reviews.pool_texts, reviews.pool_labels, excluded, args.independent_judge_reviews, seed
    )
    return judges


def generator_figures(model, tokenizer, reviews: Reviews, judges: dict, args, gen_args, training_args, ceiling=True):
    """Held-out perplexity and bits per byte in the training shape; with a chat template and judges, the
    controllability (share of requested reviews each judge reads as asked, per sentiment, with intervals), the
    imitation ceiling (real held-out reviews read as labelled) and distinct-2 beside real reviews'; the samples."""
    from recipe_utils.generation import generate, render_prompt
    from recipe_utils.preferences import sample_continuations

    seed, batch = training_args.seed, training_args.per_device_eval_batch_size
    texts = reviews.eval_texts[: args.perplexity_reviews]
    if args.data_shape == "conversational":
        labels = reviews.eval_labels[: args.perplexity_reviews]
        rng = np.random.default_rng(seed)
        prompts = [
            render_prompt(tokenizer, review_request(CLASS_NAMES[y], t, rng)) for t, y in zip(texts, labels, strict=True)
        ]
        answers = [text + tokenizer.eos_token for text in texts]
    else:
        prompts, answers = [""] * len(texts), texts
    figures = answer_perplexity(model, tokenizer, prompts, answers, training_args.max_length or 1024, batch)
    figures.pop("tokens")
    chat = bool(getattr(tokenizer, "chat_template", None))
    if not (chat and judges and args.controllability_samples > 0):
        prompts = gen_args.sample_prompts
        samples = [{"prompt": p, "text": generate(model, tokenizer, p, gen_args)} for p in prompts]
        return figures, samples
    wanted = [label for label in (0, 1) for _ in range(args.controllability_samples)]
    requests = [
        f"Write a {CLASS_NAMES[label]} review of {EVAL_SUBJECTS[i % len(EVAL_SUBJECTS)]}."
        for label in (0, 1)
        for i in range(args.controllability_samples)
    ]
    rendered = [render_prompt(tokenizer, request) for request in requests]
    generated = [row[0].strip() for row in sample_continuations(model, tokenizer, rendered, 1, gen_args, batch)]
    for key, value in judged_as_asked(judges, generated, wanted, seed).items():
        figures[f"controllability_{key}"] = value["share"]
        figures[f"controllability_{key}_low"], figures[f"controllability_{key}_high"] = value["low"], value["high"]
    if ceiling:  # the same for every model: measured once
        real, labels = reviews.eval_texts[: args.ceiling_reviews], reviews.eval_labels[: args.ceiling_reviews]
        for key, value in judged_as_asked(judges, real, labels, seed).items():
            figures[f"ceiling_{key}"] = value["share"]
    figures.update(diversity(generated, reviews.eval_texts))
    samples = [{"prompt": r, "text": g} for r, g in zip(requests, generated, strict=True)]
    # Alternate the sentiments so the card's first samples show both.
    half = len(samples) // 2
    return figures, [sample for pair in zip(samples[:half], samples[half:], strict=True) for sample in pair]
