"""The embedded testbed: general corpus, tokenizer, base model and domain tasks, built offline."""
