"""Direct preference optimisation (TRL's DPOTrainer) of a review generator, judged by the sentiment model.

Offline demo: steer the causal LM of clm_distilgpt2 towards positive reviews. Pairs are built on-policy:
the policy continues held-apart review openings several times, the sentiment classifier of sft_sentiment
ranks the samples, and the most positive and most negative continuation of each opening form a pair.
    python recipes/dpo_bonus.py --config recipes/configs/dpo_bonus/demo.yaml

With the Hub (a small instruct model, LoRA, trl-lib/ultrafeedback_binarized):
    accelerate launch --config_file accelerate_configs/single_gpu.yaml recipes/dpo_bonus.py \
        --config recipes/configs/dpo_bonus/gpu.yaml

The reference model: with LoRA, the policy itself with the adapter disabled (no second copy); a starting
checkpoint that is itself an adapter is merged first, so adapters never stack. Without PEFT, a frozen copy.
"""

import recipe_utils.quiet  # noqa: F401  (first: keeps library import noise off the screen)

# isort: split
import numpy as np
from transformers import AutoModelForCausalLM, set_seed
from trl import DPOConfig, DPOTrainer

from recipe_utils.alignment.judges import independent_judge_of_reviews
from recipe_utils.alignment.policies import (
    PolicyArguments,
    judged_generation_report,
    judged_shares,
    load_judge,
    load_policy,
    review_text_arguments,
)
from recipe_utils.alignment.preferences import (
    PreferenceArguments,
    judged_on_policy_pairs,
    load_preference_dataset,
    request_prefix,
    review_openings,
)
from recipe_utils.core.args import (
    ModelArguments,
    OutputArguments,
    global_batch_size,
    parse_args,
)
from recipe_utils.core.distributed import main_process_writes, say
from recipe_utils.core.errors import RecipeError, exit_on_recipe_error
from recipe_utils.core.hardware import settle_cpu_precision
from recipe_utils.core.outputs import write_json
from recipe_utils.data.language_modeling import held_out_perplexity, load_lm_texts, pad_with_eos, tokenize_for_lm
from recipe_utils.evaluation.generation import GenerationArguments
from recipe_utils.evaluation.generation_metrics import distinct_n
from recipe_utils.models.adapters import (
    PeftArguments,
    check_peft_options,
    leave_the_card_to_the_recipe,
    load_saved_model,
    peft_config,
)
from recipe_utils.models.loading import parameter_counts
from recipe_utils.publishing.cards import write_dpo_card
from recipe_utils.publishing.hub import take_push_request
from recipe_utils.publishing.report import plot_training_curves
from recipe_utils.publishing.run_folder import claim_output_dir, open_run_folder
from recipe_utils.publishing.run_tail import close_run, save_trained, train_metrics, write_run_records
from recipe_utils.publishing.tracking import tracker_runs


def make_parser_types():
    return [
        PolicyArguments,
        PreferenceArguments,
        GenerationArguments,
        PeftArguments,
        OutputArguments,
        DPOConfig,
    ]


def check_dpo_options(model_args, peft_args) -> None:
    check_peft_options(model_args, peft_args)
    if peft_args.peft_method not in ("none", "lora"):
        raise RecipeError(f"dpo_bonus trains the full model or a LoRA adapter, not peft_method={peft_args.peft_method}")


def build_trainer(model, tokenizer, training_args, peft_args, train_pairs, eval_pairs, model_args):
    """DPOTrainer with the reference the issue asks for: adapter disabled under LoRA, else a frozen copy."""
    adapter_config = peft_config(model_args, peft_args, "CAUSAL_LM", model)
    reference = None
    if adapter_config is None:
        reference, _ = load_policy(model_args)
        reference.requires_grad_(False).eval()
    return DPOTrainer(
        model=model,
        ref_model=reference,
        args=training_args,
        train_dataset=train_pairs,
        eval_dataset=eval_pairs,
        processing_class=tokenizer,
        peft_config=adapter_config,
    )


