"""The demo application above the recipes: `make demo` runs every recipe's demo target in turn (tour.py)
and writes outputs/REPORT.md from their results (report.py)."""
