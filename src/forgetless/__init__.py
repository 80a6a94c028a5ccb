"""forgetless: fine-tune language models on a domain without losing what they already know."""

__version__ = "0.1.0"
