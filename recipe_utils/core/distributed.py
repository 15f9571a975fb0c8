"""One writer under `accelerate launch`: which process is the main one, barriers, messages printed once,
and evaluation shared across processes.

Every recipe runs with one process or many (one per GPU, or two CPU processes over gloo). Training is the
Trainer's business; everything else a recipe does to the filesystem or the Hub happens on the main process
while the others wait at `wait_for_everyone()`, and result lines print once. Once the process group is up (the
Trainer's arguments start it: `join_processes`), every step goes through accelerate's own state and functions
(PartialState, gather_object, broadcast_object_list); before it, or with one process, nothing needs them.
"""

import contextlib
import os

import torch


def join_processes(training_args) -> None:
    """Start the process group now (the Trainer would, later), so barriers and broadcasts work from the start
    of a run launched on several processes; nothing happens with one."""
    if world_size() > 1:
        _ = training_args.device


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def _distributed() -> bool:
    return world_size() > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    if _distributed():
        from accelerate import PartialState

        return PartialState().process_index
    return int(os.environ.get("RANK", 0))


def is_main_process() -> bool:
    return rank() == 0


def wait_for_everyone() -> None:
    """A barrier across processes (nothing with one process)."""
    if _distributed():
        from accelerate import PartialState

        PartialState().wait_for_everyone()


@contextlib.contextmanager
def main_process_writes():
    """Run the block on the main process only; every process leaves it together, after the writes are done.

    The block's body is skipped on the others: `with main_process_writes() as writer: if writer: ...`.
    """
    try:
        yield is_main_process()
    finally:
        wait_for_everyone()


def say(message: str) -> None:
    """Print once per run, from the main process."""
    if is_main_process():
        print(message, flush=True)


def shard(count: int) -> range:
    """The rows this process scores when `count` rows are shared out round-robin."""
    return range(rank(), count, world_size())


def gather_rows(values: list, count: int) -> list:
    """Reassemble per-row results of `shard(count)` from every process into one list in row order."""
    if not _distributed():
        return values
    from accelerate.utils import gather_object

    flat = gather_object(list(values))  # every process's rows, process after process
    rows, start = [None] * count, 0
    for process in range(world_size()):
        taken = len(range(process, count, world_size()))
        rows[process :: world_size()] = flat[start : start + taken]
        start += taken
    return rows


def from_main_process(make):
    """`make()` on the main process, its result sent to every other one: for what is not reproducible from
    process to process (a tokenizer trained here breaks ties between equally frequent merges by hash order)."""
    if not _distributed():
        return make()
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([make() if is_main_process() else None], from_process=0)[0]
