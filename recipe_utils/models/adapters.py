"""PEFT and quantization: the settings TRL has no name for, and the one place that turns them into peft /
bitsandbytes configs.

LoRA and bitsandbytes settings live in ModelArguments under TRL's names (use_peft, lora_r, lora_target_modules,
lora_modules_to_save, use_dora, use_rslora, load_in_4bit, load_in_8bit, ...), built with TRL's own
get_peft_config and get_quantization_config. What TRL lacks is here: prompt tuning and IA3 (peft_method),
the classification head kept with the adapter, merging, and the check for layers too narrow for 4 bits.
"""

import dataclasses
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from recipe_utils.core.errors import RecipeError
from recipe_utils.models.parameter_groups import uses_layerwise_rates
from recipe_utils.models.scratch_adapters import SCRATCH_METHODS, inject, is_scratch_adapter, load_adapter

PEFT_METHODS = ("none", "lora", "prompt_tuning", "ia3", *SCRATCH_METHODS)


@dataclass
class PeftArguments:
    """Parameter-efficient methods TRL has no flag for (use_peft means LoRA), and what to save."""

    peft_method: str = field(
        default="none",
        metadata={
            "help": "none: train the model's own weights (or LoRA when use_peft is set); lora; "
            "prompt_tuning (soft prompts); ia3; lora_scratch (the hand-written LoRA, lora_* settings); "
            "bottleneck (hand-written Houlsby adapters).",
            "choices": list(PEFT_METHODS),
        },
    )
    num_virtual_tokens: int = field(default=20, metadata={"help": "Soft-prompt length for prompt_tuning."})
    bottleneck_size: int = field(
        default=32, metadata={"help": "Width of each bottleneck adapter (peft_method bottleneck)."}
    )
    merge_adapter: bool = field(
        default=False, metadata={"help": "Also write the base model with the adapter merged in, to output_dir/merged."}
    )

    def __post_init__(self):
        if self.num_virtual_tokens < 1:
            raise ValueError(f"num_virtual_tokens must be at least 1, got {self.num_virtual_tokens}")
        if self.bottleneck_size < 1:
            raise ValueError(f"bottleneck_size must be at least 1, got {self.bottleneck_size}")


@dataclass
class QuantizationArguments:
    """What a quantized classifier keeps in full precision (TRL's quantization names are in ModelArguments)."""

    quantization_skip_modules: list[str] = field(
        default_factory=lambda: ["classifier", "pooler.dense", "score"],
        metadata={"help": "Modules of a classifier kept in full precision (the task head must stay trainable)."},
    )


def settle_peft_method(model_args, peft_args: PeftArguments) -> None:
    """TRL's use_peft (LoRA) and this project's peft_method name one choice: use_peft with no method is LoRA,
    and any method sets use_peft."""
    if peft_args.peft_method == "none" and model_args.use_peft:
        peft_args.peft_method = "lora"
    model_args.use_peft = peft_args.peft_method != "none"


def check_peft_options(model_args, peft_args: PeftArguments, freeze_args=None) -> None:
    """Settle use_peft / peft_method, then refuse combinations that cannot work, before any data or model
    is loaded."""
    settle_peft_method(model_args, peft_args)
    method = peft_args.peft_method
    quantized = model_args.load_in_4bit or model_args.load_in_8bit
    if quantized and method == "none":
        raise RecipeError("a quantized base model cannot train its own weights: set use_peft (LoRA, as in QLoRA)")
    if quantized and method in SCRATCH_METHODS:
        raise RecipeError(f"peft_method {method} (hand-written) trains on a full-precision base: use lora for QLoRA")
    if peft_args.merge_adapter and method not in ("lora", "ia3"):
        raise RecipeError(f"merge_adapter works for lora and ia3 adapters, not peft_method={method}")
    if model_args.lora_r < 1:
        raise RecipeError(f"lora_r must be at least 1, got {model_args.lora_r}")
    if freeze_args is not None and method != "none":
        if freeze_args.freeze_strategy != "full":
            raise RecipeError("freeze_strategy applies to full fine-tuning; with an adapter leave it at full")
        if uses_layerwise_rates(freeze_args.layer_lr_decay, freeze_args.head_lr_scale):
            raise RecipeError("layer_lr_decay and head_lr_scale apply to full fine-tuning, not to adapters")


