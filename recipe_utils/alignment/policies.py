"""The generator that DPO and RL steer: loading the policy (a saved SFT adapter merged into its base first), its
judges, and the judged figures of its samples that both recipes report (judged positive by the classifier and by
the independent judge, held-out perplexity, KL to the start, diversity)."""

import os
from dataclasses import dataclass, field

from transformers import AutoModelForCausalLM
from trl import ModelConfig

from recipe_utils.alignment.judges import sentiment_classifier_judge, share_with_interval
from recipe_utils.alignment.preferences import sample_continuations
from recipe_utils.core.args import LanguageModelingDataArguments
from recipe_utils.core.outputs import read_json
from recipe_utils.data.language_modeling import held_out_perplexity, pad_with_eos
from recipe_utils.evaluation.generation_metrics import distinct_n, kl_to_reference, stock_phrase_share
from recipe_utils.models.loading import load_pretrained, load_tokenizer, resolve_model_path


@dataclass
class PolicyArguments(ModelConfig):
    """The model to tune: TRL's ModelConfig, as its dpo script takes it (trust_remote_code is DPOConfig's)."""

    model_name_or_path: str | None = field(
        default="outputs/clm_distilgpt2",
        metadata={"help": "Causal LM to tune: local folder (a saved adapter is merged first) or Hub id."},
    )


def load_policy(model_args):
    """The policy and its tokenizer; a folder holding an adapter is merged into its base first. An adapter trained
    on a start that was itself an adapter merged into its base (DPO's and RL's policies on the SFT model) goes on
    that merged start, which its run_config.json names: its adapter_config only knows the bare base."""
    path = resolve_model_path(model_args.model_name_or_path)
    if os.path.isfile(os.path.join(path, "adapter_config.json")):
        from peft import AutoPeftModelForCausalLM, PeftModel

        start = adapter_start(path)
        if start is not None:
            base, _ = load_policy(type(model_args)(model_name_or_path=start))
            model = PeftModel.from_pretrained(base, path).merge_and_unload()
        else:
            model = AutoPeftModelForCausalLM.from_pretrained(path).merge_and_unload()
    else:
        model = load_pretrained(AutoModelForCausalLM, model_args)
    tokenizer = load_tokenizer(model_args)
    pad_with_eos(model, tokenizer)
    return model, tokenizer


def adapter_start(folder: str) -> str | None:
    """The adapter folder a run in `folder` started from (its run_config.json's model_name_or_path), when that start
    was itself an adapter; None otherwise, or when it is not on this machine (then said in one line)."""
    start = (read_json(os.path.join(folder, "run_config.json")) or {}).get("model_name_or_path")
    if not start or os.path.abspath(start) == os.path.abspath(folder):
        return None
    if os.path.isfile(os.path.join(start, "adapter_config.json")):
        return start
    if start.startswith(("outputs", ".", "/")) and not os.path.isdir(start):
        from recipe_utils.core.distributed import say

        say(f"note: {folder} was trained on {start}, which is not here; its adapter goes on the bare base")
    return None


def load_judge(pref_args, model_args, device="cpu"):
    """The sentiment classifier that judges generations, on `device` (the run's)."""
    if not pref_args.judge_model:
        return None
    return sentiment_classifier_judge(
        pref_args.judge_model, pref_args.judge_positive_label, device, model_args.trust_remote_code
    )


def review_text_arguments(pref_args) -> LanguageModelingDataArguments:
    """The review texts as clm_distilgpt2 reads them, so the same seed puts the same documents on each side."""
    return LanguageModelingDataArguments(
        dataset_name=pref_args.review_dataset,
        dataset_config=pref_args.review_dataset_config,
        eval_fraction=pref_args.review_eval_fraction,
        max_eval_samples=pref_args.max_review_samples,
        block_size=pref_args.block_size,
    )


def judged_generation_report(model, tokenizer, judge, prompts, gen_args, batch_size, independent=None) -> list[dict]:
    """One sample per held-out prompt with the judge's verdict, each also read by the independent judge when one is
    given (judged_shares turns the verdicts into shares with intervals)."""
    continuations = [row[0] for row in sample_continuations(model, tokenizer, prompts, 1, gen_args, batch_size)]
    scores = judge.positive_probability(continuations)
    verdicts = scores > 0.5
    # The verdict is saved beside the rounded probability: a score of 0.5004 shows as 0.5 but counts as positive.
    samples = [
        {"prompt": p, "continuation": c, "p_positive": round(float(s), 3), "judged_positive": bool(v)}
        for p, c, s, v in zip(prompts, continuations, scores, verdicts, strict=True)
    ]
    if independent is not None:
        for sample, score in zip(samples, independent.positive_probability(continuations), strict=True):
            sample["p_positive_independent"] = round(float(score), 3)
            sample["judged_positive_independent"] = bool(score > 0.5)
    return samples


def judged_shares(samples: list[dict], seed: int, prefix: str = "") -> dict:
    """The share judged positive by each judge, with 95% intervals: {prefix}positive_share[_independent][_low|_high]."""
    shares = {}
    for suffix, key in (("", "judged_positive"), ("_independent", "judged_positive_independent")):
        if samples and key in samples[0]:
            figure = share_with_interval([sample[key] for sample in samples], seed)
            name = f"{prefix}positive_share{suffix}"
            shares.update({name: figure["share"], f"{name}_low": figure["low"], f"{name}_high": figure["high"]})
    return shares


def generator_report(model, reference, tokenizer, judges, prompts, blocks, gen_args, batch, seed) -> tuple[dict, list]:
    """One row of the comparison: judged positive share by both judges (with intervals), held-out perplexity, KL to
    the start, diversity. `judges` is (the classifier, the independent judge or None)."""
    samples = judged_generation_report(model, tokenizer, judges[0], prompts, gen_args, batch, judges[1])
    continuations = [sample["continuation"] for sample in samples]
    return {
        **judged_shares(samples, seed),
        "perplexity": held_out_perplexity(model, blocks, tokenizer.pad_token_id, batch),
        "kl_to_start": kl_to_reference(model, reference, tokenizer, prompts, continuations),
        "distinct_2": distinct_n(continuations, 2),
        "stock_phrase_share": stock_phrase_share(continuations),
    }, samples


def recorded_training_time(folder: str) -> float | None:
    """The training time a finished run recorded in its all_results.json (None when it has none)."""
    return (read_json(os.path.join(folder, "all_results.json")) or {}).get("train_runtime")


def comparison_row(name: str, row: dict) -> dict:
    """A row of the comparison table in readable units, each judge's share with its 95% interval."""

    def share(key: str) -> str:
        if key not in row:
            return "-"
        return f"{row[key]:.1%} [{row[key + '_low']:.1%}, {row[key + '_high']:.1%}]"

    runtime = row.get("train_runtime_s")
    return {
        "policy": name,
        "judged positive (classifier)": share("positive_share"),
        "judged positive (independent TF-IDF)": share("positive_share_independent"),
        "perplexity": f"{row['perplexity']:.1f}",
        "KL to start": f"{row['kl_to_start']:.2f}",
        "distinct-2": f"{row['distinct_2']:.3f}",
        "stock phrases": f"{row['stock_phrase_share']:.1%}",
        "training s": "-" if runtime is None else f"{runtime:.0f}",
    }
