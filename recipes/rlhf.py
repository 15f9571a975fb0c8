"""RLHF for the review generator: a reward model (TRL's RewardTrainer), then online RL (TRL's GRPOTrainer) with a
KL penalty to the starting model, compared in one table with the start and the DPO policy of dpo_bonus.

Offline demo: steer the causal LM of clm_distilgpt2 towards positive reviews. The reward model learns, from
on-policy pairs ranked by the sentiment classifier of sft_sentiment, to score a continuation; GRPO then samples
groups of continuations per review opening and pushes up those the reward model scores above their group.
    python recipes/rlhf.py --config recipes/configs/rlhf/demo.yaml

With the Hub (a small instruct model, LoRA, a reward model trained on trl-lib/ultrafeedback_binarized):
    accelerate launch --config_file accelerate_configs/single_gpu.yaml recipes/rlhf.py \
        --config recipes/configs/rlhf/gpu.yaml

Why GRPO rather than RLOO: both are critic-free (the baseline of a sample is the other samples of its prompt, so
no value model to train beside the policy); GRPO is the trainer TRL develops first and its KL penalty (beta)
uses the reference the same way: the policy with its adapter disabled under LoRA, else a frozen copy.
`--reward judge` skips the reward model and rewards with the classifier's P(positive) directly.
"""

import recipe_utils.quiet  # noqa: F401  (first: keeps library import noise off the screen)

# isort: split
import os

import datasets
from transformers import AutoModelForCausalLM, set_seed
from trl import GRPOConfig, GRPOTrainer

from recipe_utils.alignment.judges import independent_judge_of_reviews
from recipe_utils.alignment.policies import (
    PolicyArguments,
    comparison_row,
    generator_report,
    load_judge,
    load_policy,
    recorded_training_time,
    review_text_arguments,
)
from recipe_utils.alignment.preferences import PreferenceArguments, request_prefix, review_openings
from recipe_utils.alignment.rewards import (
    RewardArguments,
    check_reward_model,
    judge_reward,
    load_reward_model,
    reward_model_reward,
    reward_pairs,
    train_reward_model,
)
from recipe_utils.core.args import ModelArguments, OutputArguments, global_batch_size, parse_args
from recipe_utils.core.distributed import main_process_writes, say
from recipe_utils.core.errors import RecipeError, exit_on_recipe_error
from recipe_utils.core.hardware import settle_cpu_precision
from recipe_utils.core.outputs import write_json
from recipe_utils.data.language_modeling import load_lm_texts, tokenize_for_lm
from recipe_utils.evaluation.generation import GenerationArguments
from recipe_utils.models.adapters import (
    PeftArguments,
    check_peft_options,
    leave_the_card_to_the_recipe,
    load_saved_model,
    peft_config,
)
from recipe_utils.models.loading import parameter_counts
from recipe_utils.publishing.cards import write_rlhf_card
from recipe_utils.publishing.hub import take_push_request
from recipe_utils.publishing.report import markdown_table, plot_training_curves
from recipe_utils.publishing.run_folder import claim_output_dir, open_run_folder
from recipe_utils.publishing.run_tail import close_run, save_trained, train_metrics, write_run_records
from recipe_utils.publishing.tracking import tracker_runs


def make_parser_types():
    return [PolicyArguments, PreferenceArguments, RewardArguments, PeftArguments, OutputArguments, GRPOConfig]


def check_rlhf_options(model_args, peft_args, pref_args, reward_args) -> None:
    check_peft_options(model_args, peft_args)
    if peft_args.peft_method not in ("none", "lora"):
        raise RecipeError(f"rlhf trains the full model or a LoRA adapter, not peft_method={peft_args.peft_method}")
    if not pref_args.judge_model:
        raise RecipeError("rlhf needs judge_model: the sentiment classifier that defines and measures the goal")
    check_reward_model(reward_args)


# ---------------------------------------------------------------- online RL
def build_trainer(policy, tokenizer, reward_funcs, prompts, model_args, peft_args, training_args) -> GRPOTrainer:
    """GRPOTrainer on review openings. Its KL reference (beta > 0) is the policy with the adapter disabled under
    LoRA, else a frozen copy of the starting model that GRPOTrainer loads from the policy's own path."""
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=datasets.Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer,
        peft_config=peft_config(model_args, peft_args, "CAUSAL_LM", policy),
    )
    leave_the_card_to_the_recipe(trainer.model)
    return trainer


# ---------------------------------------------------------------- the comparison


def evaluation_sampling(training_args) -> GenerationArguments:
    """Held-out samples are drawn as GRPO drew its training samples, for every row of the table."""
    return GenerationArguments(
        max_new_tokens=training_args.max_completion_length,
        temperature=training_args.temperature,
        top_k=training_args.top_k or 0,
        top_p=training_args.top_p,
        repetition_penalty=training_args.repetition_penalty,
        generation_seed=training_args.seed,
    )