def describe_adapter(model_args, peft_args) -> str:
    """One line naming the adapter method and its settings (empty for full fine-tuning)."""
    method = peft_args.peft_method
    if method == "none":
        return ""
    if method == "lora":
        targets = model_args.lora_target_modules or ["peft default"]
        targets = " ".join([targets] if isinstance(targets, str) else targets)
        variant = "DoRA" if model_args.use_dora else "rsLoRA" if model_args.use_rslora else "LoRA"
        text = (
            f"{variant} r={model_args.lora_r}, alpha={model_args.lora_alpha}, dropout={model_args.lora_dropout} "
            f"on {targets}"
        )
    elif method == "lora_scratch":
        targets = model_args.lora_target_modules or ["the architecture's query and value"]
        targets = " ".join([targets] if isinstance(targets, str) else targets)
        text = (
            f"hand-written LoRA (recipe_utils/models/scratch_adapters.py) r={model_args.lora_r}, "
            f"alpha={model_args.lora_alpha}, dropout={model_args.lora_dropout} on {targets}"
        )
    elif method == "bottleneck":
        text = (
            f"hand-written bottleneck adapters (Houlsby et al. 2019, recipe_utils/models/scratch_adapters.py) of width "
            f"{peft_args.bottleneck_size} after each layer's attention and feed-forward outputs"
        )
    elif method == "ia3":
        text = "IA3 (learned scaling of keys, values and feed-forward outputs)"
    else:
        text = f"prompt tuning with {peft_args.num_virtual_tokens} virtual tokens"
    if model_args.load_in_4bit:
        nested = ", double quantization" if model_args.use_bnb_nested_quant else ""
        text += f", base loaded in 4-bit {model_args.bnb_4bit_quant_type}{nested} (QLoRA)"
    elif model_args.load_in_8bit:
        text += ", base loaded in 8-bit (bitsandbytes LLM.int8)"
    return text


def task_head_modules(model: nn.Module) -> list[str]:
    """Top-level modules outside the base model (classifier, score), plus BERT's pooler."""
    prefix = getattr(model, "base_model_prefix", "")
    # Parameter-free children (dropout) are left out: peft matches names by suffix, and "dropout"
    # would also match every lora_dropout container.
    names = [
        name for name, child in model.named_children() if name != prefix and next(child.parameters(), None) is not None
    ]
    base = getattr(model, prefix, None)
    if base is not None and getattr(base, "pooler", None) is not None:
        names.append("pooler")
    return names


def peft_config(model_args, peft_args: PeftArguments, task_type: str, model: nn.Module):
    """The peft config of a run; None for full fine-tuning. LoRA is TRL's get_peft_config, for the task at
    hand, with a classifier's head and pooler saved with the adapter unless lora_modules_to_save says otherwise."""
    from peft import IA3Config, PromptTuningConfig
    from trl import get_peft_config

    settle_peft_method(model_args, peft_args)
    if peft_args.peft_method == "none":
        return None
    modules_to_save = model_args.lora_modules_to_save
    if modules_to_save is None and task_type == "SEQ_CLS":
        modules_to_save = task_head_modules(model)
    if peft_args.peft_method == "lora":
        config = get_peft_config(
            dataclasses.replace(model_args, lora_task_type=task_type, lora_modules_to_save=modules_to_save)
        )
        if isinstance(config.target_modules, str) and config.target_modules != "all-linear":
            # ModelConfig turns a one-name list into that name, which peft would read as a regular expression
            # matched against whole module paths ("c_attn" matches no "transformer.h.0.attn.c_attn").
            config.target_modules = {config.target_modules}
    elif peft_args.peft_method == "ia3":
        # IA3 scales keys, values and feed-forward outputs: peft's per-architecture default targets.
        config = IA3Config(task_type=task_type, modules_to_save=modules_to_save)
    else:
        config = PromptTuningConfig(task_type=task_type, num_virtual_tokens=peft_args.num_virtual_tokens)
        if task_type == "SEQ_CLS":
            config.modules_to_save = modules_to_save
    return config


