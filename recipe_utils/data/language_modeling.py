"""Language-model data and models: splits by document, packing into blocks, tokenizers and models from scratch."""

import math

import datasets
import numpy as np
import torch

from recipe_utils.core.distributed import gather_rows, shard
from recipe_utils.core.errors import RecipeError
from recipe_utils.data.reviews import clean_text, load_raw_dataset, require_columns


def load_lm_texts(
    data_args, seed: int, exclude: frozenset[str] = frozenset()
) -> tuple[datasets.Dataset, datasets.Dataset, dict]:
    """Cleaned, de-duplicated texts split into train and held-out sets.

    When the source knows which document a text came from, whole documents go to one side,
    so no article is half trained on and half evaluated. Texts in `exclude` (the held-out reviews of the
    classification split, when pretraining on reviews) are dropped first, and counted.
    """
    raw = load_raw_dataset(data_args.dataset_name, data_args.dataset_train_split, data_args.dataset_config)
    require_columns(raw, data_args.text_column)
    texts = [clean_text(str(text or "")) for text in raw[data_args.text_column]]
    groups = raw["document"] if "document" in raw.column_names else list(range(len(texts)))
    seen, rows, excluded = set(), [], 0
    for text, group in zip(texts, groups, strict=True):
        if text in exclude:
            excluded += 1
        elif text and text not in seen:
            seen.add(text)
            rows.append((text, group))
    if len(rows) < 2:
        raise RecipeError(f"dataset '{data_args.dataset_name}' has fewer than two non-empty texts")
    unique_groups = sorted({group for _, group in rows}, key=str)
    rng = np.random.default_rng(seed)
    held_out = set(
        rng.permutation(unique_groups)[: max(1, round(len(unique_groups) * data_args.eval_fraction))].tolist()
    )
    train = [text for text, group in rows if group not in held_out]
    evaluation = [text for text, group in rows if group in held_out]
    train = [train[i] for i in rng.permutation(len(train))][: data_args.max_train_samples]
    evaluation = evaluation[: data_args.max_eval_samples]
    if not train or not evaluation:
        raise RecipeError("too few texts to split into training and evaluation sets")
    stats = {
        "train_samples": len(train),
        "eval_samples": len(evaluation),
        "duplicate_texts_dropped": len([t for t in texts if t]) - len(rows) - excluded,
        "excluded_held_out_texts": excluded,
        "leaked_eval_texts": len(set(train) & set(evaluation)),
    }
    return datasets.Dataset.from_dict({"text": train}), datasets.Dataset.from_dict({"text": evaluation}), stats


def group_texts(examples: dict, block_size: int) -> dict:
    """Concatenate the batch's sequences and cut block_size chunks (a tail too short for a block is dropped)."""
    concatenated = {key: sum(examples[key], []) for key in examples}
    total = (len(concatenated["input_ids"]) // block_size) * block_size
    return {
        key: [values[i : i + block_size] for i in range(0, total, block_size)] for key, values in concatenated.items()
    }


def tokenize_for_lm(dataset: datasets.Dataset, tokenizer, block_size: int, packing: bool, separator_id: int | None):
    """Packed blocks (texts joined by `separator_id`, e.g. GPT-2's eos) or one padded example per text."""
    if packing:

        def encode(batch):
            encoded = tokenizer(batch["text"], add_special_tokens=separator_id is None)
            if separator_id is not None:
                encoded = {
                    key: [ids + [separator_id if key == "input_ids" else 1] for ids in values]
                    for key, values in encoded.items()
                }
            return encoded

        return pack_encoded(dataset, encode, block_size)
    packed = dataset.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=block_size, padding="max_length"),
        batched=True,
        remove_columns=dataset.column_names,
        desc="Tokenizing (padded)",
    )
    if len(packed) == 0:
        raise RecipeError(f"the texts are too short to fill one block of {block_size} tokens")
    return packed


def pack_encoded(dataset: datasets.Dataset, encode, block_size: int) -> datasets.Dataset:
    """Encode texts with `encode` (a batched tokenizer call), then concatenate and cut block_size blocks."""
    tokenized = dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenizing")
    packed = tokenized.map(
        group_texts,
        batched=True,
        batch_size=1000,
        fn_kwargs={"block_size": block_size},
        desc=f"Packing into blocks of {block_size}",
    )
    if len(packed) == 0:
        raise RecipeError(f"the texts are too short to fill one block of {block_size} tokens")
    return packed


def perplexity(eval_loss: float) -> float:
    """exp(mean token cross-entropy); inf rather than an overflow error for a diverged model."""
    try:
        return math.exp(eval_loss)
    except OverflowError:
        return float("inf")


