"""Hyperparameter search for the sentiment classifier: optuna through Trainer.hyperparameter_search, scored on a
validation split carved from the training reviews (never the held-out ones)."""

import dataclasses
import shutil
import tempfile

from transformers import DataCollatorWithPadding, Trainer

from recipe_utils.core.distributed import say
from recipe_utils.evaluation.metrics import compute_metrics


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
