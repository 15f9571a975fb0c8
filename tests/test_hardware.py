from types import SimpleNamespace

import torch

from recipe_utils import hardware


def test_bf16_falls_back_to_fp32_on_a_cpu_without_bf16_instructions(monkeypatch, capsys, tmp_path):
    from transformers import Trainer, TrainingArguments

    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    args = TrainingArguments(output_dir=str(tmp_path), bf16=True, use_cpu=True, report_to="none")
    hardware.settle_cpu_precision(args)
    assert args.bf16 is False and "no native bf16" in capsys.readouterr().out
    # The Trainer's Accelerator must not autocast either (it reads mixed_precision, not bf16).
    trainer = Trainer(model=torch.nn.Linear(2, 2), args=args)
    assert trainer.accelerator.mixed_precision == "no"


def test_bf16_is_kept_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    args = SimpleNamespace(bf16=True, use_cpu=True)
    hardware.settle_cpu_precision(args)
    assert args.bf16 is True


def test_peak_memory_sees_a_large_allocation_and_a_reset_forgets_it():
    import numpy as np

    hardware.reset_peak_memory()
    start = hardware.peak_memory_mb()
    block = np.ones(50_000_000)  # 400 MB, touched
    assert hardware.peak_memory_mb() > start + 300
    del block
    hardware.reset_peak_memory()
    assert hardware.peak_memory_mb() < start + 100
