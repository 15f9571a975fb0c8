"""Arguments, launch and processes, the machine's precision, and trainers the recipes share."""
