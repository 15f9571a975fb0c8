"""Fine-tune a pretrained encoder for movie-review sentiment and compare it with baselines.

Offline demo (real IMDB reviews and MiniLM shipped by PyPI packages, CPU, a few minutes):
    python recipes/sft_sentiment.py --config recipes/configs/sft_sentiment/demo.yaml

Full run on a GPU box with the Hub (distilbert-base-uncased on stanfordnlp/imdb, bf16):
    accelerate launch --config_file accelerate_configs/single_gpu.yaml recipes/sft_sentiment.py \
        --config recipes/configs/sft_sentiment/gpu.yaml

The same script as seed 003's plain PyTorch loop (Dataset + DataLoader + optimizer):
    python recipes/sft_sentiment.py --config recipes/configs/sft_sentiment/demo.yaml --trainer plain \
        --output_dir outputs/sft_sentiment_plain

Any key of the YAML can be overridden on the command line (--learning_rate 3e-5); see --help.
"""

import recipe_utils.quiet  # noqa: F401  (first: keeps library import noise off the screen)

# isort: split
import os
from dataclasses import dataclass, field

from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

from recipe_utils.core.args import (
    DataArguments,
    FreezeArguments,
    ModelArguments,
    OutputArguments,
    global_batch_size,
    parse_args,
)
from recipe_utils.core.distributed import main_process_writes, world_size
from recipe_utils.core.errors import RecipeError, exit_on_recipe_error
from recipe_utils.core.hardware import peak_memory_mb, reset_peak_memory, settle_cpu_precision
from recipe_utils.data.reviews import (
    prepare_classification_data,
    tokenize_reviews,
)
from recipe_utils.evaluation.baselines import baseline_results
from recipe_utils.evaluation.inference import score_held_out
from recipe_utils.evaluation.metrics import compute_metrics, confusion
from recipe_utils.evaluation.predictions import write_predictions
from recipe_utils.evaluation.prompted_llm import PromptedLLMArguments
from recipe_utils.models.adapters import (
    PeftArguments,
    QuantizationArguments,
    check_peft_options,
    folder_size_bytes,
    quantized_weight_report,
    write_merged_model,
)
from recipe_utils.models.classifiers import build_classifier, load_saved_classifier
from recipe_utils.models.loading import (
    load_classifier,
    load_tokenizer,
)
from recipe_utils.models.parameter_groups import uses_layerwise_rates
from recipe_utils.publishing.cards import write_sentiment_card
from recipe_utils.publishing.hub import take_push_request
from recipe_utils.publishing.report import comparison_rows, markdown_table, plot_confusion_matrix, plot_training_curves
from recipe_utils.publishing.run_folder import claim_output_dir, open_run_folder
from recipe_utils.publishing.run_tail import close_run, save_trained, train_metrics, write_run_records
from recipe_utils.publishing.tracking import tracker_runs
from recipe_utils.training.hp_search import hp_search
from recipe_utils.training.plain_loop import parameter_groups, train_plain, trainer_state


@dataclass
class SentimentArguments(PromptedLLMArguments):
    """The trainer, the baselines beside it (a ready-made classifier, a prompted LLM) and the search."""

    trainer: str = field(
        default="hf",
        metadata={
            "help": "hf: the transformers Trainer; plain: a bare DataLoader loop (seed 003).",
            "choices": ["hf", "plain"],
        },
    )
    zero_shot_model: str | None = field(
        default=None,
        metadata={
            "help": "A ready-made sentiment model scored as a baseline "
            "(nlptown/bert-base-multilingual-uncased-sentiment)."
        },
    )
    zero_shot_label_map: list[str] = field(
        default_factory=lambda: ["1 star=negative", "2 stars=negative", "4 stars=positive", "5 stars=positive"],
        metadata={"help": "zero_shot_model label=our label pairs; its other labels are ignored."},
    )
    score_before: bool = field(
        default=True,
        metadata={
            "help": "Score the held-out reviews before training too (seed 003's original-vs-fine-tuned comparison). "
            "The adapter demos turn it off: with the adapter at its no-op start that is sft_sentiment's score again."
        },
    )
    hp_search_trials: int = field(
        default=0,
        metadata={"help": "Optuna trials over learning rate, epochs and weight decay before the final run (0: off)."},
    )
    hp_search_validation_size: int = field(
        default=400,
        metadata={"help": "Training reviews set aside to score search trials (the held-out set is never used)."},
    )
    hp_learning_rate_range: list[float] = field(
        default_factory=lambda: [1e-5, 2e-4], metadata={"help": "Log-uniform range."}
    )
    hp_epochs_choices: list[int] = field(default_factory=lambda: [1, 2, 3], metadata={"help": "Epoch counts to try."})
    hp_weight_decay_range: list[float] = field(default_factory=lambda: [0.0, 0.1], metadata={"help": "Uniform range."})


def make_parser_types():
    return [
        ModelArguments,
        DataArguments,
        FreezeArguments,
        PeftArguments,
        QuantizationArguments,
        SentimentArguments,
        OutputArguments,
        TrainingArguments,
    ]


