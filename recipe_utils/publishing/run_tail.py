"""The end of every training run, written once: the trained model saved into the staging folder (every process
calls the Trainer's save, one writes), the run's records, then the folder swapped in whole and published once."""

from recipe_utils.core.distributed import is_main_process, main_process_writes, say, wait_for_everyone
from recipe_utils.core.outputs import remove_pickled_training_args, resolved_config, write_json
from recipe_utils.models.adapters import folder_size_bytes
from recipe_utils.publishing.hub import publish
from recipe_utils.publishing.run_folder import finish_run


def train_metrics(metrics: dict) -> dict:
    """The Trainer's train() metrics, each under a train_ name."""
    return {key if key.startswith("train_") else f"train_{key}": value for key, value in metrics.items()}


def save_trained(trainer, run) -> int:
    """The Trainer's model and state into staging (every process calls save_model: FSDP and DeepSpeed gather the
    weights; one writes), without the pickled training arguments; returns the saved folder's size in bytes."""
    trainer.save_model(run.staging)
    trainer.save_state()
    with main_process_writes() as writer:
        if writer:
            remove_pickled_training_args(run.staging)
    return folder_size_bytes(run.staging)


def write_run_records(run, log_history: list[dict], *arguments) -> None:
    """log_history.json and run_config.json (the resolved arguments, secrets left out); call it as the writer."""
    write_json(run.path("log_history.json"), log_history)
    write_json(run.path("run_config.json"), resolved_config(*arguments))


def close_run(run, results: dict, push, summary: str = "") -> dict:
    """all_results.json last and the folder swapped in, the summary printed once, published by the main process
    when asked, every process leaving together."""
    finish_run(run, results)
    say(f"{summary}\nSaved to {run.final}" if summary else f"Saved to {run.final}")
    if push and is_main_process():
        publish(run.final, push)
    wait_for_everyone()
    return results