def train_bpe_tokenizer(texts, vocab_size: int):
    """A GPT-2 style byte-level BPE tokenizer trained on `texts`, wrapped for transformers."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[eos])
    return PreTrainedTokenizerFast(tokenizer_object=trainer._tokenizer, bos_token=eos, eos_token=eos, unk_token=eos)


def config_from_scratch(model_type: str, overrides: str | None, vocab_size: int, special_ids: dict):
    """AutoConfig for `model_type` with `key=value` overrides (as in transformers' run_clm.py)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.for_model(model_type)
    except ValueError:
        raise RecipeError(f"unknown model_type '{model_type}'") from None
    if overrides:
        try:
            config.update_from_string(overrides)
        except ValueError as err:
            raise RecipeError(f"bad config_overrides '{overrides}': {err}") from None
        # Build again with the typed overrides as constructor arguments, so values a config derives from
        # them when built (ModernBERT's attention type per layer) follow them.
        keys = [pair.split("=", 1)[0] for pair in overrides.split(",")]
        config = AutoConfig.for_model(model_type, **{key: getattr(config, key) for key in keys})
    config.vocab_size = vocab_size
    for key, value in special_ids.items():
        setattr(config, key, value)
    return config


@torch.inference_mode()
def held_out_perplexity(model, blocks: datasets.Dataset, ignore_id: int | None, batch_size: int = 32) -> float:
    """Perplexity over packed, equal-length blocks, scored as the causal-LM recipe's Trainer.evaluate scores
    them: DataCollatorForLanguageModeling leaves the pad token (GPT-2's eos, here the separator between
    texts) out of the loss, so `ignore_id` is left out too. Processes share the batches out and gather."""
    model.eval()
    device = next(model.parameters()).device
    ids = torch.tensor(blocks["input_ids"])
    starts = range(0, len(ids), batch_size)
    losses = []
    with torch.inference_mode():
        for index in shard(len(starts)):
            batch = ids[starts[index] : starts[index] + batch_size].to(device)
            labels = batch.masked_fill(batch == ignore_id, -100) if ignore_id is not None else batch
            mask = torch.ones_like(batch)  # packed blocks hold no padding
            losses.append(model(input_ids=batch, attention_mask=mask, labels=labels).loss.float().item() * len(batch))
    return perplexity(sum(gather_rows(losses, len(starts))) / len(ids))


def pad_with_eos(model, tokenizer) -> None:
    """GPT-2 has no pad token; padding with eos is the usual choice (seed 002). Model and generation
    config must agree with the tokenizer, or generate() warns and guesses."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def train_wordpiece_tokenizer(texts, vocab_size: int):
    """A BERT-style lower-cased WordPiece tokenizer trained on `texts`, wrapped for transformers
    ([CLS] text [SEP] on encoding, [MASK] for masked-LM)."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import PreTrainedTokenizerFast

    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]"}
    special["mask_token"] = "[MASK]"
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=list(special.values()))
    return PreTrainedTokenizerFast(tokenizer_object=trainer._tokenizer, **special)


def masking_collator(tokenizer, mlm_probability: float, whole_word_mask: bool, seed: int | None = None):
    """The masked-LM collator pretraining uses (BERT's 80/10/10 replacement); seeded, it masks the same positions
    each time, so held-out perplexities of two models compare. Whole words are only ever replaced by [MASK]: the
    collator supports no random replacement for them."""
    from transformers import DataCollatorForLanguageModeling

    replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if whole_word_mask else {}
    return DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=mlm_probability, whole_word_mask=whole_word_mask, seed=seed, **replace
    )


def tokenize_for_mlm(dataset: datasets.Dataset, tokenizer, block_size: int, whole_word_mask: bool):
    """Texts encoded with their special tokens and packed into blocks, keeping what the masking collator reads:
    which tokens are special (never masked) and, for whole-word masking, character offsets (which tokens
    continue a word)."""

    def encode(batch):
        return tokenizer(batch["text"], return_special_tokens_mask=True, return_offsets_mapping=whole_word_mask)

    return pack_encoded(dataset, encode, block_size)


@torch.inference_mode()
def masked_lm_perplexity(model, blocks: datasets.Dataset, collator, batch_size: int = 32) -> float:
    """exp(mean cross-entropy over masked tokens). `collator` should carry a fixed seed, so every model
    scored on the same blocks predicts the same masked positions and scores compare. Blocks are masked one
    at a time, so the masks do not depend on batch_size either."""
    model.eval()
    device = next(model.parameters()).device
    collator.generator = None  # restart the seeded mask sequence
    masked = [collator([blocks[i]]) for i in range(len(blocks))]
    starts = range(0, len(masked), batch_size)
    scored = []  # (summed loss, masked tokens) per batch; processes share the batches out and gather
    with torch.inference_mode():
        for index in shard(len(starts)):
            chunk = masked[starts[index] : starts[index] + batch_size]
            batch = {key: torch.cat([item[key] for item in chunk]).to(device) for key in chunk[0]}
            count = int((batch["labels"] != -100).sum())
            scored.append((model(**batch).loss.float().item() * count if count else 0.0, count))
    gathered = gather_rows(scored, len(starts))
    total_loss, total_masked = sum(loss for loss, _ in gathered), sum(count for _, count in gathered)
    if not total_masked:
        raise RecipeError("no token was masked in the evaluation blocks; raise mlm_probability")
    return perplexity(total_loss / total_masked)
