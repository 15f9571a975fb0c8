"""PEFT and 4-bit quantization on the real MiniLM: what trains, what is saved, what reloads, what is 4-bit."""

import bitsandbytes as bnb
import pytest
import torch
from peft import AutoPeftModelForSequenceClassification, PeftModel
from torch import nn

from recipe_utils.core.args import FreezeArguments, ModelArguments
from recipe_utils.core.errors import RecipeError
from recipe_utils.models.adapters import (
    PeftArguments,
    QuantizationArguments,
    check_peft_options,
    check_quantizable,
    folder_size_bytes,
    quantization_config,
    quantized_weight_report,
    wrap_with_peft,
)
from recipe_utils.models.loading import classifier_skeleton, load_classifier, load_tokenizer

LABELS = ["negative", "positive"]
MODEL = ModelArguments()
REVIEWS = [
    "A wonderful, moving film with a brilliant cast. I loved every minute of it.",
    "Dreadful. The plot made no sense and the acting was wooden throughout.",
    "One of the best movies of the year, funny and smart.",
    "A boring waste of two hours; I nearly walked out.",
] * 4
TARGETS = torch.tensor([1, 0, 1, 0] * 4)


@pytest.fixture(scope="module")
def batch():
    tokenizer = load_tokenizer(MODEL)
    return tokenizer(REVIEWS, padding=True, return_tensors="pt")


def build(method: str, quantized: bool = False, **lora_fields):
    model_args = ModelArguments(load_in_4bit=quantized, use_bnb_nested_quant=True, **lora_fields)
    quantization = quantization_config(model_args, QuantizationArguments(), "SEQ_CLS")
    torch.manual_seed(0)
    model = load_classifier(model_args, LABELS, quantization_config=quantization)
    return wrap_with_peft(model, model_args, PeftArguments(peft_method=method), "SEQ_CLS")


def train_steps(model, batch, steps: int, learning_rate: float) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch, labels=TARGETS).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def logits(model, batch):
    model.eval()
    return model(**batch).logits


@pytest.mark.parametrize(
    "method,quantized,learning_rate",
    [("lora", False, 2e-3), ("lora", True, 2e-3), ("prompt_tuning", False, 3e-2), ("ia3", False, 1e-2)],
)
def test_every_method_learns_and_changes_only_its_own_parameters(batch, method, quantized, learning_rate):
    model = build(method, quantized, lora_target_modules=["query", "key", "value"])
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = train_steps(model, batch, 12, learning_rate)
    assert losses[-1] < losses[0] - 0.1, losses
    changed = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert changed and changed <= trainable
    # Adapter weights and the copies of the head train; the base model's own weights never do.
    assert all(("modules_to_save" in n) or any(k in n for k in ("lora_", "ia3_", "prompt_encoder")) for n in trainable)
    share = sum(before[n].numel() for n in trainable) / sum(
        p.numel() for p in classifier_skeleton(MODEL, LABELS).parameters()
    )
    assert share < 0.02, share


def test_adapter_save_reload_and_merge_reproduce_the_trained_logits(batch, tmp_path):
    model = build("lora", lora_target_modules=["query", "key", "value"])
    train_steps(model, batch, 5, 2e-3)
    trained = logits(model, batch)
    model.save_pretrained(tmp_path)

    reloaded = AutoPeftModelForSequenceClassification.from_pretrained(str(tmp_path))
    torch.testing.assert_close(logits(reloaded, batch), trained, atol=1e-5, rtol=0)
    on_base = PeftModel.from_pretrained(load_classifier(MODEL, LABELS), str(tmp_path))
    torch.testing.assert_close(logits(on_base, batch), trained, atol=1e-5, rtol=0)
    merged = on_base.merge_and_unload()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged, batch), trained, atol=1e-5, rtol=0)
    # The adapter (with head and pooler) is a small fraction of the full model on disk.
    merged.save_pretrained(tmp_path / "merged")
    assert folder_size_bytes(str(tmp_path)) < 0.05 * folder_size_bytes(str(tmp_path / "merged"))


def test_qlora_linear_layers_are_really_4_bit_and_the_head_is_not():
    four_bit = ModelArguments(load_in_4bit=True)
    model = load_classifier(
        four_bit, LABELS, quantization_config=quantization_config(four_bit, QuantizationArguments(), "SEQ_CLS")
    )
    quantized = {name for name, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert len(quantized) == 36  # 6 layers x (query, key, value, attention output, intermediate, output)
    assert all(model.get_submodule(name).weight.dtype == torch.uint8 for name in quantized)
    assert type(model.classifier) is nn.Linear and type(model.bert.pooler.dense) is nn.Linear
    report = quantized_weight_report(model)
    assert report["quantized_layers"] == 36 and report["quantized_share_of_fp32"] <= 0.15


def test_layers_too_narrow_for_4_bit_are_named_before_loading():
    from transformers import BertConfig, BertForSequenceClassification

    with torch.device("meta"):
        tiny = BertForSequenceClassification(BertConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64))
    with pytest.raises(RecipeError, match=r"narrower than 64.*bert\.encoder\.layer\.0\.attention\.self\.query"):
        check_quantizable(tiny, ["classifier", "pooler.dense"])


@pytest.mark.parametrize(
    "peft_fields,model_fields,freeze_fields,message",
    [
        ({}, {"load_in_4bit": True}, {}, "quantized base model cannot train its own weights"),
        ({}, {"load_in_8bit": True}, {}, "quantized base model cannot train its own weights"),
        ({"peft_method": "prompt_tuning", "merge_adapter": True}, {}, {}, "merge_adapter works for lora and ia3"),
        ({}, {"use_peft": True}, {"freeze_strategy": "head"}, "freeze_strategy applies to full fine-tuning"),
        ({"peft_method": "lora"}, {}, {"layer_lr_decay": 0.9}, "apply to full fine-tuning, not to adapters"),
    ],
)
def test_impossible_combinations_are_refused(peft_fields, model_fields, freeze_fields, message):
    with pytest.raises(RecipeError, match=message):
        check_peft_options(
            ModelArguments(**model_fields), PeftArguments(**peft_fields), FreezeArguments(**freeze_fields)
        )


@pytest.mark.parametrize(
    "use_peft,method,expected",
    [(True, "none", "lora"), (False, "lora", "lora"), (True, "ia3", "ia3"), (False, "none", "none")],
)
def test_trls_use_peft_and_peft_method_settle_on_one_choice(use_peft, method, expected):
    model_args, peft_args = ModelArguments(use_peft=use_peft), PeftArguments(peft_method=method)
    check_peft_options(model_args, peft_args)
    assert peft_args.peft_method == expected and model_args.use_peft == (expected != "none")


def test_lora_target_modules_that_match_nothing_are_a_clear_error():
    with pytest.raises(RecipeError, match=r"lora_target_modules \[.qury.\] match no module"):
        build("lora", lora_target_modules=["qury"])
