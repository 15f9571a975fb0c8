"""The benchmark's FLOP formulas against PyTorch's own FLOP counter on a real forward and backward pass."""

import importlib.util
import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from recipe_utils.models import apply_freezing, load_classifier
from tests.conftest import ROOT
from tests.test_models import MINILM


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", os.path.join(ROOT, "bench", "bench.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("unfreeze_top_k", [None, 4])
def test_forward_and_training_flops_match_pytorchs_flop_counter(bench, unfreeze_top_k):
    # Eager attention: its matmuls are ones the counter sees (it skips the CPU's fused attention kernel).
    model = load_classifier(MINILM, ["negative", "positive"], attn_implementation="eager").eval()
    if unfreeze_top_k:  # the demo's freezing: the backward pass stops at the lowest trained layer
        apply_freezing(model, "top_k", unfreeze_top_k)
    lengths = [96, 96]
    inputs = torch.randint(1000, 20000, (len(lengths), lengths[0]))
    with FlopCounterMode(display=False) as forward_count:
        logits = model(input_ids=inputs).logits
    with FlopCounterMode(display=False) as backward_count:
        logits.sum().backward()
    counted_forward = forward_count.get_total_flops()
    counted_training = counted_forward + backward_count.get_total_flops()
    assert bench.forward_flops(model, lengths) == pytest.approx(counted_forward, rel=0.03)
    assert bench.training_flops(model, lengths) == pytest.approx(counted_training, rel=0.03)
