"""The training engine: one Trainer subclass and the run that drives it."""
