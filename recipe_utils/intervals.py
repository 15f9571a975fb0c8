"""95% intervals for held-out accuracy: on 1,000 reviews it moves a point or two from seed to seed, so a
difference between two models means something only with its interval (scipy's bootstrap)."""

import numpy as np
from scipy.stats import bootstrap

RESAMPLES = 2000


def accuracy_interval(correct, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Bootstrap (BCa) interval of the share of correct predictions."""
    return _mean_interval(np.asarray(correct, dtype=float), seed, level)


def paired_difference_interval(correct, reference, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Interval of accuracy(correct) - accuracy(reference) on the same reviews, resampled in pairs, so the
    reviews both models find easy or hard do not widen it."""
    return _mean_interval(np.asarray(correct, dtype=float) - np.asarray(reference, dtype=float), seed, level)


def _mean_interval(values: np.ndarray, seed: int, level: float) -> tuple[float, float]:
    if values.min() == values.max():  # every value alike (all right, all wrong, no difference): nothing to resample
        return float(values[0]), float(values[0])
    result = bootstrap((values,), np.mean, confidence_level=level, n_resamples=RESAMPLES, random_state=seed)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
