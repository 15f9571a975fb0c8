"""LoRA and bottleneck adapters written in plain PyTorch (seed 004: "LoRA with PyTorch", "Adapters with PyTorch").

Recipes use peft for LoRA by default (`use_peft`); `peft_method: lora_scratch` and `peft_method: bottleneck`
select these instead. They exist to show the mechanism in a few lines each, and tests/test_scratch_adapters.py
checks the LoRA against peft's on the same weights. For real work use peft: it has DoRA, rsLoRA, quantized
bases, many adapters on one model, and the Hub format that transformers, TRL and vLLM read. peft has no
bottleneck adapter; the `adapters` library (AdapterHub) does, as its "seq_bn" / Houlsby configs.
"""

import json
import math
import os
import re

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from recipe_utils.core.errors import RecipeError

SCRATCH_METHODS = ("lora_scratch", "bottleneck")
CONFIG_NAME, WEIGHTS_NAME = "scratch_adapter.json", "scratch_adapter.safetensors"


# ---------------------------------------------------------------- LoRA (Hu et al. 2021)
class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update: y = W x + b + (alpha / r) * B A x.

    A (r x in) starts as nn.Linear initialises a weight (Kaiming-uniform, a=sqrt(5)), as peft does; B (out x r)
    starts at zero, so the wrapped layer first computes exactly what the original did. Only A and B train:
    r * (in + out) numbers instead of in * out. Also wraps GPT-2's Conv1D, the same map with W stored as in x out.
    """

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        # nn.Linear stores W as out x in; Conv1D as in x out.
        in_features, out_features = base.weight.shape if isinstance(base, Conv1D) else base.weight.shape[::-1]
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(r, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:  # the update already sits inside W
            return out
        return out + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) * B A, laid out as the base layer stores its weight."""
        delta = self.scaling * (self.lora_B @ self.lora_A)
        return delta.T if isinstance(self.base, Conv1D) else delta

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into W: same outputs, no extra matmuls at inference."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of W, to train on or to swap adapters."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False


# ---------------------------------------------------------------- bottleneck adapter (Houlsby et al. 2019)
class BottleneckAdapter(nn.Module):
    """h + up(gelu(down(h))): squeeze the hidden size to `size`, a nonlinearity, expand back, add the input.

    `up` starts at zero, so at first the adapter is the identity and the model is exactly the pretrained one.
    """

    def __init__(self, hidden_size: int, size: int):
        super().__init__()
        self.down = nn.Linear(hidden_size, size)
        self.up = nn.Linear(size, hidden_size)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(nn.functional.gelu(self.down(hidden)))


class WithAdapterAfter(nn.Module):
    """A sublayer's output projection followed by an adapter: Houlsby's place, before the residual add and norm."""

    def __init__(self, projection: nn.Module, adapter: BottleneckAdapter):
        super().__init__()
        self.projection, self.adapter = projection.requires_grad_(False), adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.projection(x))


# The output projection of each layer's attention and of its feed-forward block, per architecture.
SUBLAYER_OUTPUTS = {
    "bert": (r"attention\.output\.dense", r"layer\.\d+\.output\.dense"),
    "roberta": (r"attention\.output\.dense", r"layer\.\d+\.output\.dense"),
    "distilbert": (r"attention\.out_lin", r"ffn\.lin2"),
    "gpt2": (r"attn\.c_proj", r"mlp\.c_proj"),
}
# peft's default LoRA targets for the same architectures (query and value projections).
DEFAULT_LORA_TARGETS = {"bert": ["query", "value"], "roberta": ["query", "value"], "distilbert": ["q_lin", "v_lin"]}
DEFAULT_LORA_TARGETS["gpt2"] = ["c_attn"]


# ---------------------------------------------------------------- injecting, saving, loading
def inject(model: nn.Module, settings: dict, trainable_heads: list[str]) -> nn.Module:
    """Freeze `model`, put the adapters of `settings` in place (in place), and unfreeze the task head modules.

    settings: {"method": "lora_scratch", "r", "alpha", "dropout", "targets"} or {"method": "bottleneck", "size"}.
    """
    model_type = model.config.model_type
    if model_type not in SUBLAYER_OUTPUTS:
        raise RecipeError(f"hand-written adapters know {', '.join(SUBLAYER_OUTPUTS)} models, not {model_type}")
    model.requires_grad_(False)
    if settings["method"] == "lora_scratch":
        targets = settings.get("targets") or DEFAULT_LORA_TARGETS[model_type]
        chosen = [name for name, _ in model.named_modules() if name.split(".")[-1] in targets]

        def make(layer):
            return LoRALinear(layer, settings["r"], settings["alpha"], settings["dropout"])

    else:
        places = "|".join(SUBLAYER_OUTPUTS[model_type])
        chosen = [name for name, _ in model.named_modules() if re.search(rf"(^|\.)({places})$", name)]

        def make(layer):
            return WithAdapterAfter(layer, BottleneckAdapter(model.config.hidden_size, settings["size"]))

    if not chosen:
        raise RecipeError(f"{settings['method']}: no module of {type(model).__name__} to put an adapter on")
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, make(getattr(parent, child)))
    for name, module in model.named_modules():  # head names match by suffix, as in peft's modules_to_save
        if any(name == head or name.endswith("." + head) for head in trainable_heads):
            module.requires_grad_(True)
    model.scratch_adapter = {**settings, "heads": list(trainable_heads), "layers": chosen}

    # Saving writes the adapter alone, wherever it is asked for (the Trainer's save_model calls save_pretrained).
    def save_pretrained(folder, is_main_process=True, **_):
        if is_main_process:
            save_adapter(model, folder)

    model.save_pretrained = save_pretrained
    return model


def save_adapter(model: nn.Module, folder: str) -> None:
    """Write only what trained (the adapters and the task head) as safetensors, and how to rebuild the model."""
    os.makedirs(folder, exist_ok=True)
    trained = {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    save_file(trained, os.path.join(folder, WEIGHTS_NAME))
    # The base is named by the run's card and run_config.json, not here: a local path would not travel.
    with open(os.path.join(folder, CONFIG_NAME), "w", encoding="utf-8") as handle:
        json.dump(model.scratch_adapter, handle, indent=2)


def load_adapter(base: nn.Module, folder: str) -> nn.Module:
    """The base model with the saved adapters injected and their trained weights (and the head's) loaded."""
    with open(os.path.join(folder, CONFIG_NAME), encoding="utf-8") as handle:
        config = json.load(handle)
    model = inject(base, config, config["heads"])
    weights = load_file(os.path.join(folder, WEIGHTS_NAME))
    unknown = set(weights) - set(model.state_dict())
    if unknown:
        raise RecipeError(f"{folder}: adapter weights {sorted(unknown)[:3]} fit no module of the base model")
    model.load_state_dict(weights, strict=False)  # the rest is the frozen base, as loaded
    return model.eval()


def is_scratch_adapter(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, CONFIG_NAME))
