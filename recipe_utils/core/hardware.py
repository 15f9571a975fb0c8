"""Precision choices that depend on the machine a run lands on."""

import torch

from recipe_utils.core.distributed import say


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 matmuls in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; elsewhere what platform knows)."""
    import platform

    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def machine_description() -> str:
    """The CPU (or GPU) a speed was measured on, with the instruction set that decides its precision."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    kind = "AVX512-BF16" if cpu_has_native_bf16() else "no native bf16"
    return f"{cpu_name()}, {kind}, {torch.get_num_threads()} threads"


def settle_cpu_precision(training_args) -> None:
    """Keep bf16 autocast on a CPU run only where the CPU has bf16 instructions.

    Measured on a 2-core AMD EPYC with AVX512-BF16: a MiniLM training step at 256 tokens takes
    2.1 s in bf16 against 2.5 s in fp32. On CPUs without it, bf16 matmuls run about 6x slower
    than fp32, so a CPU config that asks for bf16 falls back to fp32 there, and says so.
    """
    on_cpu = training_args.use_cpu or not torch.cuda.is_available()
    if training_args.bf16 and on_cpu and not cpu_has_native_bf16():
        say("note: this CPU has no native bf16; training in fp32 instead of bf16 autocast")
        training_args.bf16 = False
        # TrainingArguments copied bf16 into mixed_precision when it was built, and the Trainer's
        # Accelerator reads that copy: without this it would still autocast to bf16.
        training_args.mixed_precision = "no"


def reset_peak_memory() -> None:
    """Start a new peak-memory window (so training's peak is not the data preparation's or a baseline's)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        # Linux: writing 5 to clear_refs resets the process's peak resident set size (VmHWM).
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_memory_mb() -> float:
    """Peak memory since the last reset: GPU memory allocated by torch on CUDA, resident set size on CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    # ru_maxrss (KiB on Linux) never resets: the peak of the whole process.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
