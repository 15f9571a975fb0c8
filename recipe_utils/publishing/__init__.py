"""What a run leaves behind: its folder, JSON, plots, model card, tracker links and Hub upload."""
