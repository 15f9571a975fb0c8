"""lora.py and qlora.py as a user runs them: tiny runs on real reviews and the real MiniLM."""

import json
import os

import numpy as np
import pytest
from huggingface_hub import ModelCard

from recipe_utils.evaluation.predictions import read_predictions
from tests.conftest import assert_token_absent, push_and_pull, results_of, run_in_process
from tests.many_processes import TINY_CLASSIFIER, check_classifier_run, two_processes_over
from tests.test_sft_sentiment import TINY

LORA_CONFIG = "recipes/configs/lora/demo.yaml"
LORA_ARGS = [
    "--config",
    LORA_CONFIG,
    *TINY,
    "--max_train_samples",
    "400",
    "--learning_rate",
    "2e-3",
    "--merge_adapter",
    "true",
]
QLORA_ARGS = [
    "--config",
    "recipes/configs/qlora/demo.yaml",
    *TINY,
    "--max_train_samples",
    "160",
    # No accuracy is asserted of QLoRA here, and 4-bit scoring is slow on CPU: 80 held-out reviews.
    "--eval_size",
    "80",
    "--learning_rate",
    "2e-3",
]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("lora") / "run")
    result = run_in_process("recipes/lora.py", *LORA_ARGS, "--output_dir", output_dir)
    return output_dir, results_of(result, output_dir)


def test_lora_run_saves_only_the_adapter_and_learns(lora_run):
    output_dir, results = lora_run
    files = set(os.listdir(output_dir))
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "merged"} <= files
    assert "model.safetensors" not in files
    assert results["peft_method"] == "lora" and results["trainable_share"] < 0.02
    assert results["saved_weights_bytes"] < 0.05 * os.path.getsize(
        os.path.join(output_dir, "merged", "model.safetensors")
    )
    assert results["eval_accuracy"] >= results["baseline_majority_accuracy"] + 0.1, results["eval_accuracy"]


def test_reloaded_and_merged_lora_models_reproduce_the_run_accuracy(lora_run):
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from recipe_utils.core.args import DataArguments
    from recipe_utils.data.reviews import prepare_classification_data, tokenize_reviews
    from recipe_utils.evaluation.inference import predict_probabilities

    output_dir, results = lora_run
    with open(os.path.join(output_dir, "run_config.json")) as handle:
        config = json.load(handle)
    data_args = DataArguments(**{key: config[key] for key in DataArguments.__dataclass_fields__ if key in config})
    data = prepare_classification_data(data_args, config["seed"])
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    tokenized = tokenize_reviews(data.eval, tokenizer, data_args)
    for model in (
        AutoPeftModelForSequenceClassification.from_pretrained(output_dir),
        AutoModelForSequenceClassification.from_pretrained(os.path.join(output_dir, "merged")),
    ):
        predictions = predict_probabilities(model, tokenized, tokenizer).argmax(axis=1)
        assert np.mean(predictions == np.array(tokenized["labels"])) == results["eval_accuracy"]


def test_adapter_card_names_the_base_and_shows_how_to_load_it(lora_run):
    output_dir, results = lora_run
    card = ModelCard.load(os.path.join(output_dir, "README.md"))
    assert card.data.library_name == "peft" and "lora" in card.data.tags
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert "PeftModel.from_pretrained(base, repo)" in card.text
    assert "id2label={0: 'negative', 1: 'positive'}" in card.text  # the real label names, not LABEL_1
    assert "{{" not in card.content and "LoRA r=16" in card.text
    # The demo config skips re-scoring the no-op start (sft_sentiment's score): no row, column or line claims it.
    assert not any(key.startswith("before_") for key in results) and "before fine-tuning" not in card.text
    first = read_predictions(output_dir)[0]
    assert "before" not in first and {"baseline_tfidf", "baseline_majority"} <= set(first)


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("qlora") / "run")
    result = run_in_process("recipes/qlora.py", *QLORA_ARGS, "--output_dir", output_dir)
    return output_dir, results_of(result, output_dir)


def test_qlora_run_trains_on_a_4_bit_base_and_round_trips_through_the_local_hub(qlora_run, tmp_path, local_hub):
    output_dir, results = qlora_run
    assert results["quantized_layers"] == 36 and results["quantized_share_of_fp32"] <= 0.15
    losses = [
        entry["loss"] for entry in json.load(open(os.path.join(output_dir, "log_history.json"))) if "loss" in entry
    ]
    assert losses[-1] < losses[0], losses
    assert "qlora" in ModelCard.load(os.path.join(output_dir, "README.md")).data.tags

    # Pulled back, the adapter on the same 4-bit base gives the local run's logits exactly.
    report = push_and_pull(local_hub, output_dir, "tester/minilm-imdb-qlora", "adapter_classifier", str(tmp_path))
    assert report["differing_files"] == [] and report["max_logit_difference"] == 0.0
    assert report["card_eval_results"]["accuracy"] == round(results["eval_accuracy"], 4)


def test_unknown_task_is_one_clear_line():
    result = run_in_process("recipes/lora.py", "--task", "translation", "--config", LORA_CONFIG)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: unknown task")


def test_adapter_round_trips_through_the_local_hub(lora_run, local_hub, tmp_path):
    output_dir, results = lora_run
    report = push_and_pull(local_hub, output_dir, "tester/minilm-imdb-lora", "adapter_classifier", str(tmp_path))
    assert "adapter_model.safetensors" in report["files"] and "model.safetensors" not in report["files"]
    assert report["differing_files"] == []
    assert report["max_logit_difference"] == 0.0  # PeftModel.from_pretrained(base, repo) == the local adapter
    assert report["card_eval_results"]["accuracy"] == round(results["eval_accuracy"], 4)
    # The published adapter names its base on the Hub, not a path on the training machine.
    assert "sentence-transformers/all-MiniLM-L6-v2" in report["adapter_config_base"]
    assert_token_absent(output_dir, str(tmp_path))


@pytest.mark.parametrize("recipe", ["lora", "qlora"])
def test_two_processes_over_a_finished_run_write_once_publish_once_and_score_everything(
    recipe, request, tmp_path, local_hub, monkeypatch
):
    reference, _ = request.getfixturevalue(f"{recipe}_run")
    args = [*(LORA_ARGS if recipe == "lora" else QLORA_ARGS), *TINY_CLASSIFIER]
    results, folder, _ = two_processes_over(
        reference, f"recipes/{recipe}.py", args, tmp_path, local_hub, f"tester/ddp-{recipe}"
    )
    check_classifier_run(results, folder, monkeypatch)
    if recipe == "lora":  # the merged model is written once, by the main process, beside the adapter
        assert os.path.isfile(os.path.join(folder, "merged", "model.safetensors"))
