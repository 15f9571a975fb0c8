"""The library the recipes share, grouped by concern: data, models (and adapters), training (arguments, launch,
processes), evaluation, alignment, compression and publishing. Nothing here imports a recipe or the demo."""

import os

# The checkout the package is installed from (editable): recipes/ and model_cards/ sit beside it.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
