"""The experiment-tracker runs behind a training run, so its card can link them."""

import os


def tracker_runs(training_args) -> list[dict]:
    """One entry per tracker the Trainer reported to: wandb's run page (or, offline, how to sync it) and the
    TensorBoard log folder. Empty without trackers, and on processes other than the main one."""
    report_to = training_args.report_to or []
    runs = []
    if "wandb" in report_to:
        import wandb

        run = wandb.run
        if run is not None:
            entry = {"tracker": "wandb", "project": run.project, "id": run.id, "url": run.url}
            if not run.url:
                # An offline run has no page yet: `wandb sync` uploads it and prints its address.
                entry["sync"] = f"wandb sync {os.path.dirname(run.dir)}"
            runs.append(entry)
    if "tensorboard" in report_to:
        runs.append({"tracker": "tensorboard", "logdir": os.environ.get("TENSORBOARD_LOGGING_DIR", "runs/")})
    return runs
