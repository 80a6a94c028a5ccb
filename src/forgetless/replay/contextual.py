"""Contextual synthetic data: the base model's own completions of the fine-tuning prompts.

The comparison arXiv 2505.13811 makes against context-free replay (which it found
more effective): instead of sampling from BOS, the base model answers the domain's
prompts, and the pairs are replayed as prompt/completion data, so the loss
is on the completion only, as for the domain data.
"""

from __future__ import annotations

import random
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from forgetless.data.formats import encode_prompt
from forgetless.data.texts import read_texts
from forgetless.replay.generate import SamplingSettings, sample_sequences


def read_prompts(path: str | Path, limit: int | None = None, seed: int = 0) -> list[str]:
    """The ``prompt`` of every record of a prompt/completion file (or ``limit`` of them, drawn with ``seed``).

    Raises:
        DataError: a record has no string ``prompt`` (``forgetless.data.texts.read_texts``).
    """
    prompts = read_texts(path, "prompt")
    if limit is not None and limit < len(prompts):
        prompts = random.Random(seed).sample(prompts, limit)
    return prompts


def contextual_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    settings: SamplingSettings,
    progress: bool = True,
) -> list[dict]:
    """The model's completions of ``prompts`` as prompt/completion records.

    Prompts are encoded exactly as training encodes them (``encode_prompt``) and
    sampled in batches (left-padded, KV cache) with ``settings``; temperature 0
    gives greedy answers. A completion that is empty (EOS at once) is left out,
    because a prompt/completion record needs a completion.

    Returns:
        ``{"prompt", "completion", "finished"}`` records, in prompt order.
    """
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    # Sorting by length keeps padding small; the order of the draws follows it.
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    samples = sample_sequences(model, [encoded[i] for i in order], settings, tokenizer.eos_token_id, pad, progress)
    by_prompt = dict(zip(order, samples, strict=True))
    records = []
    for i, prompt in enumerate(prompts):
        sample = by_prompt[i]
        text = tokenizer.decode([t for t in sample.token_ids if t != tokenizer.eos_token_id], skip_special_tokens=True)
        if text.strip():
            records.append({"prompt": prompt, "completion": text, "finished": sample.finished})
    return records
