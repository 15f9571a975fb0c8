"""sft_sentiment, lora and qlora as two CPU processes (accelerate launch, DDP over gloo) with
--overwrite_output_dir --push_to_hub: one writer, one commit, and held-out figures of the whole held-out set."""

import json
import os

import numpy as np
import pytest

from tests.many_processes import one_and_two_processes

TINY = [
    "--max_train_samples",
    "64",
    "--eval_size",
    "40",
    "--max_length",
    "64",
    "--head_tokens",
    "16",
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "8",
]
RECIPES = {
    "sft_sentiment": ("recipes/sft_sentiment.py", ["--config", "recipes/configs/sft_sentiment/demo.yaml"]),
    "lora": ("recipes/lora.py", ["--config", "recipes/configs/lora/demo.yaml"]),
    "qlora": ("recipes/qlora.py", ["--config", "recipes/configs/qlora/demo.yaml"]),
}


def held_out_predictions(folder: str) -> np.ndarray:
    """The saved classifier's predictions on the run's whole held-out set, scored here in one process."""
    import sft_sentiment

    from recipe_utils.adapters import QuantizationArguments
    from recipe_utils.args import DataArguments, ModelArguments
    from recipe_utils.data import prepare_classification_data, tokenize_reviews
    from recipe_utils.inference import predict_probabilities
    from recipe_utils.models import load_tokenizer

    with open(os.path.join(folder, "run_config.json")) as handle:
        config = json.load(handle)

    def fields(cls):
        return cls(**{name: config[name] for name in cls.__dataclass_fields__ if name in config})

    model_args, data_args = fields(ModelArguments), fields(DataArguments)
    data = prepare_classification_data(data_args, config["seed"])
    tokenizer = load_tokenizer(ModelArguments(model_name_or_path=folder))
    model = sft_sentiment.load_saved_classifier(folder, model_args, fields(QuantizationArguments), data.label_names)
    tokenized = tokenize_reviews(data.eval, tokenizer, data_args)
    predictions = predict_probabilities(model, tokenized, tokenizer, 8).argmax(axis=1)
    return predictions, np.array(tokenized["labels"])


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_two_processes_write_once_publish_once_and_score_the_whole_held_out_set(
    recipe, tmp_path, local_hub, monkeypatch
):
    script, config = RECIPES[recipe]
    _, results, folder = one_and_two_processes(script, [*config, *TINY], tmp_path, local_hub, f"tester/ddp-{recipe}")
    # Gathered, not one process's shard: every held-out review counted, and the figure is the saved model's.
    assert results["eval_samples"] == 40 and sum(sum(row) for row in results["eval_confusion_matrix"]) == 40
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes"))
    predictions, labels = held_out_predictions(folder)
    assert results["eval_accuracy"] == float(np.mean(predictions == labels))
