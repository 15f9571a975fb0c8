"""The stages of `make demo`: what each runs (its make target), the configs its result depends on, the headline
figure it prints and the target it promises, with the helpers that read a stage's results."""

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from recipe_utils.core.outputs import read_json


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


@dataclass(frozen=True)
class Stage:
    name: str  # its make target
    summary: str
    output_dir: str
    configs: tuple[str, ...]  # the files whose content the stage's result depends on, besides the code
    headline: Callable[[dict], str]
    after: tuple[str, ...] = ()  # stages whose output this one reads
    # The figure the stage's recipe promises on its demo config, and whether this run's results hold it.
    target: str = ""
    holds: Callable[[dict], bool] | None = None

    def results(self) -> dict | None:
        return read_json(os.path.join(self.output_dir, "all_results.json"))

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in self.configs:
            with open(path, "rb") as handle:
                digest.update(path.encode() + b"\0" + handle.read())
        return digest.hexdigest()[:16]


def _raised(change: float, share: float) -> bool:
    """The preference stages' goal: judged positive up 25 points or more, or at 95% and more."""
    return change >= 0.25 or share >= 0.95


def _config(recipe: str, name: str = "demo.yaml") -> str:
    return os.path.join("recipes", "configs", recipe, name)


# In the order they start in, two lanes: the classifier, then the MLM pretraining and the transfer study built on
# it, beside the generator and DPO (which wait for the classifier, their judge); then compression of the
# classifier, LoRA, QLoRA and the LLM classifier, which nothing waits for; RL last, once DPO, whose policy it is
# compared with, is done.
STAGES = (
    Stage(
        "sft_sentiment",
        "seeds 001/003: MiniLM fine-tuned on IMDB reviews, against majority and TF-IDF baselines",
        "outputs/sft_sentiment",
        (_config("sft_sentiment"),),
        lambda r: (
            f"accuracy {r['eval_accuracy']:.3f} (TF-IDF {r['baseline_tfidf_accuracy']:.3f}, "
            f"before {r['before_accuracy']:.3f})"
        ),
        target="accuracy >= 0.88 and >= 2 points over TF-IDF (defaults)",
        holds=lambda r: r["eval_accuracy"] >= 0.88 and r["eval_accuracy"] - r["baseline_tfidf_accuracy"] >= 0.02,
    ),
    Stage(
        "clm_distilgpt2",
        "seeds 002/004: SmolLM2-135M-Instruct tuned with TRL's SFTTrainer (LoRA) to write the review asked for",
        "outputs/clm_distilgpt2",
        (_config("clm_distilgpt2"),),
        lambda r: (
            f"review perplexity {r['before_perplexity']:.1f} -> {r['perplexity']:.1f}; judged as asked (classifier) "
            f"negative {_percent(r['before_controllability_classifier_negative'])} -> "
            f"{_percent(r['controllability_classifier_negative'])}, positive "
            f"{_percent(r['before_controllability_classifier_positive'])} -> "
            f"{_percent(r['controllability_classifier_positive'])}"
        ),
        after=("sft_sentiment",),
        target="review perplexity at least 15% lower; each sentiment judged as asked >= 85% (classifier)",
        holds=lambda r: (
            r["perplexity_change"] <= -0.15
            and r["controllability_classifier_negative"] >= 0.85
            and r["controllability_classifier_positive"] >= 0.85
        ),
    ),
    Stage(
        "dpo_bonus",
        "seed 004: DPO steers the SFT review writer towards positive reviews (the DPO paper's IMDb setting)",
        "outputs/dpo_bonus",
        (_config("dpo_bonus"),),
        lambda r: (
            f"judged positive {_percent(r['before_positive_share'])} -> {_percent(r['positive_share'])}"
            f" (independent judge {_percent(r['before_positive_share_independent'])} -> "
            f"{_percent(r['positive_share_independent'])})"
        ),
        after=("sft_sentiment", "clm_distilgpt2"),
        target="judged positive +25 points or more (or 95%) by both judges, perplexity at most +25%, distinct-2 >= 80% "
        "of the start's",
        holds=lambda r: (
            _raised(r["positive_share_change"], r["positive_share"])
            and _raised(r["positive_share_independent_change"], r["positive_share_independent"])
            and r["perplexity_change"] <= 0.25
            and r["distinct_2_ratio"] >= 0.8
        ),
    ),
    Stage(
        "pretrain_mlm",
        "seed 000: a small ModernBERT pretrained from scratch on Wikipedia text (masked LM)",
        "outputs/pretrain_mlm",
        (_config("pretrain_mlm"),),
        lambda r: f"perplexity {r['before_perplexity']:,.0f} -> {r['perplexity']:,.0f}",
        target="held-out perplexity falls",
        holds=lambda r: r["perplexity"] < r["before_perplexity"],
    ),
    Stage(
        "transfer_study_demo",
        "seed 000: Wikipedia pretraining vs random weights, all layers or the top one fine-tuned with few labels",
        "outputs/transfer_study_demo",
        (_config("transfer_study"), _config("pretrain_mlm")),
        lambda r: (
            ", ".join(
                f"{key.split('_minus_')[0]} {r[key]:+.1f}"
                for key in sorted(r)
                if key.endswith("_at_400_points") and "_minus_random_" in key
            )
            + " points vs random weights at 400 labels"
            + (f" ({r['failed_runs']} of the runs ended predicting one class)" if r.get("failed_runs") else "")
        ),
        after=("pretrain_mlm",),
    ),
    Stage(
        "compress",
        "seed 004: quantization, weight clustering and pruning of the sentiment classifier",
        "outputs/compress",
        (_config("compress"),),
        lambda r: "smallest within {:.0%} of fp32: {}, {:.1f}x smaller".format(
            r["tolerance"],
            r["smallest_within_tolerance"],
            next(row["x_smaller"] for row in r["settings"] if row["setting"] == r["smallest_within_tolerance"]),
        ),
        after=("sft_sentiment",),
        target="a setting within 1 point of fp32 at 4x or more smaller",
        holds=lambda r: any(row["vs_fp32"] >= -0.01 and row["x_smaller"] >= 4 for row in r["settings"]),
    ),
    Stage(
        "lora",
        "seed 004: LoRA adapters on MiniLM",
        "outputs/lora",
        (_config("lora"),),
        lambda r: f"accuracy {r['eval_accuracy']:.3f} training {_percent(r['trainable_share'])} of the weights",
        target="under 2% of the weights trained, accuracy >= TF-IDF (defaults)",
        holds=lambda r: r["trainable_share"] < 0.02 and r["eval_accuracy"] >= r["baseline_tfidf_accuracy"],
    ),
    Stage(
        "qlora",
        "seed 004: the same LoRA on a 4-bit (nf4) base",
        "outputs/qlora",
        (_config("qlora"),),
        lambda r: f"accuracy {r['eval_accuracy']:.3f}",
        target="4-bit layers <= 15% of their fp32 bytes, accuracy >= TF-IDF (defaults)",
        holds=lambda r: r["quantized_share_of_fp32"] <= 0.15 and r["eval_accuracy"] >= r["baseline_tfidf_accuracy"],
    ),
    Stage(
        "llm_classifier",
        "seed 001: the instruct LLM (SmolLM2-135M-Instruct) as a classifier: prompted, and tuned (LoRA, a new head) "
        "on lora's reviews",
        "outputs/llm_classifier",
        (_config("lora", "smollm2_classifier.yaml"),),
        lambda r: (
            f"accuracy {r['eval_accuracy']:.3f} (tuned TF-IDF {r['baseline_tfidf_tuned_accuracy']:.3f}), "
            f"{r['eval_reviews_per_second']:.1f} reviews/s"
        ),
        target="accuracy >= tuned TF-IDF on the same reviews",
        holds=lambda r: r["eval_accuracy"] >= r["baseline_tfidf_tuned_accuracy"],
    ),
    Stage(
        "rlhf",
        "seed 004: a reward model, then online RL (GRPO) on the same SFT review writer",
        "outputs/rlhf",
        (_config("rlhf"),),
        lambda r: (
            f"judged positive {_percent(r['start_positive_share'])} -> {_percent(r['rl_positive_share'])}"
            f" (independent judge {_percent(r['start_positive_share_independent'])} -> "
            f"{_percent(r['rl_positive_share_independent'])})"
        ),
        after=("dpo_bonus",),
        target="judged positive +25 points (or 95%) by both judges, perplexity at most +25%, distinct-2 >= 80% of the "
        "start's, reward model >= 75% on held-out pairs",
        holds=lambda r: (
            _raised(r["positive_share_change"], r["rl_positive_share"])
            and _raised(r["positive_share_independent_change"], r["rl_positive_share_independent"])
            and r["perplexity_change"] <= 0.25
            and r["distinct_2_ratio"] >= 0.8
            and r["reward_model_pair_accuracy"] >= 0.75
        ),
    ),
)


def elapsed(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def verdict(stage: Stage, results: dict | None) -> str:
    """'holds' or 'MISSED' against the stage's own target, '-' where it has none."""
    if not stage.holds or results is None:
        return "-"
    try:
        return "holds" if stage.holds(results) else "MISSED"
    except (KeyError, TypeError) as error:
        return f"not measured ({error!r} missing)"


def headline(stage: Stage) -> str:
    try:
        return stage.headline(stage.results())
    except (KeyError, TypeError, ValueError) as error:
        return f"(no headline figure: {error!r} missing from all_results.json)"
