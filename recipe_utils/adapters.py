"""PEFT and quantization arguments, and the one place that turns them into peft / bitsandbytes configs.

Field names follow TRL's ModelConfig (lora_r, lora_target_modules, load_in_4bit, use_bnb_nested_quant, ...)
so flags carry over between these recipes and TRL's scripts; peft_method adds prompt tuning and IA3.
"""

import os
from dataclasses import dataclass, field

import torch
from torch import nn

from recipe_utils.errors import RecipeError
from recipe_utils.optim import uses_layerwise_rates

PEFT_METHODS = ("none", "lora", "prompt_tuning", "ia3")


@dataclass
class PeftArguments:
    """Parameter-efficient fine-tuning: which method, and its settings."""

    peft_method: str = field(
        default="none",
        metadata={
            "help": "none: train the model's own weights; lora; prompt_tuning (soft prompts); ia3.",
            "choices": list(PEFT_METHODS),
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Module names to adapt (query value), or all-linear. Unset: peft's default for the architecture."
        },
    )
    lora_bias: str = field(
        default="none", metadata={"help": "Which biases train with LoRA.", "choices": ["none", "all", "lora_only"]}
    )
    modules_to_save: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules trained in full and saved with the adapter. Unset for classification: the task head "
            "and BERT's pooler (without the pooler a reloaded adapter gives other logits)."
        },
    )
    num_virtual_tokens: int = field(default=20, metadata={"help": "Soft-prompt length for prompt_tuning."})
    merge_adapter: bool = field(
        default=False, metadata={"help": "Also write the base model with the adapter merged in, to output_dir/merged."}
    )

    def __post_init__(self):
        if self.lora_r < 1:
            raise ValueError(f"lora_r must be at least 1, got {self.lora_r}")
        if self.num_virtual_tokens < 1:
            raise ValueError(f"num_virtual_tokens must be at least 1, got {self.num_virtual_tokens}")


@dataclass
class QuantizationArguments:
    """Loading the base model quantized with bitsandbytes (QLoRA)."""

    load_in_4bit: bool = field(default=False, metadata={"help": "Load the base model's linear layers in 4 bits."})
    bnb_4bit_quant_type: str = field(default="nf4", metadata={"help": "4-bit data type.", "choices": ["nf4", "fp4"]})
    use_bnb_nested_quant: bool = field(
        default=True, metadata={"help": "Double quantization: quantize the quantization constants too."}
    )
    bnb_4bit_compute_dtype: str = field(
        default="float32",
        metadata={"help": "dtype the 4-bit layers compute in.", "choices": ["float32", "bfloat16", "float16"]},
    )
    bnb_4bit_quant_storage: str = field(
        default="uint8",
        metadata={
            "help": "dtype the packed 4-bit weights are stored in; FSDP needs the compute dtype (bfloat16).",
            "choices": ["uint8", "bfloat16", "float16", "float32"],
        },
    )
    quantization_skip_modules: list[str] = field(
        default_factory=lambda: ["classifier", "pooler.dense", "lm_head", "score"],
        metadata={"help": "Modules kept in full precision (the task head must stay trainable)."},
    )


def check_peft_options(peft_args: PeftArguments, quant_args: QuantizationArguments, freeze_args=None) -> None:
    """Refuse combinations that cannot work, before any data or model is loaded."""
    method = peft_args.peft_method
    if quant_args.load_in_4bit and method == "none":
        raise RecipeError("a 4-bit base model cannot train its own weights: set peft_method (lora for QLoRA)")
    if peft_args.merge_adapter and method not in ("lora", "ia3"):
        raise RecipeError(f"merge_adapter works for lora and ia3 adapters, not peft_method={method}")
    if freeze_args is not None and method != "none":
        if freeze_args.freeze_strategy != "full":
            raise RecipeError("freeze_strategy applies to full fine-tuning; with an adapter leave it at full")
        if uses_layerwise_rates(freeze_args.layer_lr_decay, freeze_args.head_lr_scale):
            raise RecipeError("layer_lr_decay and head_lr_scale apply to full fine-tuning, not to adapters")


