"""clm_distilgpt2, dpo_bonus and pretrain_mlm as two CPU processes (accelerate launch, DDP over gloo) with
--overwrite_output_dir --push_to_hub: one writer, one commit; and two processes train as one does."""

import json
import os

import pytest

from tests.conftest import launch, results_of
from tests.many_processes import one_and_two_processes
from tests.test_dpo import DPO_TINY, tiny_judge, tiny_policy  # noqa: F401 (fixtures)
from tests.test_pretrain_mlm import TINY_BERT
from tests.test_resume_and_scale import TINY as TINY_GPT2

RECIPES = {
    "clm_distilgpt2": ("recipes/clm_distilgpt2.py", [*TINY_GPT2, "--max_steps", "4", "--max_eval_samples", "20"]),
    "pretrain_mlm": (
        "recipes/pretrain_mlm.py",
        [
            "--config",
            "recipes/configs/pretrain_mlm/demo.yaml",
            *TINY_BERT,
            "--max_train_samples",
            "200",
            "--max_eval_samples",
            "20",
            "--review_eval_samples",
            "20",
            "--max_steps",
            "3",
        ],
    ),
}


@pytest.mark.parametrize("recipe", [*RECIPES, "dpo_bonus"])
def test_two_processes_write_once_and_publish_once(recipe, tmp_path, local_hub, request):
    if recipe == "dpo_bonus":
        policy, judge = request.getfixturevalue("tiny_policy"), request.getfixturevalue("tiny_judge")
        script = "recipes/dpo_bonus.py"
        args = [*DPO_TINY, "--model_name_or_path", policy, "--judge_model", judge, "--num_prompts", "24"]
        args += ["--min_judge_margin", "0", "--max_steps", "2", "--per_device_train_batch_size", "4"]
    else:
        script, args = RECIPES[recipe]
    one, two, _ = one_and_two_processes(script, args, tmp_path, local_hub, f"tester/ddp-{recipe}")
    # The same held-out set, whole, on both sides (processes share the scoring and gather it).
    if recipe == "dpo_bonus":
        assert two["eval_prompts"] == one["eval_prompts"] == 16 and two["train_pairs"] == one["train_pairs"]
        assert two["before_positive_share"] == one["before_positive_share"]
    else:
        assert two["eval_samples"] == one["eval_samples"]
    if recipe != "pretrain_mlm":
        # Before any training both score the same starting model on the same blocks: gathered, equal. (A WordPiece
        # tokenizer trained from scratch differs from process to process, so pretrain_mlm's blocks differ.)
        assert two["before_perplexity"] == pytest.approx(one["before_perplexity"], rel=1e-5)


def _losses(output_dir):
    with open(os.path.join(output_dir, "log_history.json")) as handle:
        return [entry["loss"] for entry in json.load(handle) if "loss" in entry]


def test_two_cpu_processes_match_one_process_at_the_same_global_batch(tmp_path):
    common = [*TINY_GPT2, "--max_steps", "8", "--logging_steps", "2", "--save_strategy", "no"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    single = launch("recipes/clm_distilgpt2.py", *common, "--per_device_train_batch_size", "8", "--output_dir", one)
    results_of(single, one)
    ddp = launch(
        "recipes/clm_distilgpt2.py",
        *common,
        "--per_device_train_batch_size",
        "4",
        "--output_dir",
        two,
        processes=2,
    )
    assert results_of(ddp, two)["global_batch_size"] == 8
    assert ddp.stdout.count("global batch size: 8 = 4 per device x 1 accumulation x 2 processes") == 1
    # Same samples per step, gradients averaged across processes. Before any update the losses agree to
    # float precision; afterwards within 1%: the all-reduce sums gradients in another order, and Adam turns
    # a rounding-level difference in a near-zero gradient into a full-size step for that weight.
    losses_one, losses_two = _losses(one), _losses(two)
    assert len(losses_two) == len(losses_one) == 4
    assert losses_two[0] == pytest.approx(losses_one[0], rel=1e-5)
    assert losses_two == pytest.approx(losses_one, rel=1e-2)
