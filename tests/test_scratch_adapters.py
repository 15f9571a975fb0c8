"""The hand-written LoRA and bottleneck adapters (recipe_utils/models/scratch_adapters.py), checked against peft and
against the base model, on the real MiniLM and a small GPT-2."""

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

from recipe_utils.core.args import ModelArguments
from recipe_utils.models.adapters import PeftArguments, wrap_with_peft
from recipe_utils.models.loading import load_classifier
from recipe_utils.models.scratch_adapters import LoRALinear, load_adapter, save_adapter
from tests.test_adapters import LABELS, MODEL, TARGETS, batch, train_steps  # noqa: F401 (batch is a fixture)

LORA = {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "lora_target_modules": ["query", "value"]}


def classifier(method: str, **settings):
    model_args = ModelArguments(**{**LORA, **settings})
    torch.manual_seed(0)  # the same random head for every model built here
    model = load_classifier(model_args, LABELS)
    return wrap_with_peft(model, model_args, PeftArguments(peft_method=method, bottleneck_size=16), "SEQ_CLS")


def tiny_gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=64, n_positions=32, vocab_size=100)).eval()


def trainable(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def copy_peft_lora_into_scratch(peft_model, scratch_model) -> int:
    """Give both models the same non-zero A and B (B random, so the update is not zero); returns layers copied."""
    copied = 0
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            torch.manual_seed(copied)
            nn.init.normal_(module.lora_B["default"].weight, std=0.05)
            scratch = scratch_model.get_submodule(name.removeprefix("base_model.model."))
            with torch.no_grad():
                scratch.lora_A.copy_(module.lora_A["default"].weight)
                scratch.lora_B.copy_(module.lora_B["default"].weight)
            copied += 1
    return copied


def test_hand_written_lora_gives_peft_lora_logits_and_trains_as_many_parameters(batch):  # noqa: F811
    library, scratch = classifier("lora").eval(), classifier("lora_scratch").eval()
    assert copy_peft_lora_into_scratch(library, scratch) == 12  # query and value of 6 layers
    with torch.no_grad():
        expected, got = library(**batch).logits, scratch(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert trainable(scratch) == trainable(library)  # A and B of each layer, plus the head and pooler


def test_hand_written_lora_on_gpt2_conv1d_gives_peft_lora_logits():
    from peft import LoraConfig, get_peft_model

    ids = torch.randint(0, 100, (2, 16))
    library = get_peft_model(tiny_gpt2(), LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], lora_dropout=0.0))
    model_args = ModelArguments(**{**LORA, "lora_target_modules": ["c_attn"]})
    scratch = wrap_with_peft(tiny_gpt2(), model_args, PeftArguments(peft_method="lora_scratch"), "CAUSAL_LM")
    assert copy_peft_lora_into_scratch(library, scratch) == 2
    with torch.no_grad():
        torch.testing.assert_close(scratch(ids).logits, library(ids).logits, atol=1e-5, rtol=0)
    assert trainable(scratch) == trainable(library) == 2 * 4 * (64 + 192)


@pytest.mark.parametrize("layer", [nn.Linear(12, 6), Conv1D(6, 12)], ids=["linear", "conv1d"])
def test_merge_folds_the_update_into_the_weight_and_unmerge_takes_it_out(layer):
    original = layer.weight.detach().clone()
    lora = LoRALinear(layer, r=2, alpha=4)
    nn.init.normal_(lora.lora_B)
    x = torch.randn(3, 12)
    with torch.no_grad():
        unmerged = lora(x)
        assert not torch.allclose(unmerged, layer(x))  # the update is not zero
        lora.merge()
        torch.testing.assert_close(lora(x), unmerged, atol=1e-5, rtol=0)
        torch.testing.assert_close(layer(x), unmerged, atol=1e-5, rtol=0)  # the plain layer now holds it
        lora.unmerge()
    torch.testing.assert_close(layer.weight, original, atol=1e-6, rtol=0)


def test_after_training_only_adapter_and_head_parameters_changed(batch):  # noqa: F811
    model = classifier("lora_scratch")
    before = {name: value.clone() for name, value in model.state_dict().items()}
    losses = train_steps(model, batch, steps=4, learning_rate=5e-3)
    assert losses[-1] < losses[0]
    changed = {name for name, value in model.state_dict().items() if not torch.equal(value, before[name])}
    assert changed and all("lora_" in name or name.startswith(("classifier.", "bert.pooler.")) for name in changed)
    assert any("lora_A" in name for name in changed) and any(name.startswith("classifier.") for name in changed)


def test_bottleneck_adapter_starts_as_the_base_model(batch):  # noqa: F811
    base = classifier("none").eval()
    adapted = classifier("bottleneck").eval()
    with torch.no_grad():
        torch.testing.assert_close(adapted(**batch).logits, base(**batch).logits, atol=1e-5, rtol=0)
    # after each layer's attention output and feed-forward output: 2 adapters x 6 layers
    assert sum(type(module).__name__ == "BottleneckAdapter" for module in adapted.modules()) == 12
    ids = torch.randint(0, 100, (2, 16))
    gpt2 = wrap_with_peft(tiny_gpt2(), ModelArguments(), PeftArguments(peft_method="bottleneck"), "CAUSAL_LM")
    with torch.no_grad():
        torch.testing.assert_close(gpt2(ids).logits, tiny_gpt2()(ids).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["bottleneck", "lora_scratch"])
def test_saved_adapter_reloads_to_the_trained_logits_and_holds_only_what_trained(method, batch, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    model = classifier(method)
    train_steps(model, batch, steps=3, learning_rate=5e-3)
    with torch.no_grad():
        trained = model(**batch).logits
    model.save_pretrained(str(tmp_path))  # what the Trainer's save_model calls
    saved = load_file(str(tmp_path / "scratch_adapter.safetensors"))
    assert sum(tensor.numel() for tensor in saved.values()) == trainable(model)
    torch.manual_seed(1)  # a different random head: the saved one must replace it
    reloaded = load_adapter(load_classifier(ModelArguments(**LORA), LABELS), str(tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, trained, atol=1e-5, rtol=0)


def test_save_adapter_writes_config_and_weights_only(tmp_path):
    model = wrap_with_peft(tiny_gpt2(), ModelArguments(), PeftArguments(peft_method="bottleneck"), "CAUSAL_LM")
    save_adapter(model, str(tmp_path))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["scratch_adapter.json", "scratch_adapter.safetensors"]
