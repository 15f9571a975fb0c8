"""Resume after SIGKILL equals an uninterrupted run; a run killed while overwriting leaves the old run or the new.

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

from recipe_utils.core.errors import RecipeError
from recipe_utils.publishing.run_folder import claim_output_dir, staging_path
from tests.conftest import ROOT, run_in_process

# No dropout: a run split over two processes draws other dropout masks than one process would.
TINY = [
    "--config",
    "recipes/configs/clm_distilgpt2/gpt2_demo.yaml",
    "--model_type",
    "gpt2",
    "--config_overrides",
    "n_layer=2,n_head=2,n_embd=64,n_positions=128,resid_pdrop=0,embd_pdrop=0,attn_pdrop=0",
    "--tokenizer_vocab_size",
    "1000",
    "--max_length",
    "64",
    "--max_train_samples",
    "300",
    "--max_eval_samples",
    "40",
    "--perplexity_reviews",
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

    staging = tmp_path / "run.staging"
    for step, complete in ((3, True), (6, True), (9, False)):
        folder = staging / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    args = SimpleNamespace(resume_from_checkpoint="latest", output_dir=str(tmp_path / "run"))
    run = claim_output_dir(args, overwrite=False)
    assert args.resume_from_checkpoint == str(staging / "checkpoint-6") and run.resuming_in_staging
    assert args.output_dir == str(staging)  # the resumed run goes on writing beside output_dir
    with pytest.raises(RecipeError, match="incomplete checkpoint"):
        claim_output_dir(SimpleNamespace(resume_from_checkpoint=str(staging / "checkpoint-9"), output_dir="x"), False)
    with pytest.raises(RecipeError, match="no complete checkpoint"):
        claim_output_dir(SimpleNamespace(resume_from_checkpoint="latest", output_dir=str(tmp_path / "empty")), False)
    # A new run over an unfinished one must say whether to continue it or start over; so must one over another
    # run's checkpoints in output_dir itself.
    with pytest.raises(RecipeError, match="--resume_from_checkpoint latest"):
        claim_output_dir(SimpleNamespace(resume_from_checkpoint=None, output_dir=str(tmp_path / "run")), False)
    (tmp_path / "other" / "checkpoint-3").mkdir(parents=True)
    with pytest.raises(RecipeError, match="not empty.*--resume_from_checkpoint"):
        claim_output_dir(SimpleNamespace(resume_from_checkpoint=None, output_dir=str(tmp_path / "other")), False)
    assert os.listdir(tmp_path / "other") == ["checkpoint-3"]


def kill_after_checkpoint(output_dir: str, step: int, delay: float = 0.0, timeout: float = 600) -> int:
    """Start the tiny run, SIGKILL it `delay` seconds after checkpoint-`step` is complete (mid-step or
    mid-save); returns the newest checkpoint folder it left, complete or not."""
    command = [sys.executable, os.path.join(ROOT, "recipes/clm_distilgpt2.py"), *CHECKPOINTED]
    env = {**os.environ, "PYTHONPATH": ROOT}
    process = subprocess.Popen(
        [*command, "--output_dir", output_dir], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    marker = os.path.join(staging_path(output_dir), f"checkpoint-{step}", "trainer_state.json")
    deadline = time.time() + timeout
    while not os.path.exists(marker) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not os.path.exists(os.path.join(output_dir, "all_results.json")), "the run finished before the kill"
    staging = staging_path(output_dir)
    return max(int(name.split("-")[1]) for name in os.listdir(staging) if name.startswith("checkpoint-"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("resume") / "straight")
    result = run_in_process("recipes/clm_distilgpt2.py", *CHECKPOINTED, "--output_dir", output_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return (*_final_state(output_dir), output_dir)


def test_a_killed_run_resumed_from_latest_ends_equal_to_an_uninterrupted_one(uninterrupted, tmp_path):
    output_dir = str(tmp_path / "killed")
    kill_after_checkpoint(output_dir, step=6)
    resumed = run_in_process(
        "recipes/clm_distilgpt2.py", *CHECKPOINTED, "--output_dir", output_dir, "--resume_from_checkpoint", "latest"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    weights, results = _final_state(output_dir)
    expected_weights, expected_results, _ = uninterrupted
    assert weights.keys() == expected_weights.keys()
    assert all((weights[name] == expected_weights[name]).all() for name in weights)
    assert results["perplexity"] == expected_results["perplexity"]


def _digests(folder: str) -> dict:
    import hashlib

    digests = {}
    for root, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), "rb") as handle:
                digests[os.path.relpath(os.path.join(root, name), folder)] = hashlib.sha256(handle.read()).hexdigest()
    return digests


def test_a_run_killed_while_overwriting_leaves_the_old_run_or_the_new_one_byte_for_byte(uninterrupted, tmp_path):
    import shutil

    # The old run is a finished copy of the uninterrupted one; the new run repeats it, so its weights are known.
    *_, straight = uninterrupted
    output_dir, pristine = str(tmp_path / "run"), str(tmp_path / "pristine")
    shutil.copytree(straight, pristine)
    shutil.copytree(straight, output_dir)
    old_digests = _digests(output_dir)
    new_files, new_weights = set(old_digests), old_digests["model.safetensors"]

    staging = staging_path(output_dir)
    # Kill points from start-up to the swap: with the staging folder fresh, mid-training once a checkpoint is
    # written there, and once all_results.json (the last file before the swap) is.
    markers = [staging, f"{staging}/checkpoint-6/trainer_state.json", f"{staging}/all_results.json"]
    outcomes = []
    command = [sys.executable, os.path.join(ROOT, "recipes/clm_distilgpt2.py"), *CHECKPOINTED]
    for marker in markers:
        process = subprocess.Popen(
            [*command, "--output_dir", output_dir, "--overwrite_output_dir"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 600
        while not os.path.exists(marker) and process.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        now = _digests(output_dir)
        if now == old_digests:
            outcomes.append("old")
            continue
        # Not the old run: then the new one, complete (its results differ from the old run's in run times only).
        assert set(now) == new_files, f"killed at {marker}: {sorted(set(now) ^ new_files)}"
        assert now["model.safetensors"] == new_weights, f"killed at {marker}: other weights"
        outcomes.append("new")
        shutil.rmtree(output_dir)
        shutil.copytree(pristine, output_dir)
        old_digests = _digests(output_dir)
    assert outcomes[:2] == ["old", "old"], outcomes  # killed before the swap: the old run, whole
