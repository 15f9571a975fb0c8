"""Where a run writes, and how its folder replaces an older one only when it is complete.

A run never writes into its output_dir. It works in a staging folder beside it (`<output_dir>.staging`:
checkpoints, weights, card, plots, JSON) and, once all_results.json is written there, swaps it in with one
atomic rename (Linux: renameat2 RENAME_EXCHANGE). So a run killed at any point, even with
--overwrite_output_dir, leaves output_dir as it was (the old complete run, or nothing) or holding the new
complete run; never empty, never half-written. --resume_from_checkpoint latest looks in the staging folder
first, where a killed run left its checkpoints.

Under several processes the main process alone creates, clears and swaps folders; the others wait.
"""

import ctypes
import os
import re
import shutil
from dataclasses import dataclass

from recipe_utils.core.distributed import join_processes, main_process_writes, say
from recipe_utils.core.errors import RecipeError
from recipe_utils.core.outputs import write_json

# Unprefixed held-out figures some recipes report (perplexity as in transformers' run_clm.py).
UNPREFIXED_EVAL_KEYS = ("perplexity", "review_perplexity", "positive_share")


@dataclass
class RunFolder:
    final: str  # output_dir as the user named it: holds only complete runs
    staging: str  # where this run writes until it is complete
    resuming_in_staging: bool = False

    def path(self, *parts: str) -> str:
        return os.path.join(self.staging, *parts)


def staging_path(output_dir: str) -> str:
    return os.path.normpath(output_dir) + ".staging"


def _complete_checkpoints(folder: str) -> list[str]:
    """checkpoint-N folders holding trainer_state.json, which the Trainer writes last in a checkpoint."""
    if not os.path.isdir(folder):
        return []
    names = [name for name in os.listdir(folder) if re.fullmatch(r"checkpoint-\d+", name)]
    paths = [os.path.join(folder, name) for name in names]
    return sorted(
        (path for path in paths if os.path.isfile(os.path.join(path, "trainer_state.json"))),
        key=lambda path: int(path.rsplit("-", 1)[1]),
    )


def claim_output_dir(training_args, overwrite: bool) -> RunFolder:
    """Check output_dir against the flags, resolve --resume_from_checkpoint, and point the Trainer at the
    staging folder. Touches nothing on disk: a run that fails on bad input later leaves no trace.
    Under several processes this is where they first meet (the process group starts here)."""
    join_processes(training_args)
    final = os.path.normpath(training_args.output_dir)
    staging = staging_path(final)
    if os.path.exists(final) and not os.path.isdir(final):
        raise RecipeError(f"output_dir {final} is a file, not a folder")
    resume = training_args.resume_from_checkpoint
    if not resume:
        if os.path.isdir(final) and os.listdir(final) and not overwrite:
            raise RecipeError(
                f"output_dir {final} is not empty; pass --overwrite_output_dir to replace it, "
                "or --resume_from_checkpoint to continue its run"
            )
        if _complete_checkpoints(staging) and not _is_complete(staging) and not overwrite:
            raise RecipeError(
                f"an unfinished run of {final} left checkpoints in {staging}; pass --resume_from_checkpoint latest "
                "to continue it, or --overwrite_output_dir to start over"
            )
    elif resume in ("latest", "last", "True", "true"):
        candidates = [path for path in _complete_checkpoints(staging) if not _is_complete(staging)]
        candidates = candidates or _complete_checkpoints(final)
        if not candidates:
            raise RecipeError(f"no complete checkpoint in {staging} or {final} to resume from")
        training_args.resume_from_checkpoint = candidates[-1]
        say(f"resuming from {training_args.resume_from_checkpoint}")
    elif not os.path.isdir(resume):
        raise RecipeError(f"checkpoint folder not found: {resume}")
    elif not os.path.isfile(os.path.join(resume, "trainer_state.json")):
        raise RecipeError(f"{resume} is an incomplete checkpoint (no trainer_state.json): it was cut off while saving")
    resume = training_args.resume_from_checkpoint
    inside_staging = bool(resume) and os.path.abspath(resume).startswith(os.path.abspath(staging) + os.sep)
    training_args.output_dir = staging
    return RunFolder(final=final, staging=staging, resuming_in_staging=inside_staging)


def _is_complete(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "all_results.json"))


def open_run_folder(run: RunFolder) -> None:
    """Create an empty staging folder (keeping it when resuming from its own checkpoint). All processes call
    this; the main one writes."""
    with main_process_writes() as writer:
        if writer:
            _remove(run.final + ".replaced")  # left by a swap killed while deleting the old run
            if os.path.isdir(run.staging) and not run.resuming_in_staging:
                _remove(run.staging)
            os.makedirs(run.staging, exist_ok=True)


def finish_run(run: RunFolder, results: dict) -> None:
    """Write the Trainer-style result files, all_results.json last, and swap the complete folder in.

    train_results.json and eval_results.json are what transformers' example scripts write; all_results.json
    marks a complete folder (recipes/push.py refuses one without it).
    """
    with main_process_writes() as writer:
        if writer:
            train = {key: value for key, value in results.items() if key.startswith("train_")}
            held_out = {
                key: value for key, value in results.items() if key.startswith("eval_") or key in UNPREFIXED_EVAL_KEYS
            }
            write_json(run.path("train_results.json"), train)
            write_json(run.path("eval_results.json"), held_out)
            write_json(run.path("all_results.json"), results)
            swap_in(run.staging, run.final)


def swap_in(staging: str, final: str) -> None:
    """Make `staging` the folder at `final` in one atomic step, then delete what `final` held."""
    if not os.path.exists(final):
        os.rename(staging, final)
        return
    if _exchange(staging, final):
        # `staging` now holds the old run: out of the way under a name the next run cleans up, then deleted.
        os.rename(staging, final + ".replaced")
    else:  # no renameat2 (not Linux): two renames, with a moment in which final is missing
        os.rename(final, final + ".replaced")
        os.rename(staging, final)
    _remove(final + ".replaced")


def _exchange(first: str, second: str) -> bool:
    """Swap two paths atomically with renameat2(RENAME_EXCHANGE); False where the call is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange)
    if result != 0:
        errno = ctypes.get_errno()
        if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem or kernel cannot exchange
            return False
        raise OSError(errno, os.strerror(errno), first)
    return True


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