def main(model_args, data_args, freeze_args, peft_args, quant_args, script_args, output_args, training_args):
    run = claim_output_dir(training_args, output_args.overwrite_output_dir)
    check_peft_options(model_args, peft_args, freeze_args)
    if script_args.trainer == "plain" and world_size() > 1:
        raise RecipeError(
            "--trainer plain is a one-process loop: run it with python, or use --trainer hf to launch many"
        )
    settle_cpu_precision(training_args)
    push = take_push_request(training_args)
    set_seed(training_args.seed)
    global_batch = global_batch_size(training_args)

    data = prepare_classification_data(data_args, training_args.seed)
    tokenizer = load_tokenizer(model_args)
    train_tokenized = tokenize_reviews(data.train, tokenizer, data_args)
    eval_tokenized = tokenize_reviews(data.eval, tokenizer, data_args)
    # Saved with the model: pipeline(..., truncation=True) then cuts reviews at the length it was trained on.
    tokenizer.model_max_length = data_args.max_length
    eval_batch = training_args.per_device_eval_batch_size
    results = {**data.stats, "global_batch_size": global_batch}
    baselines, baseline_predictions = baseline_results(
        data, data_args, script_args, model_args, training_args.seed, eval_batch, training_args.device, script_args
    )
    results.update(baselines)

    def model_init():
        return build_classifier(model_args, freeze_args, peft_args, quant_args, data.label_names)

    model, counts = model_init()
    results.update(counts, peft_method=peft_args.peft_method)
    if model_args.load_in_4bit:
        results.update(quantized_weight_report(model))
    # The run's starting point (for adapters: the base model with the adapter at its initial, no-op state).
    before, before_predictions = {}, {}
    if script_args.score_before:
        before, before_probabilities = score_held_out(model, eval_tokenized, tokenizer, eval_batch, "before")
        before_predictions = {"before": before_probabilities.argmax(axis=1)}
    results.update(before)

    search = None
    if script_args.hp_search_trials > 0:
        search = hp_search(lambda: model_init()[0], training_args, script_args, train_tokenized, tokenizer)
        for key, value in search["best"].items():
            setattr(training_args, key, value)
        set_seed(training_args.seed)
        model, _ = model_init()

    open_run_folder(run)
    reset_peak_memory()
    if script_args.trainer == "plain":
        log_history = train_plain(
            model, data.train, tokenizer, data_args, training_args, parameter_groups(model, training_args, freeze_args)
        )
        trained = {key: value for key, value in log_history[-1].items() if key != "step"}
        with main_process_writes() as writer:
            if writer:
                model.save_pretrained(run.staging)
                tokenizer.save_pretrained(run.staging)  # the Trainer saves its tokenizer with the model
                trainer_state(log_history, training_args).save_to_json(run.path("trainer_state.json"))
    else:
        optimizer_cls_and_kwargs = None
        if uses_layerwise_rates(freeze_args.layer_lr_decay, freeze_args.head_lr_scale):
            optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
            optimizer_kwargs["params"] = parameter_groups(model, training_args, freeze_args)
            optimizer_cls_and_kwargs = (optimizer_cls, optimizer_kwargs)
        trainer = Trainer(
            model=model,
            args=training_args,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            train_dataset=train_tokenized,
            eval_dataset=eval_tokenized,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=compute_metrics,
        )
        trained = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint).metrics
        log_history = trainer.state.log_history
        save_trained(trainer, run)
    results.update(train_metrics(trained))
    results["train_peak_memory_mb"] = peak_memory_mb()
    with main_process_writes() as writer:
        if writer and peft_args.merge_adapter:
            base = load_classifier(model_args, data.label_names)
            results["merged_dir"] = os.path.join(
                run.final, os.path.basename(write_merged_model(base, run.staging, tokenizer))
            )
    results["saved_weights_bytes"] = folder_size_bytes(run.staging)

    # Held-out figures are those of the saved model, reloaded as a user loads it, not of the model in memory.
    saved = load_saved_classifier(run.staging, model_args, quant_args, data.label_names)
    after, probabilities = score_held_out(saved, eval_tokenized, tokenizer, eval_batch, "eval")
    results.update(after)
    matrix = confusion(eval_tokenized["labels"], probabilities.argmax(axis=1), len(data.label_names))
    results["eval_confusion_matrix"] = matrix
    if search:
        results["hp_search_best"], results["hp_search_trials"] = search["best"], search["trials"]
    results["tracker_runs"] = tracker_runs(training_args)

    table = markdown_table(comparison_rows(results))
    with main_process_writes() as writer:
        if writer:
            write_run_records(
                run, log_history, model_args, data_args, freeze_args, peft_args, quant_args, script_args, training_args
            )
            others = dict(before_predictions)
            others.update({f"baseline_{name}": predictions for name, predictions in baseline_predictions.items()})
            write_predictions(run.staging, data.eval["text"], data.eval["label"], probabilities, others)
            # The held-out scores before and after training frame the curve even when no evaluation ran mid-training.
            final_step = max((entry.get("step", 0) for entry in log_history), default=0)
            framed = [
                *([{"step": 0, **{k.replace("before_", "eval_"): v for k, v in before.items()}}] if before else []),
                *log_history,
                {"step": final_step, **after},
            ]
            plot_training_curves(framed, run.path("training_curves.png"))
            plot_confusion_matrix(matrix, data.label_names, run.path("confusion_matrix.png"))
            write_sentiment_card(
                run,
                results,
                table,
                model_args,
                data_args,
                freeze_args,
                peft_args,
                quant_args,
                script_args,
                training_args,
                data,
            )
    return close_run(run, results, push, f"\nHeld-out results ({results['eval_samples']} reviews):\n{table}\n")


@exit_on_recipe_error
def cli(args=None, defaults=None):
    return main(*parse_args(make_parser_types(), args, defaults))


if __name__ == "__main__":
    cli()