def preference_pairs(pref_args, given_pairs, model, tokenizer, judge, gen_args, train_texts, seed):
    """Train and held-out pair datasets (given ones, or judged samples), and how they were made."""
    import datasets

    if given_pairs is not None:
        pairs = given_pairs
        stats = {"pairs_source": pref_args.dataset_name}
    else:
        prefix = request_prefix(tokenizer, pref_args.review_request)
        prompts = review_openings(train_texts, pref_args.prompt_words, prefix)[: pref_args.num_prompts]
        rows = judged_on_policy_pairs(prompts, model, tokenizer, judge, gen_args, pref_args)
        if len(rows["prompt"]) < 4:
            raise RecipeError(
                f"only {len(rows['prompt'])} pairs pass min_judge_margin {pref_args.min_judge_margin}; "
                "lower it or raise num_prompts / samples_per_prompt"
            )
        pairs = datasets.Dataset.from_dict(rows)
        stats = {
            "pairs_source": f"on-policy samples ranked by {pref_args.judge_model}",
            "pair_prompts": len(prompts),
            "mean_judge_margin": float(np.mean(rows["margin"])),
        }
    if given_pairs is not None and pref_args.dataset_test_split:
        held_out = load_preference_dataset(
            pref_args.dataset_name, pref_args.dataset_test_split, pref_args.dataset_config
        )
        split = {"train": pairs, "test": held_out}
    else:
        split = pairs.train_test_split(test_size=pref_args.eval_pair_fraction, seed=seed)
    stats.update(train_pairs=len(split["train"]), eval_pairs=len(split["test"]))
    return split["train"], split["test"], stats


def main(policy_args, pref_args, gen_args, peft_args, output_args, training_args):
    model_args = ModelArguments(**vars(policy_args), trust_remote_code=training_args.trust_remote_code)
    run = claim_output_dir(training_args, output_args.overwrite_output_dir)
    check_dpo_options(model_args, peft_args)
    if not (pref_args.dataset_name or pref_args.judge_model):
        raise RecipeError("set judge_model (to build pairs from the policy's samples) or dataset_name (the pairs)")
    # Read given pairs first: a bad file should fail in a second, not after the before-training evaluation.
    given_pairs = None
    if pref_args.dataset_name:
        given_pairs = load_preference_dataset(
            pref_args.dataset_name, pref_args.dataset_train_split, pref_args.dataset_config
        )
    settle_cpu_precision(training_args)
    push = take_push_request(training_args)
    set_seed(training_args.seed)
    model, tokenizer = load_policy(model_args)
    device = training_args.device  # every model scored or sampled here sits where training runs
    model.to(device)
    judge = load_judge(pref_args, model_args, device)

    # Reviews the policy never trained on (the same document split as clm_distilgpt2 with the same seed)
    # give the perplexity check and the held-out prompts; training prompts come from the training side.
    review_args = review_text_arguments(pref_args)
    train_texts, held_out, _ = load_lm_texts(review_args, training_args.seed)
    held_out_texts = held_out["text"]
    perplexity_texts = held_out.select(range(min(pref_args.perplexity_texts, len(held_out))))
    prefix = request_prefix(tokenizer, pref_args.review_request)
    eval_prompts = review_openings(held_out_texts[len(perplexity_texts) :], pref_args.prompt_words, prefix)
    eval_prompts = eval_prompts[: pref_args.num_eval_prompts]
    blocks = tokenize_for_lm(perplexity_texts, tokenizer, review_args.block_size, True, tokenizer.eos_token_id)
    independent = None
    if judge is not None:
        independent = independent_judge_of_reviews(
            pref_args.review_dataset,
            pref_args.judge_model,
            held_out_texts,
            pref_args.independent_judge_reviews,
            training_args.seed,
        )

    results = {"perplexity_blocks": len(blocks), "eval_prompts": len(eval_prompts)}
    eval_batch = training_args.per_device_eval_batch_size
    results["before_perplexity"] = held_out_perplexity(model, blocks, tokenizer.pad_token_id, eval_batch)
    samples_before = []
    if judge is not None:
        samples_before = judged_generation_report(
            model, tokenizer, judge, eval_prompts, gen_args, pref_args.sampling_batch_size, independent
        )
        results.update(judged_shares(samples_before, training_args.seed, "before_"))
    train_pairs, eval_pairs, pair_stats = preference_pairs(
        pref_args, given_pairs, model, tokenizer, judge, gen_args, train_texts["text"], training_args.seed
    )
    results.update(pair_stats)

    trainer = build_trainer(model, tokenizer, training_args, peft_args, train_pairs, eval_pairs, model_args)
    leave_the_card_to_the_recipe(trainer.model)
    results.update(parameter_counts(trainer.model))
    results["global_batch_size"] = global_batch_size(training_args)
    before_eval = trainer.evaluate()
    results["before_eval_reward_accuracy"] = before_eval.get("eval_rewards/accuracies")

    open_run_folder(run)
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    results.update(train_metrics(train_result.metrics))
    after_eval = trainer.evaluate()
    results.update(
        eval_reward_accuracy=after_eval["eval_rewards/accuracies"],
        eval_reward_margin=after_eval["eval_rewards/margins"],
        eval_loss=after_eval["eval_loss"],
    )
    results["saved_weights_bytes"] = save_trained(trainer, run)

    # Held-out figures are those of the saved policy, reloaded as a user loads it, not of the model in memory.
    policy = load_saved_model(AutoModelForCausalLM, run.staging, lambda: load_policy(model_args)[0]).to(device)
    pad_with_eos(policy, tokenizer)
    results["perplexity"] = held_out_perplexity(policy, blocks, tokenizer.pad_token_id, eval_batch)
    results["perplexity_change"] = results["perplexity"] / results["before_perplexity"] - 1
    samples_after = []
    if judge is not None:
        samples_after = judged_generation_report(
            policy, tokenizer, judge, eval_prompts, gen_args, pref_args.sampling_batch_size, independent
        )
        results.update(judged_shares(samples_after, training_args.seed))
        results["positive_share_change"] = results["positive_share"] - results["before_positive_share"]
        # Preference tuning can buy its shift by collapsing onto a few phrasings: diversity before and after.
        for prefix, samples in (("before_", samples_before), ("", samples_after)):
            results[f"{prefix}distinct_2"] = distinct_n([sample["continuation"] for sample in samples], 2)
        results["distinct_2_ratio"] = results["distinct_2"] / max(results["before_distinct_2"], 1e-9)
        if independent is not None:
            change = results["positive_share_independent"] - results["before_positive_share_independent"]
            results["positive_share_independent_change"] = change
    results["tracker_runs"] = tracker_runs(training_args)

    with main_process_writes() as writer:
        if writer:
            write_run_records(
                run, trainer.state.log_history, policy_args, pref_args, gen_args, peft_args, training_args
            )
            write_json(run.path("samples.json"), {"before": samples_before, "after": samples_after})
            plot_training_curves(
                trainer.state.log_history,
                run.path("training_curves.png"),
                metrics=("eval_rewards/accuracies", "eval_rewards/margins"),
            )
            write_dpo_card(run, results, samples_before, samples_after, model_args, pref_args, peft_args, training_args)
    print_summary(results, samples_after)
    return close_run(run, results, push)


