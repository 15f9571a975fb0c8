"""What every other group stands on: argument dataclasses and their parser, one-line errors, the processes of a
launch, the machine's precision, and the files a run writes."""
