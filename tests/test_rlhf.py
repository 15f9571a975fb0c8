"""rlhf: the reward model, online RL against it, the KL reference, the comparison, and bad options in one line."""

import json
import os
import shutil

import pytest
import torch

from recipe_utils.evaluation.generation_metrics import distinct_n, stock_phrase_share
from tests.conftest import results_of, run_in_process
from tests.test_dpo import review_pairs, tiny_judge, tiny_policy  # noqa: F401 (fixtures)

RL_TINY = [
    "--config",
    "recipes/configs/rlhf/demo.yaml",
    "--dpo_model",
    "",
    "--block_size",
    "64",
    "--perplexity_texts",
    "40",
    "--num_eval_prompts",
    "16",
    "--max_completion_length",
    "12",
    "--rl_prompts",
    "64",
    "--reward_max_length",
    "64",
    "--reward_epochs",
    "0.5",
    "--logging_steps",
    "2",
    # The tiny GPT-2 trains whole (the demo's LoRA on a chat model is test_a_chat_policy_...'s case).
    "--use_peft",
    "false",
]


@pytest.fixture(scope="module")
def rl_run(tiny_policy, tiny_judge, review_pairs, tmp_path_factory):  # noqa: F811
    """A reward model trained on real positive/negative review pairs, then 20 GRPO steps of a tiny GPT-2 on it."""
    output_dir = str(tmp_path_factory.mktemp("rlhf") / "run")
    result = run_in_process(
        "recipes/rlhf.py",
        *RL_TINY,
        "--model_name_or_path",
        tiny_policy,
        "--judge_model",
        tiny_judge,
        "--dataset_name",
        review_pairs,
        "--max_steps",
        "20",
        "--learning_rate",
        "1e-3",
        "--output_dir",
        output_dir,
    )
    return output_dir, results_of(result, output_dir), result.stdout


def test_the_reward_model_ranks_held_out_pairs_above_chance(rl_run):
    output_dir, results, _ = rl_run
    # 40 held-out pairs: 0.65 is 26 right, which chance (0.5) reaches with probability 0.04.
    assert results["reward_model_pair_accuracy"] >= 0.65, results["reward_model_pair_accuracy"]
    assert results["reward_model_eval_pairs"] == 40
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(
        os.listdir(os.path.join(output_dir, "reward_model"))
    )


def test_a_tiny_rl_run_raises_the_mean_reward_over_its_start(rl_run):
    output_dir, results, _ = rl_run
    with open(os.path.join(output_dir, "log_history.json")) as handle:
        rewards = [entry["reward"] for entry in json.load(handle) if "reward" in entry]
    assert len(rewards) == 10
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3, rewards
    assert results["rl_kl_to_start"] > 0  # it moved away from the start, and the table measures how far


def test_the_comparison_table_and_card_hold_the_run_figures(rl_run):
    from huggingface_hub import ModelCard

    output_dir, results, stdout = rl_run
    with open(os.path.join(output_dir, "comparison.json")) as handle:
        rows = json.load(handle)
    assert set(rows) == {"start", "rl"}  # no DPO policy was given
    assert rows["start"]["kl_to_start"] == pytest.approx(0.0, abs=1e-6)  # the start against itself
    with open(os.path.join(output_dir, "samples.json")) as handle:
        samples = json.load(handle)
    after = [sample["continuation"] for sample in samples["after"]]
    assert rows["rl"]["distinct_2"] == pytest.approx(distinct_n(after, 2))
    assert rows["rl"]["stock_phrase_share"] == pytest.approx(stock_phrase_share(after))
    shares = [sample["judged_positive"] for sample in samples["after"]]
    assert rows["rl"]["positive_share"] == pytest.approx(sum(shares) / len(shares))
    card = ModelCard.load(os.path.join(output_dir, "README.md"))
    assert "| rl |" in card.text and "GRPOTrainer" in card.text and "{{" not in card.text
    assert "| rl |" in stdout


def test_distinct_2_and_stock_phrases_see_a_collapsed_generator():
    varied = [
        "the plot moves fast and the cast is fine",
        "a slow start but a moving final act",
        "two hours of noise with one good scene",
        "my kids laughed while I checked my watch",
    ]
    collapsed = ["a great movie a great movie a great movie", "a great movie a great movie great"]
    assert distinct_n(varied, 2) == 1.0 and distinct_n(collapsed, 2) < 0.5
    assert stock_phrase_share(varied, top=3, share=0.5) == 0.0  # no sample is mostly the common bigrams
    assert stock_phrase_share(collapsed + varied, top=3, share=0.5) == pytest.approx(2 / 6)


@pytest.mark.parametrize("use_peft", [False, True], ids=["full", "lora"])
def test_the_kl_reference_does_not_change_while_the_policy_trains(use_peft, tiny_policy, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes"))
    import rlhf
    from safetensors.torch import load_file
    from trl import GRPOConfig

    from recipe_utils.core.args import ModelArguments
    from recipe_utils.models.adapters import PeftArguments

    model_args = ModelArguments(model_name_or_path=tiny_policy, use_peft=use_peft, lora_target_modules=["c_attn"])
    policy, tokenizer = rlhf.load_policy(model_args)
    args = GRPOConfig(
        output_dir=str(tmp_path), beta=0.1, max_steps=2, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=8, learning_rate=1e-2, use_cpu=True, report_to="none", save_strategy="no",
        gradient_checkpointing=False,
    )  # fmt: skip

    def longer_is_better(prompts, completions, **_):
        return [float(len(completion)) for completion in completions]

    prompts = ["The film was", "I thought the", "This movie is", "The acting in"] * 4
    trainer = rlhf.build_trainer(policy, tokenizer, [longer_is_better], prompts, model_args, PeftArguments(), args)
    trainer.train()
    start = load_file(os.path.join(tiny_policy, "model.safetensors"))
    if use_peft:  # the reference is the policy with its adapter disabled: the base weights themselves
        assert trainer.ref_model is None
        base = {
            k.replace("base_model.model.", "").replace(".base_layer", ""): v
            for k, v in trainer.model.state_dict().items()
            if "lora_" not in k
        }
        trained = [k for k, v in trainer.model.state_dict().items() if "lora_B" in k and v.abs().sum() > 0]
    else:
        base = trainer.ref_model.state_dict()
        trained = [k for k, v in trainer.model.state_dict().items() if k in start and not torch.equal(v, start[k])]
    assert trained, "the policy did not train"
    for name, value in start.items():
        assert torch.equal(base[name], value), name


def test_bad_options_end_in_one_line(tiny_policy, tiny_judge, tmp_path):  # noqa: F811
    no_tokenizer = str(tmp_path / "no_tokenizer")
    shutil.copytree(
        tiny_policy, no_tokenizer, ignore=shutil.ignore_patterns("tokenizer*", "special_tokens*", "vocab*", "merges*")
    )
    common = [*RL_TINY, "--output_dir", str(tmp_path / "run")]
    policy, judged = ["--model_name_or_path", tiny_policy], ["--judge_model", tiny_judge]
    cases = {
        "rlhf needs judge_model": [*policy, "--judge_model", ""],
        "head; a reward model has one output": [*policy, *judged, "--reward_model", tiny_judge],
        "holds no tokenizer files": ["--model_name_or_path", no_tokenizer, *judged],
    }
    for expected, extra in cases.items():
        result = run_in_process("recipes/rlhf.py", *common, *extra)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2 and last.startswith("error: ") and expected in last, (expected, last)
        assert not os.path.exists(tmp_path / "run")  # nothing written
