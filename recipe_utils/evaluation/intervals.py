"""95% intervals for held-out accuracy and a paired test: on 1,000 reviews accuracy moves a point or two from
seed to seed, so a difference between two models means something only with its interval (scipy's
bootstrap) and, for two classifiers scored on the same reviews, McNemar's test."""

import numpy as np
from scipy.stats import binomtest, bootstrap

RESAMPLES = 2000


def accuracy_interval(correct, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Bootstrap (BCa) interval of the share of correct predictions."""
    return _mean_interval(np.asarray(correct, dtype=float), seed, level)


def paired_difference_interval(correct, reference, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Interval of accuracy(correct) - accuracy(reference) on the same reviews, resampled in pairs, so the
    reviews both models find easy or hard do not widen it."""
    return _mean_interval(np.asarray(correct, dtype=float) - np.asarray(reference, dtype=float), seed, level)


def mcnemar_p_value(correct, reference) -> float:
    """Exact McNemar test of two classifiers on the same reviews: only the reviews exactly one of them gets
    right carry information, and under "equally accurate" each such review is a fair coin (a two-sided
    binomial test on them, which is what statsmodels' mcnemar(exact=True) computes)."""
    correct, reference = np.asarray(correct, dtype=bool), np.asarray(reference, dtype=bool)
    only_first = int(np.sum(correct & ~reference))
    disagreements = only_first + int(np.sum(~correct & reference))
    if disagreements == 0:
        return 1.0
    return float(binomtest(only_first, disagreements, 0.5).pvalue)


def _mean_interval(values: np.ndarray, seed: int, level: float) -> tuple[float, float]:
    if values.min() == values.max():  # every value alike (all right, all wrong, no difference): nothing to resample
        return float(values[0]), float(values[0])
    result = bootstrap((values,), np.mean, confidence_level=level, n_resamples=RESAMPLES, random_state=seed)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def seeds_and_reviews_interval(values, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean of a (runs x reviews) table, e.g. one cell's correct answers over its seeds, or
    two cells' paired differences. Resamples both the runs and the reviews (a two-level bootstrap,
    percentile interval), so it widens with seed-to-seed spread as well as with the sampling of the held-out
    set. With three runs it is coarse, as three seeds are."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or not values.size:
        raise ValueError(f"expected a non-empty (runs x reviews) table, got shape {values.shape}")
    rng = np.random.default_rng(seed)
    runs, reviews = values.shape
    run_draws = rng.integers(0, runs, size=(RESAMPLES, runs))
    review_draws = rng.integers(0, reviews, size=(RESAMPLES, reviews))
    # Each run's mean over a resampled set of reviews, then the mean over a resampled set of runs.
    run_means = np.stack([values[:, draw].mean(axis=1) for draw in review_draws])  # (RESAMPLES, runs)
    means = np.take_along_axis(run_means, run_draws, axis=1).mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def paired_comparison(correct, reference, seed: int) -> dict:
    """A classifier against a reference on the same reviews: the accuracy difference in points, its 95% paired
    interval, McNemar's p and the verdict the interval allows ("better", "worse", "no difference shown")."""
    correct, reference = np.asarray(correct, dtype=bool), np.asarray(reference, dtype=bool)
    low, high = paired_difference_interval(correct, reference, seed)
    return {
        "difference_points": 100 * float(correct.mean() - reference.mean()),
        "difference_95": (100 * low, 100 * high),
        "mcnemar_p": mcnemar_p_value(correct, reference),
        "verdict": "better" if low > 0 else "worse" if high < 0 else "no difference shown",
    }
