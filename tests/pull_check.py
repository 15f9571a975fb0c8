"""Pull a published run back from the Hub HF_ENDPOINT points at, and compare it with the local run folder.

Run as a subprocess (HF_ENDPOINT is read when huggingface_hub is imported). Prints one JSON object:
which files differ, the largest logit difference between the pulled and the local model, the
pulled card's eval results and, for classifiers, held-out accuracy through the pulled card's usage code and
through recipes/predict.py on the repo id.
"""

import argparse
import hashlib
import json
import os
import sys
from types import SimpleNamespace

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TEXTS = ["A wonderful film with great acting and a moving story.", "Dull, slow and badly written; I left early."]
# Files the push rewrites so they name the repo instead of local paths.
REWRITTEN = {"README.md", "adapter_config.json"}


def digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def load(kind: str, name: str, local: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if kind == "classifier":
        return AutoModelForSequenceClassification.from_pretrained(name)
    if kind == "causal_lm":
        return AutoModelForCausalLM.from_pretrained(name)
    from peft import PeftModel

    with open(os.path.join(local, "adapter_config.json")) as handle:
        base_path = json.load(handle)["base_model_name_or_path"]
    if kind == "adapter_classifier":
        base = AutoModelForSequenceClassification.from_pretrained(
            base_path, num_labels=2, quantization_config=run_quantization(local)
        )
    else:
        base = AutoModelForCausalLM.from_pretrained(base_path)
    return PeftModel.from_pretrained(base, name)


def run_quantization(local: str):
    """The 4-bit config a QLoRA run loaded its base with (None for other runs), from its run_config.json."""
    from recipe_utils.core.args import ModelArguments
    from recipe_utils.models.adapters import QuantizationArguments, quantization_config

    with open(os.path.join(local, "run_config.json")) as handle:
        config = json.load(handle)

    def fields(cls):
        return {name: config[name] for name in cls.__dataclass_fields__ if name in config}

    return quantization_config(
        ModelArguments(**fields(ModelArguments)), QuantizationArguments(**fields(QuantizationArguments)), "SEQ_CLS"
    )


def held_out_texts(run_config: dict):
    """The run's held-out reviews and their label names, rebuilt from its own run_config.json."""
    from recipe_utils.core.args import DataArguments
    from recipe_utils.data.reviews import prepare_classification_data

    fields = {name: run_config[name] for name in DataArguments.__dataclass_fields__}
    data = prepare_classification_data(SimpleNamespace(**fields), seed=run_config["seed"])
    return list(data.eval["text"]), [data.label_names[label] for label in data.eval["label"]]


def card_usage_accuracy(card_text: str, texts: list[str], truth: list[str], batch_size: int) -> float:
    """Run the usage code of a card as a user pastes it, then score the held-out reviews with its classify(),
    in the length-sorted batches the recipe scored them in (so padding is the same)."""
    code = card_text.split("```python", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(code, "card-usage", "exec"), namespace)
    lengths = [len(namespace["encode"](text)) for text in texts]
    order = sorted(range(len(texts)), key=lambda index: -lengths[index])
    predicted = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        for row, label in zip(rows, namespace["classify"]([texts[row] for row in rows]), strict=True):
            predicted[row] = label
    return sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)


def predict_accuracy(repo: str, texts: list[str], truth: list[str]) -> float:
    """Held-out accuracy of `recipes/predict.py --model <repo>` on the texts, run in this process (which already
    points at the test Hub) through the script's own command line."""
    import contextlib
    import io
    import runpy

    printed, sys.argv = io.StringIO(), [os.path.join(ROOT, "recipes", "predict.py"), "--model", repo, *texts]
    with contextlib.redirect_stdout(printed):
        runpy.run_path(sys.argv[0], run_name="__main__")
    labels = [line.split("\t")[0] for line in printed.getvalue().strip().splitlines()]
    return sum(p == t for p, t in zip(labels, truth, strict=True)) / len(truth)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("--local", required=True)
    parser.add_argument("--kind", required=True)
    args = parser.parse_args()

    from huggingface_hub import ModelCard, snapshot_download
    from transformers import AutoTokenizer

    pulled = snapshot_download(args.repo)
    differing = [
        name
        for name in sorted(os.listdir(pulled))
        if os.path.isfile(os.path.join(pulled, name))
        and name not in REWRITTEN
        and digest(os.path.join(pulled, name)) != digest(os.path.join(args.local, name))
    ]
    tokenizer = AutoTokenizer.from_pretrained(args.repo)
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        remote_logits = load(args.kind, args.repo, args.local).eval()(**batch).logits
        local_logits = load(args.kind, args.local, args.local).eval()(**batch).logits
    card = ModelCard.load(os.path.join(pulled, "README.md"))
    report = {
        "files": sorted(os.listdir(pulled)),
        "differing_files": differing,
        "max_logit_difference": float((remote_logits - local_logits).abs().max()),
        "card_eval_results": {r.metric_type: r.metric_value for r in card.data.eval_results or []},
        "card_text": card.text,
    }
    if os.path.isfile(os.path.join(pulled, "adapter_config.json")):
        with open(os.path.join(pulled, "adapter_config.json")) as handle:
            report["adapter_config_base"] = json.load(handle)["base_model_name_or_path"]
    if args.kind == "classifier":
        with open(os.path.join(pulled, "run_config.json")) as handle:
            run_config = json.load(handle)
        texts, truth = held_out_texts(run_config)
        batch = run_config["per_device_eval_batch_size"]
        report["pulled_accuracy"] = card_usage_accuracy(card.text, texts, truth, batch)
        report["predict_accuracy"] = predict_accuracy(args.repo, texts, truth)
        report["held_out_texts"], report["held_out_labels"] = texts, truth
    print(json.dumps(report))


if __name__ == "__main__":
    main()
