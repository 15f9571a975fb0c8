"""Masked-LM pretraining and the transfer study: packing, masking, a tiny pretraining run, the study command."""

import json
import os

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import DataCollatorForLanguageModeling, pipeline

from recipe_utils.data import load_raw_dataset
from recipe_utils.lm import masked_lm_perplexity, tokenize_for_mlm, train_wordpiece_tokenizer
from tests.conftest import results_of, run_in_process
from tests.many_processes import two_processes_over

TINY_BERT = [
    "--config_overrides",
    "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,intermediate_size=128,max_position_embeddings=128,"
    "sparse_prediction=True",
    "--tokenizer_vocab_size",
    "2000",
    "--block_size",
    "64",
]


PRETRAIN_ARGS = [
    "--config",
    "recipes/configs/pretrain_mlm/demo.yaml",
    *TINY_BERT,
    "--max_train_samples",
    "1500",
    "--max_eval_samples",
    "150",
    "--review_eval_samples",
    "40",
    "--num_train_epochs",
    "1",
    "--learning_rate",
    "2e-3",
]


@pytest.fixture(scope="module")
def news():
    """Real general text: the Lee news articles gensim ships, and a WordPiece tokenizer trained on them."""
    texts = load_raw_dataset("package:gensim/lee")["text"][:400]
    return datasets.Dataset.from_dict({"text": texts}), train_wordpiece_tokenizer(texts, 2000)


def test_packing_keeps_every_token_once_in_order(news):
    texts, tokenizer = news
    blocks = tokenize_for_mlm(texts, tokenizer, block_size=64, whole_word_mask=False)
    stream = sum((tokenizer(text)["input_ids"] for text in texts["text"]), [])  # [CLS] text [SEP], text by text
    flat = sum(blocks["input_ids"], [])
    assert flat == stream[: len(flat)] and len(stream) - len(flat) < 64
    assert all(len(block) == 64 for block in blocks["input_ids"])
    special = {tokenizer.cls_token_id, tokenizer.sep_token_id}
    assert sum(blocks["special_tokens_mask"], []) == [int(token in special) for token in flat]


def _mask(news, whole_word_mask: bool):
    texts, tokenizer = news
    blocks = tokenize_for_mlm(texts, tokenizer, block_size=64, whole_word_mask=whole_word_mask)
    replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if whole_word_mask else {}
    collator = DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=0.15, whole_word_mask=whole_word_mask, seed=0, **replace
    )
    batch = collator([blocks[i] for i in range(len(blocks))])
    original = torch.tensor(blocks["input_ids"])
    special = torch.tensor(blocks["special_tokens_mask"]).bool()
    return tokenizer, blocks, batch, original, special


def test_masking_picks_15_percent_of_ordinary_tokens_and_replaces_80_10_10(news):
    tokenizer, _, batch, original, special = _mask(news, whole_word_mask=False)
    chosen = batch["labels"] != -100
    assert not (chosen & special).any(), "special tokens are never masked"
    assert 0.14 < chosen.sum() / (~special).sum() < 0.16
    assert torch.equal(batch["labels"][chosen], original[chosen])  # labels are the original tokens
    as_mask = (batch["input_ids"] == tokenizer.mask_token_id) & chosen
    unchanged = (batch["input_ids"] == original) & chosen
    assert 0.77 < as_mask.sum() / chosen.sum() < 0.83
    assert 0.07 < unchanged.sum() / chosen.sum() < 0.13 + 0.01  # 10% kept, plus random draws of the same token
    assert torch.equal(batch["input_ids"][~chosen], original[~chosen])


def test_whole_word_masking_masks_every_piece_of_a_word_together(news):
    tokenizer, blocks, batch, original, special = _mask(news, whole_word_mask=True)
    chosen = batch["labels"] != -100
    continuation = torch.tensor(
        [[tokenizer.convert_ids_to_tokens(token).startswith("##") for token in row] for row in blocks["input_ids"]]
    )
    assert continuation.sum() > 100, "the corpus has words split into pieces"
    # a piece continuing a word is masked exactly when the piece before it is
    assert torch.equal(chosen[:, 1:][continuation[:, 1:]], chosen[:, :-1][continuation[:, 1:]])
    assert 0.12 < chosen.sum() / (~special).sum() < 0.18


@pytest.fixture(scope="module")
def tiny_pretraining(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("mlm") / "run")
    result = run_in_process("recipes/pretrain_mlm.py", *PRETRAIN_ARGS, "--output_dir", output_dir)
    return output_dir, results_of(result, output_dir)


def test_tiny_pretraining_lowers_held_out_perplexity_clearly(tiny_pretraining):
    _, results = tiny_pretraining
    assert results["perplexity_ratio"] >= 3, results
    assert results["review_perplexity"] < results["before_review_perplexity"], results
    assert results["leaked_eval_texts"] == 0


def test_pretrained_folder_works_with_fill_mask_and_its_card_names_the_corpus(tiny_pretraining):
    output_dir, results = tiny_pretraining
    fill = pipeline("fill-mask", model=output_dir)
    assert len(fill(f"the city is in the {fill.tokenizer.mask_token} of the country")) == 5
    with open(os.path.join(output_dir, "README.md")) as handle:
        card = handle.read()
    assert "CC BY-SA" in card and "pipeline_tag: fill-mask" in card
    assert f"{results['perplexity']:.1f}" in card


