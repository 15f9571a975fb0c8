"""The transfer study's figures: one row per cell over its seeds, each start against its control with the
interval of the difference, and the two plots (accuracy against labels, accuracy against forgetting)."""

import os

import numpy as np

from recipe_utils.core.outputs import write_json
from recipe_utils.evaluation.intervals import seeds_and_reviews_interval
from recipe_utils.publishing.report import markdown_table, plt, save_figure

# What each start is measured against: the same architecture from random weights, or MiniLM as shipped.
CONTROLS = {
    "general": "random",
    "in_domain": "random",
    "general_in_domain": "random",
    "minilm_in_domain": "minilm",
}


def _mean(values):
    values = [value for value in values if value is not None]
    return float(np.mean(values)) if values else None


def cell_summary(start: str, strategy: str, labels: int, rate: float, runs: list[dict], before, seed: int) -> dict:
    """One cell over its seeds. Failed runs (one class for every review) count but stay out of the figures."""
    kept = [run for run in runs if not run["result"].one_class]
    accuracies = [run["result"].accuracy for run in kept]
    low = high = None
    if kept:
        low, high = seeds_and_reviews_interval(np.stack([run["result"].correct for run in kept]), seed)
    row = {
        "start": start,
        "strategy": strategy,
        "labels": labels,
        "learning_rate": rate,
        "seeds": len(kept),
        "failed": len(runs) - len(kept),
        "accuracy": _mean(accuracies),
        "accuracy_std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else None,
        "accuracy_95": f"{low:.3f}-{high:.3f}" if kept else None,
        "f1": _mean([run["result"].f1 for run in kept]),
        "trainable_params": runs[0]["result"].trainable_params,
        "train_runtime_s": round(_mean([run["result"].train_runtime for run in runs]), 1),
        "train_peak_memory_MB": round(max(run["result"].train_peak_memory_mb for run in runs)),
    }
    for text in ("general", "reviews"):
        after = _mean([run["perplexity"][text] for run in kept if run["perplexity"]])
        start_value = before[text] if before else None
        row[f"{text}_ppl_before"] = start_value
        row[f"{text}_ppl_after"] = after
        row[f"{text}_ppl_ratio"] = after / start_value if after and start_value else None
    row["accuracy_per_seed"] = [round(run["result"].accuracy, 4) for run in runs]
    return row


def control_differences(runs: dict, seed: int) -> list[dict]:
    """Each start's fully fine-tuned accuracy minus its control's at the same label budget, paired by seed
    (the same labelled reviews) and by held-out review, in points, with a 95% interval."""
    differences = []
    for (start, strategy, labels), start_runs in runs.items():
        control = CONTROLS.get(start)
        if strategy != "full" or (control, "full", labels) not in runs:
            continue
        control_runs = {run["seed"]: run["result"] for run in runs[(control, "full", labels)]}
        pairs = [
            (run["result"].correct, control_runs[run["seed"]].correct)
            for run in start_runs
            if run["seed"] in control_runs and not run["result"].one_class and not control_runs[run["seed"]].one_class
        ]
        if not pairs:
            continue
        table = np.stack([ours.astype(float) - theirs for ours, theirs in pairs])
        low, high = seeds_and_reviews_interval(table, seed)
        differences.append(
            {
                "start": start,
                "against": control,
                "labels": labels,
                "paired_seeds": len(pairs),
                "difference_points": round(100 * float(table.mean()), 2),
                "difference_95": f"{100 * low:+.1f} to {100 * high:+.1f}",
                "better": bool(low > 0),
                "worse": bool(high < 0),
            }
        )
    return differences


def plot_accuracy_against_labels(cells: list[dict], path: str) -> str:
    figure, axis = plt.subplots(figsize=(8, 5))
    for start in dict.fromkeys(cell["start"] for cell in cells):
        points = [c for c in cells if c["start"] == start and c["strategy"] == "full" and c["accuracy"] is not None]
        if not points:
            continue
        lows, highs = zip(*(map(float, c["accuracy_95"].split("-")) for c in points), strict=True)
        x = [c["labels"] for c in points]
        y = [c["accuracy"] for c in points]
        errors = [np.subtract(y, lows), np.subtract(highs, y)]
        axis.errorbar(x, y, yerr=errors, fmt="o-", capsize=3, label=start)
    axis.set_xscale("log")
    axis.set(xlabel="labelled reviews (log scale)", ylabel="held-out accuracy (mean of seeds, 95% interval)")
    axis.set_title("Full fine-tuning: accuracy against labelled reviews, per start")
    axis.grid(alpha=0.3)
    axis.legend()
    return save_figure(figure, path)