def print_summary(results: dict, samples_after: list[dict]) -> None:
    say(
        f"\nDPO on {results['train_pairs']} pairs: held-out reward accuracy {results['eval_reward_accuracy']:.3f}, "
        f"margin {results['eval_reward_margin']:.3f}"
    )
    say(
        f"Held-out review perplexity: {results['before_perplexity']:.1f} -> {results['perplexity']:.1f} "
        f"({results['perplexity_change']:+.0%})"
    )
    if "positive_share" in results:
        say(
            f"Judged positive ({results['eval_prompts']} held-out prompts): "
            f"{results['before_positive_share']:.1%} -> {results['positive_share']:.1%} "
            f"({results['positive_share_change'] * 100:+.1f} points)"
        )
        if "positive_share_independent" in results:
            say(
                f"Judged positive by the independent TF-IDF judge: {results['before_positive_share_independent']:.1%}"
                f" -> {results['positive_share_independent']:.1%} "
                f"({results['positive_share_independent_change'] * 100:+.1f} points)"
            )
        for sample in samples_after[:3]:
            opening = sample["prompt"].splitlines()[-1]  # a chat prompt's last line is the opening
            say(f"  {opening!r} -> {sample['continuation']!r} (p={sample['p_positive']})")


@exit_on_recipe_error
def cli(args=None, defaults=None):
    return main(*parse_args(make_parser_types(), args, defaults))


if __name__ == "__main__":
    cli()