def test_held_out_perplexity_is_the_same_number_for_the_same_model(tiny_pretraining, news):
    """The seeded collator scores the same masked positions each time, so scores of one model repeat exactly."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    output_dir, _ = tiny_pretraining
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    blocks = tokenize_for_mlm(news[0].select(range(60)), tokenizer, 64, whole_word_mask=False)
    model = AutoModelForMaskedLM.from_pretrained(output_dir)
    collator = DataCollatorForLanguageModeling(tokenizer, seed=1)
    assert masked_lm_perplexity(model, blocks, collator) == masked_lm_perplexity(model, blocks, collator)


@pytest.fixture(scope="module")
def tiny_study(tiny_pretraining, tmp_path_factory):
    checkpoint, _ = tiny_pretraining
    study_dir = str(tmp_path_factory.mktemp("study"))
    result = run_in_process(
        "recipes/transfer_study.py",
        "--checkpoint",
        checkpoint,
        "--starts",
        "pretrained",
        "--top_k",
        "1",
        "--study_dir",
        study_dir,
        "--max_train_samples",
        "300",
        "--eval_size",
        "200",
        "--max_length",
        "64",
        "--head_tokens",
        "16",
        "--num_train_epochs",
        "1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(study_dir, "comparison.json")) as handle:
        return checkpoint, study_dir, {row["strategy"]: row for row in json.load(handle)}, result.stdout


def test_study_reports_every_strategy_with_its_measures(tiny_study):
    _, study_dir, rows, stdout = tiny_study
    assert set(rows) == {"full", "head", "top_1", "random_init"}
    for strategy, row in rows.items():
        # Each row is the figure its variant's run reported for its saved model, not a number of the study's own.
        with open(os.path.join(study_dir, f"pretrained_{strategy}", "all_results.json")) as handle:
            variant = json.load(handle)
        assert row["accuracy"] == pytest.approx(variant["eval_accuracy"]) and row["f1"] == pytest.approx(
            variant["eval_f1"]
        )
        assert row["train_runtime_s"] > 0 and row["train_peak_memory_MB"] > 0
    assert rows["head"]["trainable_params"] < rows["top_1"]["trainable_params"] < rows["full"]["trainable_params"]
    assert rows["full"]["trainable_params"] == rows["random_init"]["trainable_params"]
    assert os.path.isfile(os.path.join(study_dir, "comparison.png"))
    with open(os.path.join(study_dir, "comparison.md")) as handle:
        assert "random_init" in handle.read()
    assert "| pretrained_full" in stdout


def test_forgetting_is_measured_against_the_checkpoints_own_perplexity(tiny_study):
    checkpoint, _, rows, _ = tiny_study
    with open(os.path.join(checkpoint, "all_results.json")) as handle:
        pretrained = json.load(handle)
    # The study re-scores the checkpoint on the held-out text and masks its pretraining run used.
    assert rows["full"]["general_mlm_ppl_start"] == pytest.approx(pretrained["perplexity"], rel=1e-3)
    assert rows["head"]["forgetting_x"] == pytest.approx(1.0), "a frozen encoder forgets nothing"
    # the fine-tuned encoder really sits under the head: its score moved
    assert rows["full"]["general_mlm_ppl_after"] != rows["full"]["general_mlm_ppl_start"]
    assert rows["random_init"]["forgetting_x"] is None


def test_strategies_train_exactly_the_parameters_they_claim(tiny_study):
    checkpoint, study_dir, _, _ = tiny_study
    start = load_file(os.path.join(checkpoint, "model.safetensors"))

    def changed(strategy):
        tuned = load_file(os.path.join(study_dir, f"pretrained_{strategy}", "model.safetensors"))
        encoder = {name: value for name, value in tuned.items() if name.startswith("model.") and name in start}
        assert encoder, "the classifier shares the checkpoint's encoder names"
        return {name for name, value in encoder.items() if not torch.equal(value, start[name])}

    assert changed("head") == set()  # only the task head moved
    top = changed("top_1")
    assert top and all(".layers.1." in name for name in top), top  # the top one of two layers
    assert any(".layers.0." in name for name in changed("full"))


def test_each_study_card_says_which_strategy_made_it(tiny_study):
    _, study_dir, _, _ = tiny_study
    for strategy, expected in (("head", "| freeze strategy | head |"), ("top_1", "top_k (k=1)")):
        with open(os.path.join(study_dir, f"pretrained_{strategy}", "README.md")) as handle:
            assert expected in handle.read()
    with open(os.path.join(study_dir, "pretrained_random_init", "README.md")) as handle:
        card = handle.read()
    assert "trained from random weights" in card and "random (the architecture only" in card


def test_two_processes_over_a_finished_run_write_once_and_publish_once(tiny_pretraining, tmp_path, local_hub):
    reference, _ = tiny_pretraining
    args = [*PRETRAIN_ARGS, "--max_train_samples", "200", "--max_eval_samples", "20", "--max_steps", "2"]
    results, _, _ = two_processes_over(
        reference, "recipes/pretrain_mlm.py", args, tmp_path, local_hub, "tester/ddp-mlm"
    )
    assert results["eval_samples"] == 20 and results["perplexity"] < results["before_perplexity"]
