"""The held-out figures of a review writer (clm_distilgpt2): perplexity and bits per byte in its training shape,
controllability (the share of requested reviews each judge reads as asked, per sentiment, with intervals) beside
the imitation ceiling, and distinct-2 beside real reviews'."""

import numpy as np
import torch

from recipe_utils.alignment.judges import share_with_interval
from recipe_utils.core.distributed import gather_rows, shard
from recipe_utils.core.errors import RecipeError
from recipe_utils.data.review_sft import CLASS_NAMES, EVAL_SUBJECTS, Reviews, ReviewSFTArguments, review_request
from recipe_utils.evaluation.generation_metrics import distinct_n


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


def load_judges(args: ReviewSFTArguments, reviews: Reviews, tokenizer, seed: int, device="cpu") -> dict:
    """{"classifier": the sft_sentiment judge (a folder, or a Hub id), "tfidf": the independent judge fitted on pool
    reviews the classifier never trained on}. None where nothing is judged: unlabelled text, or a model without a
    chat template (it cannot be asked for a sentiment)."""
    import os

    from recipe_utils.alignment.judges import classifier_training_texts, independent_judge, sentiment_classifier_judge
    from recipe_utils.core.distributed import say

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
    from recipe_utils.alignment.preferences import sample_continuations
    from recipe_utils.evaluation.generation import generate, render_prompt

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
