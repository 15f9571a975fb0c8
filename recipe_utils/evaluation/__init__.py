"""Scoring held-out data: metrics with intervals, baselines, batch inference and sampling."""
