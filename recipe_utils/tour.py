"""`make demo`: every recipe on its demo config, in the order the seeds chain them, then one report.

Each stage is the recipe's own make target (the same command a user runs by hand); its output, library
logs and progress bars included, goes to outputs/logs/<stage>.log, and the terminal gets one status line per
stage: k of n, what it does, how long it took and its headline figure. A stage whose output folder is
complete (all_results.json, which a recipe writes last) is reused unless its config changed since the tour
ran it or --force is given, so a rerun costs seconds and an interrupted tour resumes at the stage it
stopped in (the recipes' staging folders leave every finished folder whole). The tour ends by writing
outputs/REPORT.md from the stages' all_results.json.

    python -m recipe_utils.tour [--force]        # make demo [FORCE=1]
"""

import argparse
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from recipe_utils.hardware import machine_description
from recipe_utils.outputs import read_json, write_json

OUTPUTS = "outputs"
LOGS = os.path.join(OUTPUTS, "logs")
# Per stage: the fingerprint of the configs it ran with, its wall time and the machine, as the report states them.
STAGE_RECORDS = os.path.join(OUTPUTS, "demo_stages.json")


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


def _config(recipe: str, name: str = "demo.yaml") -> str:
    return os.path.join("recipes", "configs", recipe, name)


# In the order they start in, two lanes that end together (one-thread times on the AVX512-BF16 EPYC:
# docs/results.md, "The guided tour"): the classifier, then the MLM pretraining and the transfer study built on it,
# beside the generator and DPO; then compression of the classifier and LoRA; QLoRA and RL (as long as each other)
# last, RL once DPO, whose policy it is compared with, is done.
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
        "clm_gpt2",
        "seed 002: a small GPT-2 pretrained on Wikipedia text, then fine-tuned on reviews (the DPO and RL start)",
        "outputs/clm_gpt2",
        (_config("clm_distilgpt2", "gpt2_demo.yaml"), _config("clm_distilgpt2", "pretrain_demo.yaml")),
        lambda r: f"review perplexity {r['before_perplexity']:,.0f} -> {r['perplexity']:,.0f}",
        target="review perplexity at least 30% lower",
        holds=lambda r: r["perplexity_change"] <= -0.30,
    ),
    Stage(
        "dpo_bonus",
        "seed 004: DPO steers the generator towards positive reviews, judged by the sentiment classifier",
        "outputs/dpo_bonus",
        (_config("dpo_bonus"),),
        lambda r: (
            f"judged positive {_percent(r['before_positive_share'])} -> {_percent(r['positive_share'])}"
            f" (independent judge {_percent(r['before_positive_share_independent'])} -> "
            f"{_percent(r['positive_share_independent'])})"
        ),
        after=("sft_sentiment", "clm_gpt2"),
        target="judged positive +25 points or more by both judges, perplexity at most +25%",
        holds=lambda r: (
            r["positive_share_change"] >= 0.25
            and r["positive_share_independent_change"] >= 0.25
            and r["perplexity_change"] <= 0.25
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
        "rlhf",
        "seed 004: a reward model, then online RL (GRPO) on the same generator",
        "outputs/rlhf",
        (_config("rlhf"),),
        lambda r: (
            f"judged positive {_percent(r['start_positive_share'])} -> {_percent(r['rl_positive_share'])}"
            f" (independent judge {_percent(r['start_positive_share_independent'])} -> "
            f"{_percent(r['rl_positive_share_independent'])})"
        ),
        after=("dpo_bonus",),
        target="judged positive +25 points by both judges, perplexity at most +25%, distinct-2 >= 80% of the "
        "start's, reward model >= 75% on held-out pairs",
        holds=lambda r: (
            r["positive_share_change"] >= 0.25
            and r["positive_share_independent_change"] >= 0.25
            and r["perplexity_change"] <= 0.25
            and r["distinct_2_ratio"] >= 0.8
            and r["reward_model_pair_accuracy"] >= 0.75
        ),
    ),
)


def read_records() -> dict:
    return read_json(STAGE_RECORDS) or {}