def describe_adapter(peft_args, quant_args) -> str:
    """One line naming the adapter method and its settings (empty for full fine-tuning)."""
    method = peft_args.peft_method
    if method == "none":
        return ""
    if method == "lora":
        targets = " ".join(peft_args.lora_target_modules or ["peft default"])
        text = f"LoRA r={peft_args.lora_r}, alpha={peft_args.lora_alpha}, dropout={peft_args.lora_dropout} on {targets}"
    elif method == "ia3":
        text = "IA3 (learned scaling of keys, values and feed-forward outputs)"
    else:
        text = f"prompt tuning with {peft_args.num_virtual_tokens} virtual tokens"
    if quant_args.load_in_4bit:
        nested = ", double quantization" if quant_args.use_bnb_nested_quant else ""
        text += f", base loaded in 4-bit {quant_args.bnb_4bit_quant_type}{nested} (QLoRA)"
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


def peft_config(args: PeftArguments, task_type: str, model: nn.Module):
    """The peft config for `args`; None when peft_method is none."""
    from peft import IA3Config, LoraConfig, PromptTuningConfig

    if args.peft_method == "none":
        return None
    classification = task_type == "SEQ_CLS"
    modules_to_save = args.modules_to_save
    if modules_to_save is None and classification:
        modules_to_save = task_head_modules(model)
    if args.peft_method == "lora":
        targets = args.lora_target_modules
        target = "all-linear" if targets == ["all-linear"] else targets
        config = LoraConfig(
            task_type=task_type,
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            target_modules=target,
            bias=args.lora_bias,
            modules_to_save=modules_to_save,
        )
    elif args.peft_method == "ia3":
        # IA3 scales keys, values and feed-forward outputs: peft's per-architecture default targets.
        config = IA3Config(task_type=task_type, modules_to_save=modules_to_save)
    else:
        config = PromptTuningConfig(task_type=task_type, num_virtual_tokens=args.num_virtual_tokens)
        if classification:
            config.modules_to_save = modules_to_save
    return config


def wrap_with_peft(model: nn.Module, args: PeftArguments, task_type: str, quantized: bool):
    """Wrap `model` in a PeftModel; a quantized base is first prepared for k-bit training."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    config = peft_config(args, task_type, model)
    if config is None:
        return model
    if args.peft_method == "lora" and args.lora_target_modules and args.lora_target_modules != ["all-linear"]:
        names = [name for name, _ in model.named_modules()]
        unmatched = [t for t in args.lora_target_modules if not any(n == t or n.endswith("." + t) for n in names)]
        if unmatched:
            raise RecipeError(f"lora_target_modules {unmatched} match no module of {type(model).__name__}")
    if quantized:
        keep_4bit_layers_trainable(model)
        # Casts norms to fp32 and enables input gradients so LoRA on frozen 4-bit layers gets a gradient.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        # Whatever else peft refuses (e.g. modules_to_save on an unsupported module type), in one line.
        raise RecipeError(f"cannot apply {args.peft_method}: {str(err).strip().splitlines()[0]}") from None


def write_merged_model(base: nn.Module, adapter_dir: str, tokenizer) -> str:
    """Merge the adapter saved in adapter_dir into `base` and write the plain model to adapter_dir/merged.

    Pass a base loaded in full precision, so a QLoRA adapter merges into real weights, not 4-bit ones.
    """
    from peft import PeftModel

    merged_dir = os.path.join(adapter_dir, "merged")
    PeftModel.from_pretrained(base, adapter_dir).merge_and_unload().save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    return merged_dir


def quantization_config(args: QuantizationArguments):
    from transformers import BitsAndBytesConfig

    if not args.load_in_4bit:
        return None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=args.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=args.use_bnb_nested_quant,
        bnb_4bit_compute_dtype=getattr(torch, args.bnb_4bit_compute_dtype),
        bnb_4bit_quant_storage=getattr(torch, args.bnb_4bit_quant_storage),
        llm_int8_skip_modules=args.quantization_skip_modules,
    )


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
