"""How many positions a model can attend over, so generation and scoring stay inside it.

Models with learned absolute positions (GPT-2's ``wpe``) fail with an index error one
token past ``n_positions``; rotary models (Llama) run on but were never trained there.
Either way the caller should not go beyond the configured limit.
"""

from __future__ import annotations

from typing import Any


def position_limit(model: Any) -> int | None:
    """``max_position_embeddings`` of a model or of its config (GPT-2 maps it to ``n_positions``), or None if none is set."""
    value = getattr(getattr(model, "config", model), "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def fit_new_tokens(model: Any, prompt_length: int, max_new_tokens: int) -> int:
    """``max_new_tokens``, lowered so that a prompt of ``prompt_length`` plus them fits the model.

    Raises:
        ValueError: the prompt alone leaves no room for one new token.
    """
    limit = position_limit(model)
    if limit is None:
        return max_new_tokens
    if prompt_length >= limit:
        raise ValueError(f"a prompt of {prompt_length} tokens leaves no room to generate within the model's {limit} positions")
    return min(max_new_tokens, limit - prompt_length)


def fit_pair(limit: int | None, context: list[int], continuation: list[int]) -> tuple[list[int], list[int]]:
    """Cut ``context`` from the left (as lm-eval's HFLM does) so that scoring the pair fits ``limit`` positions.

    Scoring feeds ``context + continuation[:-1]``, so the pair fits when that is at most
    ``limit`` (``position_limit(model)``; None: no limit).

    Raises:
        ValueError: the continuation alone does not fit.
    """
    if limit and len(context) + len(continuation) - 1 > limit:
        if len(continuation) > limit:  # it needs one context token plus all but its last token
            raise ValueError(f"a continuation of {len(continuation)} tokens does not fit the model's {limit} positions")
        context = context[-(limit + 1 - len(continuation)) :]
    return context, continuation
