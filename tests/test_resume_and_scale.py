"""Resume after SIGKILL equals an uninterrupted run; two CPU processes (DDP over gloo) match one process.

Both use the causal-LM recipe with a tiny GPT-2 built from scratch on real reviews: seconds per run.
bench/resume_trials.py repeats the kill-and-resume trial at random steps (make resume_trials).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from recipe_utils.errors import RecipeError
from recipe_utils.outputs import resolve_resume
from tests.conftest import ROOT, run_script

# No dropout: a run split over two processes draws other dropout masks than one process would.
TINY = [
    "--config",
    "recipes/configs/clm_distilgpt2/demo.yaml",
    "--model_type",
    "gpt2",
    "--config_overrides",
    "n_layer=2,n_head=2,n_embd=64,n_positions=128,resid_pdrop=0,embd_pdrop=0,attn_pdrop=0",
    "--tokenizer_vocab_size",
    "1000",
    "--block_size",
    "64",
    "--max_train_samples",
    "300",
    "--max_eval_samples",
    "40",
    "--max_new_tokens",
    "4",
    "--learning_rate",
    "3e-3",
    "--bf16",
    "false",
]
CHECKPOINTED = [*TINY, "--max_steps", "12", "--save_strategy", "steps", "--save_steps", "3", "--logging_steps", "3"]


def _final_state(output_dir):
    with open(os.path.join(output_dir, "all_results.json")) as handle:
        results = json.load(handle)
    return load_file(os.path.join(output_dir, "model.safetensors")), results


def test_latest_skips_a_checkpoint_that_was_cut_off_while_saving(tmp_path):
    from types import SimpleNamespace

    for step, complete in ((3, True), (6, True), (9, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    args = SimpleNamespace(resume_from_checkpoint="latest", output_dir=str(tmp_path))
    resolve_resume(args)
    assert args.resume_from_checkpoint == str(tmp_path / "checkpoint-6")
    with pytest.raises(RecipeError, match="incomplete checkpoint"):
        resolve_resume(SimpleNamespace(resume_from_checkpoint=str(tmp_path / "checkpoint-9"), output_dir="x"))
    with pytest.raises(RecipeError, match="no complete checkpoint"):
        resolve_resume(SimpleNamespace(resume_from_checkpoint="latest", output_dir=str(tmp_path / "empty")))


def kill_after_checkpoint(output_dir: str, step: int, delay: float = 0.0, timeout: float = 600) -> int:
    """Start the tiny run, SIGKILL it `delay` seconds after checkpoint-`step` is complete (mid-step or
    mid-save); returns the newest checkpoint folder it left, complete or not."""
    command = [sys.executable, os.path.join(ROOT, "recipes/clm_distilgpt2.py"), *CHECKPOINTED]
    env = {**os.environ, "PYTHONPATH": ROOT}
    process = subprocess.Popen(
        [*command, "--output_dir", output_dir], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    marker = os.path.join(output_dir, f"checkpoint-{step}", "trainer_state.json")
    deadline = time.time() + timeout
    while not os.path.exists(marker) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not os.path.exists(os.path.join(output_dir, "all_results.json")), "the run finished before the kill"
    return max(int(name.split("-")[1]) for name in os.listdir(output_dir) if name.startswith("checkpoint-"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("resume") / "straight")
    result = run_script("recipes/clm_distilgpt2.py", *CHECKPOINTED, "--output_dir", output_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return _final_state(output_dir)


def test_a_killed_run_resumed_from_latest_ends_equal_to_an_uninterrupted_one(uninterrupted, tmp_path):
    output_dir = str(tmp_path / "killed")
    kill_after_checkpoint(output_dir, step=6)
    resumed = run_script(
        "recipes/clm_distilgpt2.py", *CHECKPOINTED, "--output_dir", output_dir, "--resume_from_checkpoint", "latest"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    weights, results = _final_state(output_dir)
    expected_weights, expected_results = uninterrupted
    assert weights.keys() == expected_weights.keys()
    assert all((weights[name] == expected_weights[name]).all() for name in weights)
    assert results["perplexity"] == expected_results["perplexity"]


def test_starting_over_another_runs_checkpoints_needs_resume_or_overwrite(uninterrupted, tmp_path):
    output_dir = tmp_path / "other"
    (output_dir / "checkpoint-3").mkdir(parents=True)
    result = run_script("recipes/clm_distilgpt2.py", *CHECKPOINTED, "--output_dir", str(output_dir))
    assert result.returncode == 2 and "--resume_from_checkpoint" in result.stderr
    assert os.listdir(output_dir) == ["checkpoint-3"]


def _losses(output_dir):
    with open(os.path.join(output_dir, "log_history.json")) as handle:
        return [entry["loss"] for entry in json.load(handle) if "loss" in entry]


def test_two_cpu_processes_match_one_process_at_the_same_global_batch(tmp_path):
    common = [*TINY, "--max_steps", "8", "--logging_steps", "2", "--save_strategy", "no"]
    one = str(tmp_path / "one")
    single = run_script("recipes/clm_distilgpt2.py", *common, "--per_device_train_batch_size", "8", "--output_dir", one)
    assert single.returncode == 0, single.stderr[-3000:]

    two = str(tmp_path / "two")
    launch = [
        os.path.join(os.path.dirname(sys.executable), "accelerate"),
        "launch",
        "--config_file",
        os.path.join(ROOT, "accelerate_configs", "cpu_ddp.yaml"),
        "--num_cpu_threads_per_process",
        "1",
        os.path.join(ROOT, "recipes", "clm_distilgpt2.py"),
    ]
    env = {**os.environ, "PYTHONPATH": ROOT, "CUDA_VISIBLE_DEVICES": ""}
    ddp = subprocess.run(
        [*launch, *common, "--per_device_train_batch_size", "4", "--output_dir", two, "--use_cpu", "true"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "global batch size: 8 = 4 per device x 1 accumulation x 2 processes" in ddp.stdout
    with open(os.path.join(two, "all_results.json")) as handle:
        assert json.load(handle)["global_batch_size"] == 8
    # Same samples per step, gradients averaged across processes. Before any update the losses agree to
    # float precision; afterwards within 1%: the all-reduce sums gradients in another order, and Adam turns
    # a rounding-level difference in a near-zero gradient into a full-size step for that weight.
    losses_one, losses_two = _losses(one), _losses(two)
    assert len(losses_two) == len(losses_one) == 4
    assert losses_two[0] == pytest.approx(losses_one[0], rel=1e-5)
    assert losses_two == pytest.approx(losses_one, rel=1e-2)
