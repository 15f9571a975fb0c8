"""Fine-tune a causal LM (distilgpt2 by default) on movie reviews, then generate text from a prompt.

Offline demo: pretrain a small GPT-2 on real Wikipedia text, then fine-tune it on IMDB reviews:
    python recipes/clm_distilgpt2.py --config recipes/configs/clm_distilgpt2/pretrain_demo.yaml
    python recipes/clm_distilgpt2.py --config recipes/configs/clm_distilgpt2/demo.yaml

With the Hub (distilgpt2 on stanfordnlp/imdb):
    accelerate launch --config_file accelerate_configs/single_gpu.yaml recipes/clm_distilgpt2.py \
        --config recipes/configs/clm_distilgpt2/gpu.yaml

Generate from a trained model (no prompt: asks "Enter a prompt for text generation:" until an empty line):
    python recipes/clm_distilgpt2.py --generate_only --model_name_or_path outputs/clm_distilgpt2 --prompt "The acting"
"""

import math
import os
from dataclasses import dataclass, field

from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments, set_seed

from recipe_utils.adapters import (
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
from recipe_utils.args import (
    LanguageModelingDataArguments,
    ModelArguments,
    OutputArguments,
    ScratchModelArguments,
    global_batch_size,
    parse_args,
)
from recipe_utils.cards import write_model_card
from recipe_utils.data import describe_dataset, hub_dataset_id
from recipe_utils.distributed import from_main_process, is_main_process, main_process_writes, say, wait_for_everyone
from recipe_utils.errors import RecipeError, exit_on_recipe_error
from recipe_utils.generation import GenerationArguments, generate, interactive_loop
from recipe_utils.hardware import settle_cpu_precision
from recipe_utils.hub import publish, take_push_request
from recipe_utils.lm import (
    config_from_scratch,
    held_out_perplexity,
    load_lm_texts,
    pad_with_eos,
    tokenize_for_lm,
    train_bpe_tokenizer,
)
from recipe_utils.models import load_pretrained, load_tokenizer, parameter_counts, skeleton
from recipe_utils.outputs import remove_pickled_training_args, resolved_config, write_json
from recipe_utils.report import plot_training_curves
from recipe_utils.run_folder import claim_output_dir, finish_run, open_run_folder
from recipe_utils.tracking import tracker_runs


@dataclass
class CausalLMArguments:
    generate_only: bool = field(
        default=False,
        metadata={"help": "Skip training: load model_name_or_path and generate (--prompt, or a prompt loop)."},
    )


def make_parser_types():
    return [
        ModelArguments,
        ScratchModelArguments,
        LanguageModelingDataArguments,
        GenerationArguments,
        PeftArguments,
        CausalLMArguments,
        OutputArguments,
        TrainingArguments,
    ]


def build_model_and_tokenizer(model_args, scratch_args, train_texts, quantized: bool = True):
    """A pretrained checkpoint (quantized when asked), or (model_type set) a fresh model with a given or freshly
    trained tokenizer."""
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


def main(model_args, scratch_args, data_args, gen_args, peft_args, clm_args, output_args, training_args):
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
    train_texts, eval_texts, stats = load_lm_texts(data_args, training_args.seed)
    model, tokenizer = build_model_and_tokenizer(model_args, scratch_args, train_texts["text"])
    full_count = sum(parameter.numel() for parameter in skeleton(AutoModelForCausalLM, model.config).parameters())
    if model_args.load_in_4bit:
        stats.update(quantized_weight_report(model))
    model = wrap_with_peft(model, model_args, peft_args, "CAUSAL_LM")
    separator = tokenizer.eos_token_id
    train_blocks = tokenize_for_lm(train_texts, tokenizer, data_args.block_size, data_args.packing, separator)
    # Held-out perplexity is always measured on packed blocks, so packing and padding runs compare.
    eval_blocks = tokenize_for_lm(eval_texts, tokenizer, data_args.block_size, True, separator)
    results = {
        **stats,
        **parameter_counts(model, total=full_count),
        "peft_method": peft_args.peft_method,
        "train_blocks": len(train_blocks),
        "eval_blocks": len(eval_blocks),
        "global_batch_size": global_batch_size(training_args),
    }

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_blocks,
        eval_dataset=eval_blocks,
        processing_class=tokenizer,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    # Perplexity per predicted token, not Trainer.evaluate's eval_loss: in transformers 5.23 that divides the
    # summed loss by the block's token count before the shift (one token per block too many), which
    # reads about 4% low at 128-token blocks.
    eval_batch = training_args.per_device_eval_batch_size
    results["before_perplexity"] = held_out_perplexity(model, eval_blocks, tokenizer.pad_token_id, eval_batch)
    samples_before = {prompt: generate(model, tokenizer, prompt, gen_args) for prompt in gen_args.sample_prompts}

    open_run_folder(run)
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    results.update({key if key.startswith("train_") else f"train_{key}": v for key, v in train_result.metrics.items()})
    trainer.save_model(run.staging)  # every process calls it (FSDP and DeepSpeed gather weights); one writes
    trainer.save_state()
    with main_process_writes() as writer:
        if writer:
            remove_pickled_training_args(run.staging)
            if peft_args.merge_adapter:
                base, _ = build_model_and_tokenizer(model_args, scratch_args, None, quantized=False)
                merged = write_merged_model(base, run.staging, tokenizer)
                results["merged_dir"] = os.path.join(run.final, os.path.basename(merged))
    results["saved_weights_bytes"] = folder_size_bytes(run.staging)

    # Held-out figures are those of the saved model, reloaded as a user loads it, not of the model in memory.
    saved = load_saved_model(
        AutoModelForCausalLM, run.staging, lambda: build_model_and_tokenizer(model_args, scratch_args, None)[0]
    )
    pad_with_eos(saved, tokenizer)
    results["perplexity"] = held_out_perplexity(saved, eval_blocks, tokenizer.pad_token_id, eval_batch)
    results["eval_loss"] = math.log(results["perplexity"])
    results["perplexity_change"] = results["perplexity"] / results["before_perplexity"] - 1
    samples_after = {prompt: generate(saved, tokenizer, prompt, gen_args) for prompt in gen_args.sample_prompts}
    results["tracker_runs"] = tracker_runs(training_args)

    with main_process_writes() as writer:
        if writer:
            write_json(run.path("log_history.json"), trainer.state.log_history)
            write_json(
                run.path("run_config.json"),
                resolved_config(model_args, scratch_args, data_args, gen_args, peft_args, training_args),
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
                describe_adapter(model_args, peft_args),
            )
    say(
        f"\nHeld-out perplexity ({results['eval_blocks']} blocks of {data_args.block_size} tokens): "
        f"{results['before_perplexity']:.1f} before -> {results['perplexity']:.1f} after "
        f"({results['perplexity_change']:+.0%})"
    )
    for text in samples_after.values():
        say(f"  {text!r}")
    finish_run(run, results)
    say(f"Saved to {run.final}")
    if push and is_main_process():
        publish(run.final, push)
    wait_for_everyone()
    return results


def write_clm_card(
    run, results, samples_before, samples_after, model_args, scratch_args, data_args, training_args, adapter
):
    from huggingface_hub import EvalResult, ModelCardData

    from_scratch = scratch_args.model_type is not None
    base = None if from_scratch or os.path.isdir(model_args.model_name_or_path) else model_args.model_name_or_path
    hub_data = hub_dataset_id(data_args.dataset_name)
    model_name = training_args.hub_model_id or os.path.basename(os.path.abspath(run.final))
    card_data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-generation",
        base_model=base,
        datasets=[hub_data],
        tags=["causal-lm", "movie-reviews", "recipes-clm_distilgpt2"],
        model_name=model_name,
        eval_results=[
            EvalResult(
                task_type="text-generation",
                dataset_type=hub_data,
                dataset_name=hub_data,
                dataset_split=f"held-out {int(data_args.eval_fraction * 100)}%",
                metric_type="perplexity",
                metric_name="Perplexity",
                metric_value=round(results["perplexity"], 2),
            )
        ],
    )
    start = (
        f"a {scratch_args.model_type} built from scratch ({scratch_args.config_overrides or 'default config'})"
        if from_scratch
        else model_args.model_name_or_path
    )
    write_model_card(
        run.staging,
        "clm.md.j2",
        card_data,
        model_name=model_name,
        start=start,
        adapter=adapter,
        results=results,
        dataset_name=data_args.dataset_name,
        hub_data=hub_data,
        dataset_description=describe_dataset(data_args.dataset_name),
        block_size=data_args.block_size,
        packing=data_args.packing,
        samples=[(p, samples_before[p], samples_after[p]) for p in samples_before],
        learning_rate=training_args.learning_rate,
        epochs=training_args.num_train_epochs,
        seed=training_args.seed,
        usage_id=training_args.hub_model_id or run.final,
        tracker_runs=results["tracker_runs"],
    )


@exit_on_recipe_error
def cli(args=None, defaults=None):
    return main(*parse_args(make_parser_types(), args, defaults))


if __name__ == "__main__":
    cli()
