"""95% intervals for held-out accuracy: on 1,000 reviews it moves a point or two from seed to seed, so a
difference between two models means something only with its interval (scipy's bootstrap)."""

import numpy as np
from scipy.stats import bootstrap

RESAMPLES = 2000


def accuracy_interval(correct, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Bootstrap (BCa) interval of the share of correct predictions."""
    correct = np.asarray(correct, dtype=float)
    if correct.min() == correct.max():  # every review right, or every one wrong: no spread to resample
        return float(correct[0]), float(correct[0])
    result = bootstrap((correct,), np.mean, confidence_level=level, n_resamples=RESAMPLES, random_state=seed)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_difference_interval(correct, reference, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Interval of accuracy(correct) - accuracy(reference) on the same reviews, resampled in pairs, so the
    reviews both models find easy or hard do not widen it."""
    difference = np.asarray(correct, dtype=float) - np.asarray(reference, dtype=float)
    if difference.min() == difference.max():
        return float(difference[0]), float(difference[0])
    result = bootstrap((difference,), np.mean, confidence_level=level, n_resamples=RESAMPLES, random_state=seed)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
