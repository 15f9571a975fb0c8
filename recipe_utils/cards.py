"""Model cards rendered from the Jinja templates in model_cards/ through huggingface_hub."""

import os
import platform

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "model_cards")
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "f1": "F1",
    "f1_macro": "Macro F1",
    "precision": "Precision",
    "recall": "Recall",
    "perplexity": "Perplexity",
}


def framework_versions() -> dict:
    import importlib.metadata as metadata

    names = ("transformers", "torch", "datasets", "tokenizers", "trl", "peft", "accelerate")
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def eval_results(
    results: dict,
    model_name: str,
    task_type: str,
    dataset_type: str,
    dataset_name: str,
    dataset_split: str,
    metrics=("accuracy", "f1", "f1_macro"),
) -> list[EvalResult]:
    """model-index entries for the final model's held-out metrics (eval_* keys of all_results.json)."""
    return [
        EvalResult(
            task_type=task_type,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=dataset_split,
            metric_type=metric,
            metric_name=METRIC_NAMES.get(metric, metric),
            metric_value=round(float(results[f"eval_{metric}"]), 4),
        )
        for metric in metrics
        if f"eval_{metric}" in results
    ]


def write_model_card(output_dir: str, template: str, card_data: ModelCardData, **context) -> ModelCard:
    """Render model_cards/<template> with `context` and save it as output_dir/README.md."""
    card = ModelCard.from_template(
        card_data,
        template_path=os.path.join(TEMPLATES, template),
        framework_versions=framework_versions(),
        **context,
    )
    card.save(os.path.join(output_dir, "README.md"))
    return card
