"""The study: one command from a base model and domain data to a frontier, a report and a recommendation."""
