"""Human-readable results: the comparison table printed at the end of a run, and PNG plots."""

import os

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(figure, path: str) -> str:
    """Write a finished figure as a PNG and free it; returns the file name, as a report links it."""
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return os.path.basename(path)


def comparison_rows(results: dict, metrics=("accuracy", "f1", "f1_macro")) -> list[dict]:
    """One row per model found in all_results-style keys: baseline_<name>_*, before_*, eval_*."""
    prefixes = sorted({key[: -len("_accuracy")] for key in results if key.endswith("_accuracy")})
    order = {"eval": 2, "before": 1}
    prefixes.sort(key=lambda prefix: (order.get(prefix, 0), prefix))
    names = {"eval": "fine-tuned", "before": "before fine-tuning"}
    return [
        {
            "model": names.get(prefix, prefix.removeprefix("baseline_").replace("_", " ")),
            **{metric: results.get(f"{prefix}_{metric}") for metric in metrics},
        }
        for prefix in prefixes
    ]


def markdown_table(rows: list[dict]) -> str:
    """Rows as a markdown table; its columns are every key in the order first met, "-" where a row has none."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [
            f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))
            for value in (row.get(column) for column in columns)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_training_curves(log_history: list[dict], path: str, metrics=("eval_accuracy", "eval_f1")) -> str:
    """Training loss (and eval loss/metrics when logged) against optimizer steps."""
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(11, 4))
    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry]
    evals = [entry for entry in log_history if any(key.startswith("eval_") for key in entry)]
    if train:
        loss_axis.plot(*zip(*train, strict=True), label="train loss")
    eval_losses = [(e["step"], e["eval_loss"]) for e in evals if "eval_loss" in e]
    if eval_losses:
        loss_axis.plot(*zip(*eval_losses, strict=True), "o-", label="eval loss")
    for metric in metrics:
        points = [(e["step"], e[metric]) for e in evals if metric in e]
        if points:
            metric_axis.plot(*zip(*points, strict=True), "o-", label=metric)
    loss_axis.set(xlabel="step", ylabel="loss", title="Loss")
    metric_axis.set(xlabel="step", title="Held-out metrics")
    for axis in (loss_axis, metric_axis):
        if axis.has_data():
            axis.legend()
        axis.grid(alpha=0.3)
    return save_figure(figure, path)


def plot_confusion_matrix(matrix: list[list[int]], label_names: list[str], path: str) -> str:
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.imshow(matrix, cmap="Blues")
    for row, values in enumerate(matrix):
        for column, value in enumerate(values):
            axis.text(column, row, str(value), ha="center", va="center")
    axis.set_xticks(range(len(label_names)), label_names)
    axis.set_yticks(range(len(label_names)), label_names)
    axis.set(xlabel="predicted", ylabel="true", title="Held-out confusion matrix")
    return save_figure(figure, path)


def plot_comparison(rows: list[dict], path: str, metrics) -> str:
    """Bar charts per variant: the quality metrics, then trainable parameters (log scale) and training time."""
    panels = [metric for metric in (*metrics, "trainable_params", "train_runtime_s") if metric in rows[0]]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4))
    axes = [axes] if len(panels) == 1 else axes
    names = [str(row["variant"]) for row in rows]
    for axis, metric in zip(axes, panels, strict=True):
        values = [row[metric] or 0 for row in rows]
        axis.bar(names, values, color="tab:blue")
        axis.set_title(metric)
        axis.tick_params(axis="x", rotation=30)
        if metric == "trainable_params":
            axis.set_yscale("log")
    save_figure(figure, path)
    return path


def plot_size_accuracy(rows: list[dict], path: str) -> str:
    """Held-out accuracy against size on disk (log scale), with 95% intervals and the Pareto front joined."""
    figure, axis = plt.subplots(figsize=(8, 5))
    for row in rows:
        low, high = (float(value) for value in row["accuracy_95"].split("-"))
        axis.errorbar(
            row["size_mb"],
            row["accuracy"],
            yerr=[[row["accuracy"] - low], [high - row["accuracy"]]],
            fmt="o",
            color="tab:red" if row["pareto"] else "tab:gray",
            capsize=3,
        )
        axis.annotate(
            row["setting"], (row["size_mb"], row["accuracy"]), fontsize=7, xytext=(4, 3), textcoords="offset points"
        )
    front = sorted((row["size_mb"], row["accuracy"]) for row in rows if row["pareto"])
    axis.plot(*zip(*front, strict=True), "-", color="tab:red", label="Pareto front")
    axis.set_xscale("log")
    axis.set(xlabel="weights on disk (MB, log scale)", ylabel="held-out accuracy", title="Accuracy against size")
    axis.grid(alpha=0.3)
    axis.legend()
    return save_figure(figure, path)
