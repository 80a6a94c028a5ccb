"""Batched greedy decoding of completions for exact-match evaluation."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from forgetless.data.formats import encode_prompt


@torch.no_grad()
def greedy_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int = 96,
    batch_size: int = 32,
) -> list[str]:
    """Greedy completions of ``prompts``, batched with left padding and the KV cache.

    Prompts are encoded exactly as in training (``encode_prompt``); each sequence
    stops at EOS. Prompts are sorted by length so batches carry little padding.

    Returns:
        The decoded completions, in the order of ``prompts``.
    """
    model.eval()
    device = next(model.parameters()).device
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    outputs: list[str] = [""] * len(prompts)
    for start in tqdm(range(0, len(order), batch_size), desc="generating", unit="batch", leave=False):
        rows = order[start : start + batch_size]
        length = max(len(encoded[i]) for i in rows)
        ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, length - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[r, length - len(encoded[i]) :] = 1
        generated = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        for r, i in enumerate(rows):
            outputs[i] = tokenizer.decode(generated[r, length:], skip_special_tokens=True)
    return outputs
