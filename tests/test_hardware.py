from types import SimpleNamespace

import torch

from recipe_utils.core import hardware


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


PEAK_CHECK = """
import numpy as np
from recipe_utils.core import hardware

hardware.reset_peak_memory()
start = hardware.peak_memory_mb()
block = np.ones(50_000_000)  # 400 MB, touched
grown = hardware.peak_memory_mb() - start
del block
hardware.reset_peak_memory()
print(grown, hardware.peak_memory_mb() - start)
"""


def test_peak_memory_sees_a_large_allocation_and_a_reset_forgets_it():
    # In a fresh interpreter: this test process's allocator holds freed memory from the recipe runs done in it,
    # which a new allocation may reuse without the process growing.
    import subprocess
    import sys

    from tests.conftest import ROOT

    checked = subprocess.run(
        [sys.executable, "-c", PEAK_CHECK], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    grown, after_reset = map(float, checked.stdout.split())
    assert grown > 300 and after_reset < 100, checked.stdout
