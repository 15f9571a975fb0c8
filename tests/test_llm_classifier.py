"""The instruct LLM as a fine-tuned classifier (make llm_classifier): lora.py with a new sequence-classification
head on a random tiny Llama, trained on reviews whose verdict is their last word."""

import json
import os

import numpy as np
import pytest

from tests.conftest import results_of, run_in_process

CONFIG = "recipes/configs/lora/smollm2_classifier.yaml"
FILLER = "the plot cast story scenes music camera actor director script ending pace film movie".split()


def verdict_reviews(path: str, count: int, seed: int = 0) -> str:
    """Reviews of 3 to 40 filler words (so batches pad) that end in their verdict. A Llama classifier reads its
    label from the last real token: read at a padding position instead, it scores at chance."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(count):
            label = index % 2
            words = " ".join(rng.choice(FILLER, size=int(rng.integers(3, 41))))
            verdict = "great" if label else "awful"
            handle.write(json.dumps({"text": f"{words} {index}. Verdict: {verdict}", "label": label}) + "\n")
    return path


# QLoRA: the same on a 4-bit base; the tiny Llama's key/value projections (32 wide) are too narrow to quantize.
@pytest.mark.parametrize(
    "script, extra",
    [("recipes/lora.py", []), ("recipes/qlora.py", ["--quantization_skip_modules", "k_proj", "v_proj", "score"])],
    ids=["lora", "qlora"],
)
def test_a_tiny_lora_llm_classifier_learns_well_above_chance(tiny_llama, tmp_path, script, extra):
    reviews = verdict_reviews(str(tmp_path / "reviews.jsonl"), 480)
    output_dir = str(tmp_path / "run")
    result = run_in_process(
        script,
        "--config",
        CONFIG,
        "--model_name_or_path",
        tiny_llama,
        "--dataset_name",
        reviews,
        "--eval_size",
        "80",
        "--max_train_samples",
        "400",
        "--max_length",
        "64",
        "--head_tokens",
        "16",
        "--learning_rate",
        "5e-3",
        "--num_train_epochs",
        "2",
        # The tiny Llama is the prompted baseline too: the recipe's whole LLM path, in seconds.
        "--prompted_llm",
        tiny_llama,
        "--prompted_llm_calibration_reviews",
        "40",
        "--output_dir",
        output_dir,
        *extra,
    )
    results = results_of(result, output_dir)
    # Only the adapter and the new head are trained and saved; the figures are those of the saved adapter reloaded.
    assert results["peft_method"] == "lora" and results["trainable_share"] < 0.5
    assert "adapter_model.safetensors" in os.listdir(output_dir)
    assert results["eval_accuracy"] >= 0.8, results["eval_accuracy"]
    assert results["eval_reviews_per_second"] > 0
    assert {"baseline_llm_zero_shot_accuracy", "baseline_llm_few_shot_calibrated_accuracy"} <= set(results)
    card = open(os.path.join(output_dir, "README.md"), encoding="utf-8").read()
    assert "| llm few shot calibrated |" in card and "threshold fitted on 40 training reviews" in card
    if script.endswith("qlora.py"):
        assert results["quantized_share_of_fp32"] < 0.5


def test_encoder_or_llm_pairs_each_budget_on_the_same_reviews(tiny_llama, tmp_path):
    """make encoder_or_llm on tiny runs: a row per model and budget, each LLM row paired with the encoder of its
    budget on the same held-out reviews; the paired figures are those of the two runs' per-review answers."""
    from recipe_utils.evaluation.intervals import mcnemar_p_value
    from recipe_utils.evaluation.predictions import read_predictions
    from tests.conftest import run_script

    study_dir = str(tmp_path / "study")
    tiny = ["--eval_size", "40", "--max_length", "64", "--head_tokens", "16", "--per_device_eval_batch_size", "32"]
    result = run_script(
        "recipes/encoder_or_llm.py", "--study_dir", study_dir, "--budgets", "48", "--llm", tiny_llama, *tiny
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(study_dir, "comparison.json"), encoding="utf-8") as handle:
        rows = {row["variant"]: row for row in json.load(handle)}
    assert set(rows) == {"minilm_48", "smollm2_48"}
    assert rows["minilm_48"]["labels"] == rows["smollm2_48"]["labels"] == 48
    assert all(row["reviews_per_s"] > 0 and row["train_runtime_s"] > 0 for row in rows.values())
    encoder, llm = (read_predictions(os.path.join(study_dir, name)) for name in ("minilm_48", "smollm2_48"))
    assert [row["text"] for row in encoder] == [row["text"] for row in llm]
    encoder_right, llm_right = ([r["prediction"] == r["label"] for r in rows_] for rows_ in (encoder, llm))
    difference = 100 * (sum(llm_right) - sum(encoder_right)) / len(llm_right)
    assert rows["smollm2_48"]["minus_minilm_points"] == round(difference, 1)
    assert rows["smollm2_48"]["mcnemar_p_vs_minilm"] == round(mcnemar_p_value(llm_right, encoder_right), 4)
    assert "minus_minilm_points" not in rows["minilm_48"]
    assert "smollm2_48" in open(os.path.join(study_dir, "comparison.md"), encoding="utf-8").read()
