"""Run one recipe with every model's forward passes watched: which model ran on which device, with its inputs where.

    python bench/device_probe.py recipes/sft_sentiment.py --config ... (or under accelerate launch)

Every call of a transformers model (PreTrainedModel.__call__, wrapped here) is seen: each top-level model the
recipe scores, samples or trains with, inside or outside a Trainer, with the devices of its weights and of the
tensors it was given. At exit each process writes what it saw to $DEVICE_PROBE_DIR/rank<N>.json for
bench/gpu_check.py.
"""

import atexit
import json
import os
import runpy
import sys

import torch
from transformers import PreTrainedModel

SEEN: dict[str, dict] = {}


def _devices(value) -> set[str]:
    from torch.utils._pytree import tree_leaves

    return {str(leaf.device) for leaf in tree_leaves(value) if isinstance(leaf, torch.Tensor)}


def record(module, args, kwargs):
    if not isinstance(module, PreTrainedModel) or getattr(module, "_probe_inside", False):
        return
    name = f"{type(module).__name__} ({getattr(module.config, '_name_or_path', '') or 'built here'})"
    entry = SEEN.setdefault(name, {"weights": set(), "inputs": set(), "calls": 0})
    entry["weights"] |= {str(p.device) for p in module.parameters()}
    entry["inputs"] |= _devices((args, kwargs))
    entry["calls"] += 1
    for child in module.modules():  # a model's inner PreTrainedModel (the encoder of a classifier) is the same model
        if child is not module and isinstance(child, PreTrainedModel):
            child._probe_inside = True


def write() -> None:
    folder = os.environ.get("DEVICE_PROBE_DIR")
    if not folder:
        return
    rank = int(os.environ.get("RANK", "0"))
    with open(os.path.join(folder, f"rank{rank}.json"), "w", encoding="utf-8") as handle:
        seen = {name: {**v, "weights": sorted(v["weights"]), "inputs": sorted(v["inputs"])} for name, v in SEEN.items()}
        json.dump(seen, handle)


if __name__ == "__main__":
    call = torch.nn.Module.__call__

    def probed_call(self, *args, **kwargs):
        record(self, args, kwargs)
        return call(self, *args, **kwargs)

    PreTrainedModel.__call__ = probed_call
    atexit.register(write)
    script, sys.argv = sys.argv[1], sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
