"""Reading review datasets and text corpora, and shaping them for each trainer."""
