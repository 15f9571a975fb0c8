"""The sentiment classifier a run trains: built frozen by strategy or wrapped in an adapter (on a 4-bit base for
QLoRA), and loaded back from its saved folder the way a user loads it."""

from recipe_utils.models.adapters import (
    check_quantizable,
    load_saved_model,
    quantization_config,
    wrap_with_peft,
)
from recipe_utils.models.loading import apply_freezing, classifier_skeleton, load_classifier, parameter_counts


def build_classifier(model_args, freeze_args, peft_args, quant_args, label_names) -> tuple:
    """The model a run trains and its parameter counts: the classifier frozen by strategy, or wrapped in an
    adapter (on a 4-bit base for QLoRA). Shares are of the full model's parameters, counted before any
    quantization packs them or any adapter wraps them."""
    skeleton = classifier_skeleton(model_args, label_names)
    full_count = sum(parameter.numel() for parameter in skeleton.parameters())
    quantization = quantization_config(model_args, quant_args, "SEQ_CLS")
    if model_args.load_in_4bit:
        check_quantizable(skeleton, quant_args.quantization_skip_modules)
    model = load_classifier(model_args, label_names, quantization_config=quantization)
    if peft_args.peft_method == "none":
        return model, apply_freezing(model, freeze_args.freeze_strategy, freeze_args.unfreeze_top_k)
    model = wrap_with_peft(model, model_args, peft_args, "SEQ_CLS")
    return model, parameter_counts(model, total=full_count)


def load_saved_classifier(folder, model_args, quant_args, label_names):
    """The classifier a run saved, as a user loads it (an adapter on its base, 4-bit for QLoRA)."""
    from transformers import AutoModelForSequenceClassification

    quantization = quantization_config(model_args, quant_args, "SEQ_CLS")
    return load_saved_model(
        AutoModelForSequenceClassification,
        folder,
        lambda: load_classifier(model_args, label_names, quantization_config=quantization),
    )