def plot_accuracy_against_forgetting(cells: list[dict], path: str) -> str:
    figure, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    scored = [cell for cell in cells if cell["general_ppl_ratio"] and cell["accuracy"] is not None]
    starts = list(dict.fromkeys(cell["start"] for cell in scored))
    colours = {start: plt.get_cmap("tab10")(index) for index, start in enumerate(starts)}
    for axis, text in zip(axes, ("general", "reviews"), strict=True):
        for cell in scored:
            axis.scatter(cell[f"{text}_ppl_ratio"], cell["accuracy"], color=colours[cell["start"]])
            axis.annotate(
                f"{cell['strategy']}@{cell['labels']}",
                (cell[f"{text}_ppl_ratio"], cell["accuracy"]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
        axis.axvline(1.0, color="gray", linewidth=0.8)
        axis.set(xlabel=f"masked-LM perplexity on held-out {text} text, after / before", title=f"{text} text")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("held-out accuracy (mean of seeds)")
    for start, colour in colours.items():
        axes[1].scatter([], [], color=colour, label=start)
    axes[1].legend()
    figure.suptitle("Accuracy against forgetting (right of 1: the encoder lost some of its masked-LM skill)")
    return save_figure(figure, path)


CELL_COLUMNS = (
    "start",
    "strategy",
    "labels",
    "learning_rate",
    "seeds",
    "failed",
    "accuracy",
    "accuracy_std",
    "accuracy_95",
    "f1",
    "trainable_params",
    "train_runtime_s",
    "train_peak_memory_MB",
    "general_ppl_before",
    "general_ppl_after",
    "reviews_ppl_before",
    "reviews_ppl_after",
)


def write_transfer_report(study_dir: str, cells: list[dict], differences: list[dict], results: dict) -> str:
    """comparison.json and comparison.md with both plots, then all_results.json last; returns the cell table."""
    cell_table = markdown_table([{key: cell[key] for key in CELL_COLUMNS} for cell in cells])
    difference_table = markdown_table(differences) if differences else "(no start has its control in this run)"
    labels_plot = plot_accuracy_against_labels(cells, os.path.join(study_dir, "accuracy_vs_labels.png"))
    forgetting_plot = plot_accuracy_against_forgetting(cells, os.path.join(study_dir, "accuracy_vs_forgetting.png"))
    write_json(os.path.join(study_dir, "comparison.json"), {"cells": cells, "differences": differences, **results})
    rates = "\n".join(
        f"- {start}: "
        + "; ".join(
            f"{strategy} {choice['chosen']:g} "
            + (
                f"(validation {choice['validation_accuracy']})"
                if choice["validation_accuracy"]
                else "(set by the config)"
            )
            for strategy, choice in chosen.items()
        )
        for start, chosen in results["learning_rates"].items()
    )
    depth = max(
        (len(scores) for by_budget in results["layer_probes"].values() for scores in by_budget.values()), default=0
    )
    probe_rows = [
        {
            "start": start,
            "labels": budget,
            **{f"layer_{layer}": (scores[layer:] or [None])[0] for layer in range(depth)},
        }
        for start, by_budget in results["layer_probes"].items()
        for budget, scores in by_budget.items()
    ]
    probes = (
        [
            "## Linear probe of each frozen start, layer by layer (0: the embeddings)",
            "Held-out accuracy of a logistic regression on the mean-pooled features of one layer, before any "
            "fine-tuning: how much sentiment each start carries.",
            markdown_table(probe_rows),
        ]
        if probe_rows
        else []
    )
    stages = [{"start": start, **stage} for start, stage in results["pretraining"].items()]
    stage_table = markdown_table(stages) if stages else "(no pretrained start)"
    sections = [
        "# Transfer study: starts, label budgets, strategies",
        f"Machine: {results['machine']}; {results['precision']}; whole study {results['study_runtime_s']:.0f} s. "
        f"Held-out: {results['split_eval_samples']} reviews; seeds {results['seeds']}. accuracy is the mean over "
        "the seeds that did not fail; accuracy_95 resamples seeds and reviews.",
        "## Pretraining of each start (its masked-LM run; MiniLM: the probe that fits its head)",
        stage_table,
        "## Cells",
        cell_table,
        "## Each start against its control (full fine-tuning, paired by seed and review)",
        difference_table,
        *probes,
        "## Learning rates chosen on the validation split",
        rates,
        f"![accuracy against labelled reviews]({labels_plot})",
        f"![accuracy against forgetting]({forgetting_plot})",
    ]
    with open(os.path.join(study_dir, "comparison.md"), "w", encoding="utf-8") as handle:
        handle.write("\n\n".join(sections) + "\n")
    headline = {
        f"{d['start']}_minus_{d['against']}_at_{d['labels']}_points": d["difference_points"] for d in differences
    }
    # Runs that ended predicting one class are left out of every mean and pairing: the headline says how many.
    headline["failed_runs"] = sum(cell["failed"] for cell in cells)
    write_json(os.path.join(study_dir, "all_results.json"), {**results, **headline})
    return cell_table
