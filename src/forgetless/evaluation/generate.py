"""Batched greedy decoding with the KV cache and per-sequence stopping.

``transformers``' ``generate`` keeps a finished sequence in the batch until every
sequence has finished, padding it step after step. Here a sequence that emits EOS (or
meets its stop rule: lm-eval's stop strings) leaves the batch at once: its rows are dropped from the KV cache
(``Cache.batch_select_indices``), so the remaining steps cost only what the
unfinished sequences need. The cache has room for the whole sequence from the start
(``forgetless.kv_cache``), so a step copies its own token's keys and values, not the
whole cache as ``DynamicCache``'s ``torch.cat`` does. Prompts are left-padded with explicit position ids, so
a padded prompt decodes exactly as it would alone.

Models without a cache in their ``forward`` (a wrapper with only
``forward(input_ids, attention_mask)``, such as an output ensemble) are decoded by
re-running the whole prefix each step: slower, same result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from forgetless.data.formats import encode_prompt
from forgetless.evaluation.scoring import capabilities, core_model, model_device
from forgetless.kv_cache import reserved_cache
from forgetless.models import output_cache
from forgetless.positions import fit_new_tokens


def _left_pad(prompts: list[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, length - len(p) :] = torch.tensor(list(p))
        mask[r, length - len(p) :] = 1
    return ids, mask


# A row's stopping rule besides EOS: called with the tokens it has generated so far (EOS never among them),
# True once the row is done; its last token is kept.
StopRule = Callable[[list[int]], bool]


@torch.no_grad()
def _decode_batch(
    model: nn.Module, prompts: list[Sequence[int]], max_new_tokens: int, eos_id: int | None, pad_id: int,
    stop: StopRule | None = None,
) -> list[list[int]]:
    """Greedy continuations (EOS excluded) of one batch of prompts."""
    core = core_model(model)
    caps = capabilities(model)
    device = model_device(model)
    ids, mask = _left_pad(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    out_tokens: list[list[int]] = [[] for _ in prompts]
    alive = torch.arange(len(prompts), device=device)  # batch row -> prompt index
    kwargs: dict = {}
    if caps.position_ids:
        kwargs["position_ids"] = positions
    # Room for the prompt and the whole budget: each step writes its token's keys and values in place.
    kwargs.update(caps.with_cache(reserved_cache(ids.shape[1] + max_new_tokens)))
    if caps.logits_to_keep:
        kwargs["logits_to_keep"] = 1
    output = core(input_ids=ids, attention_mask=mask, **kwargs)
    next_position = positions[:, -1] + 1
    for step in range(max_new_tokens):
        # Argmax on the logits' own dtype: the largest bf16 logit is the largest once widened too.
        token = output.logits[:, -1].argmax(dim=-1)  # [B_alive]
        tokens = token.tolist()  # one transfer per step, not one per row
        finished = []
        for index, t in zip(alive.tolist(), tokens):
            if t == eos_id:
                finished.append(True)
                continue
            out_tokens[index].append(t)
            finished.append(stop is not None and stop(out_tokens[index]))
        if step == max_new_tokens - 1 or all(finished):
            break
        if any(finished):
            # Per-sequence stopping: finished rows leave the batch and the cache.
            keep = torch.tensor([r for r, done in enumerate(finished) if not done], device=device)
            alive, token, mask, next_position = alive[keep], token[keep], mask[keep], next_position[keep]
            ids = ids[keep]
            if caps.kv_cache:
                output_cache(output).batch_select_indices(keep)
        mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
        if caps.kv_cache:
            kwargs = caps.with_cache(output_cache(output))
            if caps.position_ids:
                kwargs["position_ids"] = next_position[:, None]
            if caps.logits_to_keep:
                kwargs["logits_to_keep"] = 1
            output = core(input_ids=token[:, None], attention_mask=mask, **kwargs)
        else:
            ids = torch.cat([ids, token[:, None]], dim=1)
            kwargs = {}
            if caps.position_ids:
                kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
            if caps.logits_to_keep:
                kwargs["logits_to_keep"] = 1
            output = core(input_ids=ids, attention_mask=mask, **kwargs)
        next_position = next_position + 1
    return out_tokens


def greedy_decode(
    model: nn.Module,
    prompts: list[Sequence[int]],
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int,
    batch_size: int = 32,
    progress: bool = True,
    stop: StopRule | None = None,
) -> list[list[int]]:
    """Greedy continuations of tokenized prompts, batched.

    Args:
        model: a causal LM, or any module with ``forward(input_ids, attention_mask).logits``.
        prompts: token ids per prompt (non-empty).
        max_new_tokens: generation budget per prompt.
        eos_token_id: a sequence stops when it emits this token (not returned).
        pad_token_id: left-padding id (masked out, so its value does not matter).
        batch_size: prompts decoded together; prompts are sorted by length first.
        progress: show a progress bar.
        stop: a sequence also stops (leaving the batch, its last token kept) once ``stop`` says so of the
            tokens it has generated (lm-eval's stop strings: ``forgetless.evaluation.lmeval``).

    Returns:
        The generated token ids per prompt, in the order of ``prompts``.
    """
    if any(len(p) == 0 for p in prompts):
        raise ValueError("greedy_decode: every prompt needs at least one token (BOS)")
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[list[int]] = [[] for _ in prompts]
    bar = tqdm(total=len(prompts), desc="generating", unit="seq", leave=False, disable=not progress)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        budget = fit_new_tokens(model, max(len(prompts[i]) for i in rows), max_new_tokens)  # within its positions
        for i, tokens in zip(rows, _decode_batch(model, [prompts[i] for i in rows], budget,
                                                 eos_token_id, pad_token_id, stop)):
            outputs[i] = tokens
        bar.update(len(rows))
    bar.close()
    return outputs


def greedy_completions(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int = 96,
    batch_size: int = 32,
    progress: bool = True,
) -> list[str]:
    """Greedy completions of ``prompts``, batched with left padding and the KV cache.

    Prompts are encoded exactly as in training (``encode_prompt``: BOS + prompt);
    each sequence stops at EOS. Prompts are sorted by length so batches carry
    little padding.

    Returns:
        The decoded completions, in the order of ``prompts``.
    """
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens = greedy_decode(model, encoded, max_new_tokens, tokenizer.eos_token_id, pad, batch_size, progress)
    return [tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
