"""An instruct LLM as a sentiment classifier without training: asked in a chat prompt whether a review is
positive or negative, its answer is read from the next-token probabilities of the two label words (not parsed
from free text), zero-shot or with k labelled training reviews as earlier turns of the chat (few-shot). Raw, the
label with the larger probability wins; calibrated, P(positive) is compared with a threshold fitted on training
reviews, never held-out ones (an LLM's prior leans to one word: SmolLM2-135M-Instruct answers "positive" to 86% of
reviews).

The instruction and the shots are the same for every review, so they are run once and their key/value cache is
reused for every batch: few-shot costs about what zero-shot costs.
"""

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from recipe_utils.core.distributed import gather_rows, is_main_process, shard
from recipe_utils.core.errors import RecipeError

QUESTION = "Is this movie review positive or negative? Answer with one word.\n\nReview: {review}"
MARKER = "\u0000REVIEW\u0000"


@dataclass
class PromptedLLMArguments:
    prompted_llm: str | None = field(
        default=None,
        metadata={
            "help": "An instruct LLM asked to classify the held-out reviews (its answer read from the next-token "
            "probabilities of the label words), zero-shot and few-shot, raw and calibrated. Unset: skipped."
        },
    )
    prompted_llm_label_words: list[str] = field(
        default_factory=lambda: ["negative", "positive"],
        metadata={"help": "The word for each label, in label order; each must be one token of the LLM's tokenizer."},
    )
    prompted_llm_shots: int = field(default=4, metadata={"help": "Labelled training reviews in the few-shot prompt."})
    prompted_llm_calibration_reviews: int = field(
        default=200, metadata={"help": "Training reviews the calibration threshold is fitted on (never held out)."}
    )
    prompted_llm_review_tokens: int = field(
        default=128, metadata={"help": "Tokens of each review the LLM reads (the first ones)."}
    )
    prompted_llm_batch_size: int = field(default=16, metadata={"help": "Reviews per forward pass."})


def label_token_ids(tokenizer, words: list[str]) -> list[int]:
    """The token of each label word; a word the tokenizer splits has no single next-token probability."""
    ids = []
    for word in words:
        pieces = tokenizer.encode(word, add_special_tokens=False)
        if len(pieces) != 1:
            raise RecipeError(
                f"the label word '{word}' is {len(pieces)} tokens of the prompted LLM's tokenizer; each label word "
                "must be a single token (set prompted_llm_label_words)"
            )
        ids.append(pieces[0])
    return ids


def truncate(tokenizer, text: str, tokens: int) -> str:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return text if len(ids) <= tokens else tokenizer.decode(ids[:tokens])