def main(policy_args, pref_args, reward_args, peft_args, output_args, training_args):
    model_args = ModelArguments(**vars(policy_args), trust_remote_code=training_args.trust_remote_code)
    run = claim_output_dir(training_args, output_args.overwrite_output_dir)
    check_rlhf_options(model_args, peft_args, pref_args, reward_args)
    settle_cpu_precision(training_args)
    push = take_push_request(training_args)
    set_seed(training_args.seed)
    device = training_args.device  # every model scored or sampled here sits where training runs
    policy, tokenizer = load_policy(model_args)
    reference, _ = load_policy(model_args)  # the start, for the comparison's KL and row
    policy.to(device), reference.to(device)
    judge = load_judge(pref_args, model_args, device)
    gen_args = evaluation_sampling(training_args)

    # Held-out reviews and openings: the document split clm_distilgpt2 and dpo_bonus make with the same seed.
    review_args = review_text_arguments(pref_args)
    train_texts, held_out, _ = load_lm_texts(review_args, training_args.seed)
    perplexity_texts = held_out.select(range(min(pref_args.perplexity_texts, len(held_out))))
    prefix = request_prefix(tokenizer, pref_args.review_request)
    eval_prompts = review_openings(held_out["text"][len(perplexity_texts) :], pref_args.prompt_words, prefix)
    eval_prompts = eval_prompts[: pref_args.num_eval_prompts]
    blocks = tokenize_for_lm(perplexity_texts, tokenizer, review_args.block_size, True, tokenizer.eos_token_id)
    batch, seed = pref_args.sampling_batch_size, training_args.seed
    independent = independent_judge_of_reviews(
        pref_args.review_dataset, pref_args.judge_model, held_out["text"], pref_args.independent_judge_reviews, seed
    )
    judges = (judge, independent)
    results = {"eval_prompts": len(eval_prompts), "perplexity_blocks": len(blocks), "reward": reward_args.reward}
    rows = {}
    rows["start"], samples_before = generator_report(
        policy, reference, tokenizer, judges, eval_prompts, blocks, gen_args, batch, seed
    )
    rows["start"]["train_runtime_s"] = None

    open_run_folder(run)
    if reward_args.reward == "judge":
        reward_funcs = [judge_reward(judge)]
    else:
        if reward_args.reward_model:
            reward_model, reward_tokenizer = load_reward_model(reward_args.reward_model, device)
        else:
            train_pairs, eval_pairs, source = reward_pairs(
                pref_args, policy, tokenizer, judge, gen_args, train_texts["text"], training_args.seed
            )
            stats, reward_model, reward_tokenizer = train_reward_model(
                reward_args, training_args, train_pairs, eval_pairs, run.path("reward_model")
            )
            results.update(stats, reward_pairs_source=source)
            say(f"reward model: held-out pair accuracy {stats['reward_model_pair_accuracy']:.3f}")
        prefix = request_prefix(tokenizer, pref_args.review_request)
        reward_funcs = [reward_model_reward(reward_model, reward_tokenizer, reward_args.reward_max_length, prefix)]

    # The last openings of the training side: the reward model's pairs came from the first ones.
    rl_prompts = review_openings(train_texts["text"], pref_args.prompt_words, prefix)[-reward_args.rl_prompts :]
    padding_side = tokenizer.padding_side
    trainer = build_trainer(policy, tokenizer, reward_funcs, rl_prompts, model_args, peft_args, training_args)
    results.update(parameter_counts(trainer.model))
    results["global_batch_size"] = global_batch_size(training_args)
    results["rl_prompts"] = len(rl_prompts)
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    results.update(train_metrics(train_result.metrics))
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    results["train_reward_first"], results["train_reward_last"] = (rewards[0], rewards[-1]) if rewards else (None, None)
    results["saved_weights_bytes"] = save_trained(trainer, run)

    # The RL row is the saved policy, reloaded as a user loads it; the DPO row is dpo_bonus's saved policy.
    saved = load_saved_model(AutoModelForCausalLM, run.staging, lambda: load_policy(model_args)[0]).to(device)
    tokenizer.padding_side = padding_side  # GRPO pads prompts on the left; the scoring code expects its own
    rows["rl"], samples_after = generator_report(
        saved, reference, tokenizer, judges, eval_prompts, blocks, gen_args, batch, seed
    )
    rows["rl"]["train_runtime_s"] = results["train_runtime"]
    if reward_args.dpo_model and os.path.isfile(os.path.join(reward_args.dpo_model, "all_results.json")):
        dpo, _ = load_policy(ModelArguments(model_name_or_path=reward_args.dpo_model))
        dpo.to(device)
        rows["dpo"], _ = generator_report(
            dpo, reference, tokenizer, judges, eval_prompts, blocks, gen_args, batch, seed
        )
        rows["dpo"]["train_runtime_s"] = recorded_training_time(reward_args.dpo_model)
    for name, row in rows.items():
        results.update({f"{name}_{key}": value for key, value in row.items()})
    results["positive_share_change"] = rows["rl"]["positive_share"] - rows["start"]["positive_share"]
    if independent is not None:
        change = rows["rl"]["positive_share_independent"] - rows["start"]["positive_share_independent"]
        results["positive_share_independent_change"] = change
    results["perplexity_change"] = rows["rl"]["perplexity"] / rows["start"]["perplexity"] - 1
    results["distinct_2_ratio"] = rows["rl"]["distinct_2"] / rows["start"]["distinct_2"]
    results["tracker_runs"] = tracker_runs(training_args)
    table = markdown_table([comparison_row(name, row) for name, row in rows.items()])

    with main_process_writes() as writer:
        if writer:
            write_run_records(
                run, trainer.state.log_history, policy_args, pref_args, reward_args, peft_args, training_args
            )
            write_json(run.path("samples.json"), {"before": samples_before, "after": samples_after})
            write_json(run.path("comparison.json"), rows)
            plot_training_curves(trainer.state.log_history, run.path("training_curves.png"), metrics=("reward", "kl"))
            write_rlhf_card(
                run,
                results,
                table,
                samples_before,
                samples_after,
                model_args,
                pref_args,
                reward_args,
                peft_args,
                training_args,
            )
    return close_run(run, results, push, f"\nOn {len(eval_prompts)} held-out openings:\n{table}\n")


@exit_on_recipe_error
def cli(args=None, defaults=None):
    return main(*parse_args(make_parser_types(), args, defaults))


if __name__ == "__main__":
    cli()