def is_reusable(stage: Stage, records: dict) -> bool:
    """Complete, and (when the tour ran it) run from the configs as they are now, after the stages it reads."""
    if stage.results() is None:
        return False
    record = records.get(stage.name)
    if record is None:
        return True
    upstream = [records.get(name, {}).get("finished_at", 0) for name in stage.after]
    return record.get("fingerprint") == stage.fingerprint() and all(
        finished <= record.get("finished_at", 0) for finished in upstream
    )


def start_stage(stage: Stage, log_path: str, threads: int | None) -> subprocess.Popen:
    """The stage's make target, its output (library logs, progress bars) into its log file."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    with open(log_path, "w", encoding="utf-8") as log:
        return subprocess.Popen(
            ["make", "--no-print-directory", stage.name], stdout=log, stderr=subprocess.STDOUT, env=env
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


def tour(stages=STAGES, force: bool = False, workers: int = 2) -> int:
    """Run the stages that are not reusable, `workers` at a time (each as soon as the stages it reads are
    done), then write the report. Returns the exit code: 0, or the first failed stage's."""
    os.makedirs(LOGS, exist_ok=True)
    records = read_records()
    machine = machine_description()
    lanes = f"{workers} at a time, one thread each" if workers > 1 else "one at a time"
    print(f"make demo: {len(stages)} stages on {machine}; {lanes}; logs in {LOGS}/", flush=True)
    start = time.time()
    numbers = {stage.name: number for number, stage in enumerate(stages, start=1)}
    done, failed, running = set(), None, {}

    def status(stage: Stage, text: str) -> None:
        print(f"[{numbers[stage.name]}/{len(stages)}] {stage.name}: {stage.summary} ... {text}", flush=True)

    for stage in stages:
        if not force and is_reusable(stage, records):
            status(stage, f"reused ({stage.output_dir} is complete): {headline(stage)}")
            done.add(stage.name)
    waiting = [stage for stage in stages if stage.name not in done]
    # Two stages at once overlap one's process start-up, tokenizing, baselines and generation with the other's
    # training; one thread each keeps them from fighting over the cores. A stage that starts with nothing
    # beside it and nothing else ready (the end of the chain, a rerun of one stage) gets every thread.
    threads = 1 if workers > 1 else None
    while waiting or running:
        ready = [stage for stage in waiting if set(stage.after) <= done]
        while failed is None and ready and len(running) < workers:
            stage = ready.pop(0)
            waiting.remove(stage)
            log_path = os.path.join(LOGS, f"{stage.name}.log")
            # The configs as the stage starts with them: an edit while it runs makes it stale, not current.
            fingerprint = stage.fingerprint()
            alone = not running and not ready and len(waiting) == 0
            stage_threads = None if alone else threads
            process = start_stage(stage, log_path, stage_threads)
            running[stage.name] = (stage, process, time.time(), log_path, fingerprint, stage_threads)
        if not running:
            break  # a failure left stages waiting on it
        time.sleep(0.5)
        for name, (stage, process, stage_start, log_path, fingerprint, stage_threads) in list(running.items()):
            code = process.poll()
            if code is None:
                continue
            del running[name]
            seconds = time.time() - stage_start
            if code != 0 or stage.results() is None:
                status(stage, f"FAILED after {elapsed(seconds)} (exit {code}); its log: {log_path}")
                failed = failed or code or 1
                continue
            done.add(name)
            records[name] = {
                "fingerprint": fingerprint,
                "seconds": round(seconds, 1),
                "threads": stage_threads or "all",
                "machine": machine,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "started_at": stage_start,
                "finished_at": time.time(),
            }
            write_json(STAGE_RECORDS, records)
            status(stage, f"{elapsed(seconds)}: {headline(stage)}")
    if failed is not None:
        return failed
    from recipe_utils.demo_report import write_report

    report = write_report(stages, records, OUTPUTS)
    print(f"\nAll stages done in {elapsed(time.time() - start)}. The report: {report.path}\n\n{report.headline_table}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="rerun every stage, even complete ones")
    parser.add_argument("--workers", type=int, default=2, help="stages run at once (one thread each when > 1)")
    args = parser.parse_args(argv)
    try:
        return tour(STAGES, force=args.force, workers=args.workers)
    except KeyboardInterrupt:  # the stages got the same Ctrl-C; their staging folders keep finished ones whole
        print("\ninterrupted: `make demo` again resumes at the stages that did not finish", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