def few_shot_turns(tokenizer, texts, labels, words: list[str], k: int, review_tokens: int, seed: int) -> list[dict]:
    """k labelled reviews as earlier question/answer turns, the labels alternating (balanced, in a seeded order)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    by_label = [rng.permutation(np.flatnonzero(labels == label)) for label in range(len(words))]
    picks = [int(by_label[i % len(words)][i // len(words)]) for i in range(k)]
    turns = []
    for index in picks:
        review = truncate(tokenizer, texts[index], review_tokens)
        turns += [
            {"role": "user", "content": QUESTION.format(review=review)},
            {"role": "assistant", "content": words[int(labels[index])]},
        ]
    return turns


def prompt_around(tokenizer, shots: list[dict]) -> tuple[str, str]:
    """The chat text before and after the review: the question (after any shots) up to where the answer starts."""
    messages = [*shots, {"role": "user", "content": QUESTION.format(review=MARKER)}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    before, after = text.split(MARKER)
    return before, after


@torch.inference_mode()
def label_probabilities(
    model, tokenizer, texts, label_ids, shots, review_tokens: int, batch_size: int, desc: str = "Prompted LLM"
) -> np.ndarray:
    """P(each label word | the prompt), renormalised over the label words, one row per review. The prompt's shared
    start is run once and its cache reused; batches go to the model's device, probabilities come back to the CPU;
    processes share the batches out and gather."""
    model.eval()
    device = next(model.parameters()).device
    before, after = prompt_around(tokenizer, shots)
    head = torch.tensor([tokenizer.encode(before, add_special_tokens=False)], device=device)
    decoder = model.get_decoder()
    cache = decoder(input_ids=head, use_cache=True).past_key_values
    tail = tokenizer.encode(after, add_special_tokens=False)
    rows = [tokenizer.encode(text, add_special_tokens=False)[:review_tokens] + tail for text in texts]
    starts = range(0, len(rows), batch_size)
    scored = []
    # A progress bar: a 135M LLM reads 1,000 reviews in minutes on a CPU.
    for index in tqdm(shard(len(starts)), desc=desc, disable=len(starts) < 2 or not is_main_process()):
        chunk = rows[starts[index] : starts[index] + batch_size]
        lengths = torch.tensor([len(ids) for ids in chunk])
        ids = torch.full((len(chunk), int(lengths.max())), tokenizer.pad_token_id or 0)
        for i, row in enumerate(chunk):
            ids[i, : len(row)] = torch.tensor(row)
        # Right padding: every row continues the shared start at the same position; its answer is read at its
        # own last token.
        real = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        mask = torch.cat([torch.ones(len(chunk), head.shape[1], dtype=torch.long), real], dim=1)
        past = copy.deepcopy(cache)
        past.batch_repeat_interleave(len(chunk))
        # The decoder's hidden states, and the LM head on each row's last one only: the vocabulary projection of
        # every position would cost a fifth of the pass.
        hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device), past_key_values=past)
        last_hidden = hidden.last_hidden_state[torch.arange(len(chunk), device=device), (lengths - 1).to(device)]
        last = model.get_output_embeddings()(last_hidden)[:, label_ids].float()
        scored.append(torch.softmax(last, dim=-1).cpu().numpy())
    return np.concatenate(gather_rows(scored, len(starts))) if len(starts) else np.zeros((0, len(label_ids)))


def threshold_accuracies(positive_probability, labels) -> tuple[np.ndarray, np.ndarray]:
    """Every threshold on P(positive) that changes a decision (midpoints of the sorted values, and the two ends),
    with the accuracy each gives."""
    values = np.sort(np.unique(positive_probability))
    candidates = np.concatenate([[0.0], (values[1:] + values[:-1]) / 2, [1.0]]) if len(values) > 1 else np.array([0.5])
    labels = np.asarray(labels)
    return candidates, np.array([np.mean((positive_probability > t).astype(int) == labels) for t in candidates])


def fit_threshold(calibration_texts, positive_probability, labels, held_out_texts) -> float:
    """The threshold on P(positive) with the best accuracy on calibration reviews, which must all come from the
    training side: a held-out review among them would tune the classifier on the reviews that score it."""
    leaked = set(calibration_texts) & set(held_out_texts)
    if leaked:
        raise RecipeError(f"{len(leaked)} calibration review(s) are held-out reviews; calibrate on training reviews")
    candidates, accuracy = threshold_accuracies(positive_probability, labels)
    return float(candidates[int(np.argmax(accuracy))])


def prompted_predictions(args, data, seed: int, device) -> tuple[dict[str, np.ndarray], dict]:
    """Predictions on the held-out reviews of the prompted LLM, zero-shot and few-shot, each raw and calibrated
    (threshold fitted on training reviews), and facts about each: its threshold, the held-out reviews it scored
    per second (the cost of an answer) and the labelled reviews it used (shots and calibration reviews)."""
    from transformers import AutoModelForCausalLM

    from recipe_utils.core.args import ModelArguments
    from recipe_utils.models.loading import load_pretrained, load_tokenizer

    model_args = ModelArguments(model_name_or_path=args.prompted_llm)
    tokenizer = load_tokenizer(model_args)
    if not getattr(tokenizer, "chat_template", None):
        raise RecipeError(f"prompted_llm {args.prompted_llm} has no chat template: it needs an instruct model")
    if len(args.prompted_llm_label_words) != len(data.label_names) or len(data.label_names) != 2:
        raise RecipeError(
            f"prompted_llm reads two label words for two labels, got {args.prompted_llm_label_words} for "
            f"{data.label_names}"
        )
    label_ids = label_token_ids(tokenizer, args.prompted_llm_label_words)
    model = load_pretrained(AutoModelForCausalLM, model_args).to(device)
    train_texts, train_labels = list(data.train["text"]), list(data.train["label"])
    shots = few_shot_turns(
        tokenizer,
        train_texts,
        train_labels,
        args.prompted_llm_label_words,
        args.prompted_llm_shots,
        args.prompted_llm_review_tokens,
        seed,
    )
    # Calibration reviews: training reviews that are not shots (the last ones of a seeded order).
    order = np.random.default_rng(seed + 1).permutation(len(train_texts))[-args.prompted_llm_calibration_reviews :]
    calibration = [train_texts[i] for i in order]
    calibration_labels = [train_labels[i] for i in order]
    held_out = list(data.eval["text"])
    predictions, facts = {}, {}
    for name, turns in (("llm_zero_shot", []), ("llm_few_shot", shots)):

        def positive(texts, desc, turns=turns):
            probabilities = label_probabilities(
                model,
                tokenizer,
                texts,
                label_ids,
                turns,
                args.prompted_llm_review_tokens,
                args.prompted_llm_batch_size,
                desc,
            )
            return probabilities[:, 1]

        start = time.perf_counter()
        held_out_p = positive(held_out, f"{name}: held-out reviews")
        speed = len(held_out) / (time.perf_counter() - start)
        calibration_p = positive(calibration, f"{name}: calibration reviews")
        threshold = fit_threshold(calibration, calibration_p, calibration_labels, held_out)
        calibrated = f"{name}_calibrated"
        predictions[name] = (held_out_p > 0.5).astype(int)
        predictions[calibrated] = (held_out_p > threshold).astype(int)
        facts[f"{calibrated}_threshold"] = threshold
        # Not a result (it reads the held-out labels): the most any threshold could give, which says whether a
        # short calibration gain is the calibration's fault or the probabilities'.
        facts[f"{calibrated}_ceiling_accuracy"] = float(threshold_accuracies(held_out_p, data.eval["label"])[1].max())
        for variant in (name, calibrated):
            facts[f"{variant}_reviews_per_second"] = speed
        facts[f"{name}_labels_used"] = len(turns) // 2
        facts[f"{calibrated}_labels_used"] = len(turns) // 2 + len(calibration)
    return predictions, facts
