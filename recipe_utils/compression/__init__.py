"""Quantization, weight clustering and pruning of a classifier, saved and reloaded."""
