"""Preference tuning of the review writer: pairs, judges, policies and rewards for DPO and RL."""
