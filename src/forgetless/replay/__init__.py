"""Replay from the base model: context-free and contextual generation, corpus replay, mixing, the KL estimate."""
