"""Pieces that more than one recipe uses: arguments, data, models, metrics, reports, cards."""
