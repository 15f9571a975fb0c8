"""The instruct LLM as a prompted sentiment classifier: label words, the shared-prompt cache, calibration."""

from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch

from recipe_utils.core.errors import RecipeError
from recipe_utils.evaluation.prompted_llm import (
    PromptedLLMArguments,
    few_shot_turns,
    fit_threshold,
    label_probabilities,
    label_token_ids,
    prompt_around,
    prompted_predictions,
)

REVIEWS = [
    "A tender, funny film with a wonderful cast.",
    "Two hours I won't get back. Dull and badly acted.",
    "The plot wanders, but the ending is moving.",
    "Awful. The worst sequel of the decade.",
]


@pytest.fixture(scope="module")
def tiny(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_llama).eval(), AutoTokenizer.from_pretrained(tiny_llama)


def test_label_words_must_be_single_tokens(tiny):
    _, tokenizer = tiny
    assert len(set(label_token_ids(tokenizer, ["negative", "positive"]))) == 2
    with pytest.raises(RecipeError, match="'unwatchably' is .* tokens"):
        label_token_ids(tokenizer, ["unwatchably", "positive"])


def test_the_cached_prompt_start_gives_the_probabilities_of_the_whole_prompt(tiny):
    """Every review continues the shared start from its cache; the result must be what running each whole prompt
    alone gives (right padding, each answer read at its own last token)."""
    model, tokenizer = tiny
    ids = label_token_ids(tokenizer, ["negative", "positive"])
    shots = few_shot_turns(tokenizer, REVIEWS, [1, 0, 1, 0], ["negative", "positive"], 2, 32, seed=0)
    cached = label_probabilities(model, tokenizer, REVIEWS, ids, shots, review_tokens=12, batch_size=3)
    before, after = prompt_around(tokenizer, shots)
    alone = []
    for review in REVIEWS:
        review_ids = tokenizer.encode(review, add_special_tokens=False)[:12]
        full = tokenizer.encode(before, add_special_tokens=False) + review_ids
        full += tokenizer.encode(after, add_special_tokens=False)
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([full])).logits[0, -1, ids].float()
        alone.append(torch.softmax(logits, -1).numpy())
    assert cached.shape == (4, 2)
    np.testing.assert_allclose(cached, np.stack(alone), atol=1e-4)


def test_few_shot_turns_are_balanced_and_answered_with_the_label_word(tiny):
    _, tokenizer = tiny
    turns = few_shot_turns(tokenizer, REVIEWS, [1, 0, 1, 0], ["negative", "positive"], 4, 64, seed=0)
    answers = [turn["content"] for turn in turns if turn["role"] == "assistant"]
    assert sorted(answers) == ["negative", "negative", "positive", "positive"]


def test_calibration_refuses_a_held_out_review():
    with pytest.raises(RecipeError, match="1 calibration review"):
        fit_threshold(["a", "b", "held"], np.array([0.6, 0.9, 0.7]), [0, 1, 1], ["held", "other"])


def test_the_threshold_undoes_a_prior_that_leans_to_one_word():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    # Every review read as positive (p > 0.5), yet the positive ones a little more so.
    probability = 0.7 + 0.1 * labels + rng.normal(0, 0.03, 400)
    texts = [f"review {i}" for i in range(400)]
    threshold = fit_threshold(texts, probability, labels, held_out_texts=["another"])
    raw = np.mean((probability > 0.5) == labels)
    calibrated = np.mean((probability > threshold).astype(int) == labels)
    assert raw < 0.6 and calibrated > 0.9


def test_prompted_predictions_give_each_variant_on_every_held_out_review(tiny_llama):
    rows = {"text": REVIEWS * 5, "label": [1, 0, 1, 0] * 5}
    data = SimpleNamespace(
        train=datasets.Dataset.from_dict(rows),
        eval=datasets.Dataset.from_dict({"text": [r + " Indeed." for r in REVIEWS], "label": [1, 0, 1, 0]}),
        label_names=["negative", "positive"],
    )
    args = PromptedLLMArguments(
        prompted_llm=tiny_llama, prompted_llm_shots=2, prompted_llm_calibration_reviews=8, prompted_llm_review_tokens=16
    )
    predictions, facts = prompted_predictions(args, data, seed=0, device="cpu")
    variants = {"llm_zero_shot", "llm_zero_shot_calibrated", "llm_few_shot", "llm_few_shot_calibrated"}
    assert set(predictions) == variants
    assert all(len(predictions[name]) == 4 for name in predictions)
    assert all(facts[f"{name}_reviews_per_second"] > 0 for name in variants)
    # Labels each answer used: none, the shots, and the calibration reviews on top.
    assert [facts[f"{name}_labels_used"] for name in sorted(variants)] == [2, 10, 0, 8]
    assert 0.0 <= facts["llm_zero_shot_calibrated_threshold"] <= 1.0
    # The ceiling (the best threshold on the held-out reviews themselves) is at least every thresholded answer.
    for name in ("llm_zero_shot", "llm_few_shot"):
        for variant in (name, f"{name}_calibrated"):
            accuracy = np.mean(predictions[variant] == np.array([1, 0, 1, 0]))
            assert facts[f"{name}_calibrated_ceiling_accuracy"] >= accuracy