def wrap_with_peft(model: nn.Module, model_args, peft_args: PeftArguments, task_type: str):
    """Wrap `model` in a PeftModel; a quantized base is first prepared for k-bit training."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    settle_peft_method(model_args, peft_args)
    targets = model_args.lora_target_modules
    targets = [targets] if isinstance(targets, str) else targets
    if peft_args.peft_method in ("lora", "lora_scratch") and targets and targets != ["all-linear"]:
        names = [name for name, _ in model.named_modules()]
        unmatched = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
        if unmatched:
            raise RecipeError(f"lora_target_modules {unmatched} match no module of {type(model).__name__}")
    if peft_args.peft_method in SCRATCH_METHODS:
        return inject_scratch_adapter(model, model_args, peft_args, task_type)
    config = peft_config(model_args, peft_args, task_type, model)
    if config is None:
        return model
    if model_args.load_in_4bit or model_args.load_in_8bit:
        keep_4bit_layers_trainable(model)
        # Casts norms to fp32 and enables input gradients so LoRA on frozen 4-bit layers gets a gradient.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    try:
        return leave_the_card_to_the_recipe(get_peft_model(model, config))
    except ValueError as err:
        # Whatever else peft refuses (e.g. modules_to_save on an unsupported module type), in one line.
        raise RecipeError(f"cannot apply {peft_args.peft_method}: {str(err).strip().splitlines()[0]}") from None


def inject_scratch_adapter(model: nn.Module, model_args, peft_args: PeftArguments, task_type: str) -> nn.Module:
    """The hand-written adapters of recipe_utils/models/scratch_adapters.py, with the same settings and the same
    trained task head as the peft methods (a classifier's head and pooler; a causal LM's tied head stays frozen)."""
    if model_args.lora_target_modules == ["all-linear"] or model_args.lora_target_modules == "all-linear":
        raise RecipeError("lora_scratch takes module names, not all-linear")
    if peft_args.peft_method == "lora_scratch":
        targets = model_args.lora_target_modules
        settings = {
            "method": "lora_scratch",
            "r": model_args.lora_r,
            "alpha": model_args.lora_alpha,
            "dropout": model_args.lora_dropout,
            "targets": [targets] if isinstance(targets, str) else targets,
        }
    else:
        settings = {"method": "bottleneck", "size": peft_args.bottleneck_size}
    heads = model_args.lora_modules_to_save
    if heads is None:
        heads = task_head_modules(model) if task_type == "SEQ_CLS" else []
    return inject(model, settings, heads)


def leave_the_card_to_the_recipe(model):
    """A PeftModel writes a placeholder README.md whenever it is saved; the recipe writes the real card once,
    after the save, so the placeholder would only be a second write of the same file."""
    if hasattr(model, "create_or_update_model_card"):
        model.create_or_update_model_card = lambda output_dir: None
    return model


def load_saved_model(auto_class, folder: str, load_base):
    """The model a run saved in `folder`, loaded the way its card tells a user to: a full model from the folder
    in the dtype it was saved in, an adapter on its base (`load_base()`, 4-bit for QLoRA). A recipe scores this,
    not the model in memory that trained under autocast, so its figures are those of what it published."""
    if is_scratch_adapter(folder):
        return load_adapter(load_base(), folder)
    if not os.path.isfile(os.path.join(folder, "adapter_config.json")):
        return auto_class.from_pretrained(folder, use_safetensors=True)
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base(), folder)


def write_merged_model(base: nn.Module, adapter_dir: str, tokenizer) -> str:
    """Merge the adapter saved in adapter_dir into `base` and write the plain model to adapter_dir/merged.

    Pass a base loaded in full precision, so a QLoRA adapter merges into real weights, not 4-bit ones.
    """
    from peft import PeftModel

    merged_dir = os.path.join(adapter_dir, "merged")
    PeftModel.from_pretrained(base, adapter_dir).merge_and_unload().save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    return merged_dir


def quantization_config(model_args, quant_args: QuantizationArguments | None = None, task_type: str = "CAUSAL_LM"):
    """TRL's get_quantization_config (4-bit compute and storage in model_args.dtype, as TRL does); a classifier
    also keeps its head out of quantization so it stays trainable and is saved with the adapter."""
    from trl import get_quantization_config

    config = get_quantization_config(model_args)
    if config is not None and task_type == "SEQ_CLS":
        config.llm_int8_skip_modules = list((quant_args or QuantizationArguments()).quantization_skip_modules)
    return config


def check_quantizable(model: nn.Module, skip_modules: list[str], min_features: int = 64) -> None:
    """bitsandbytes' 4-bit CPU kernels fail on layers narrower than 64: name them before training starts."""
    narrow = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and not any(name == skip or name.endswith("." + skip) or name.startswith(skip + ".") for skip in skip_modules)
        and min(module.in_features, module.out_features) < min_features
    ]
    if narrow:
        raise RecipeError(
            f"these linear layers are narrower than {min_features} and cannot be quantized to 4 bits: "
            f"{', '.join(narrow[:8])}{' ...' if len(narrow) > 8 else ''}; add them to quantization_skip_modules"
        )


def keep_4bit_layers_trainable(model: nn.Module) -> None:
    """Stop bitsandbytes repacking 4-bit weights for CPU inference.

    On CPUs with AVX512-BF16, a Linear4bit called in eval mode repacks its weight into an inference-only
    layout and keeps it; training after an evaluation then fails in that layout's in-place bias add
    ("a view of a leaf Variable that requires grad is being used in an in-place operation").
    Recipes evaluate before and after training, so they keep the trainable layout throughout.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def quantized_weight_report(model: nn.Module) -> dict:
    """Bytes the 4-bit layers hold (packed weights + quantization state) against their fp32 size."""
    import bitsandbytes as bnb

    layers = [module for module in model.modules() if isinstance(module, bnb.nn.Linear4bit)]
    quantized_bytes = fp32_bytes = 0
    for layer in layers:
        weight = layer.weight
        quantized_bytes += weight.numel() * weight.element_size()
        state = weight.quant_state
        for tensor in _quant_state_tensors(state):
            quantized_bytes += tensor.numel() * tensor.element_size()
        fp32_bytes += 4 * int(torch.Size(state.shape).numel())
    return {
        "quantized_layers": len(layers),
        "quantized_weight_bytes": quantized_bytes,
        "quantized_fp32_bytes": fp32_bytes,
        "quantized_share_of_fp32": quantized_bytes / fp32_bytes if fp32_bytes else None,
    }


def _quant_state_tensors(state) -> list:
    tensors = [state.absmax]
    if state.nested and state.state2 is not None:
        tensors += [state.state2.absmax, state.state2.code]
    if state.code is not None:
        tensors.append(state.code)
    return [tensor for tensor in tensors if isinstance(tensor, torch.Tensor)]


def folder_size_bytes(folder: str) -> int:
    """Bytes of weight files in a saved folder (safetensors only; merged/ and checkpoints excluded)."""
    return sum(
        os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder) if name.endswith(".safetensors")
    )
