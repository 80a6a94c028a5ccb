"""Batched log-likelihood scoring of continuations: the engine under code length,
completion loss, multiple-choice accuracy and the lm-eval adapter.

A request is a pair ``(context_ids, continuation_ids)``; its score is
``sum_t log p(cont_t | context, cont_<t)`` and whether greedy decoding would have
produced the continuation (lm-eval's ``(logprob, is_greedy)``).

Why it is faster than scoring every position of a padded batch:

- requests are sorted by length (longest first), so a batch of ``batch_size``
  neighbours carries only a few padding tokens;
- the last token of a request is never fed (nothing it predicts is scored);
- when the model accepts ``logits_to_keep`` (every Hugging Face causal LM does),
  the output projection runs only from the first position any row of the batch
  scores, and the softmax normalizer is taken only at scored positions, never over
  the whole ``[B, T, V]`` tensor;
- requests that share a context (the choices of a multiple-choice question) run the
  context once: its KV cache is copied to every continuation of the group, so a
  four-way question costs one context plus four short continuations instead of
  four full sequences (models with a Hugging Face cache only).

Any ``nn.Module`` whose ``forward(input_ids, attention_mask)`` returns an object with
``.logits [B, T, V]`` can be scored: a checkpoint, a PEFT model, an in-memory
interpolation, an output ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from forgetless import special_tokens
from forgetless.models import Capabilities, capabilities, core_model, model_device, output_cache
from forgetless.positions import fit_pair, position_limit


@dataclass(frozen=True)
class Score:
    """The score of one request.

    Attributes:
        logprob: summed log-probability of the continuation, in nats (<= 0).
        greedy: True when every continuation token is the argmax at its position.
        tokens: number of continuation tokens scored.
    """

    logprob: float
    greedy: bool
    tokens: int


def _check(pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> None:
    for i, (context, continuation) in enumerate(pairs):
        if len(context) == 0:
            raise ValueError(f"request {i}: empty context; prepend BOS so the first token has something to condition on")
        if len(continuation) == 0:
            raise ValueError(f"request {i}: empty continuation; nothing to score")


def _token_logprobs(selected: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(target) [N], target is the argmax [N])`` from logits ``[N, V]`` (fp32 normalizer)."""
    selected = selected.float()
    log_p = selected.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(selected, dim=-1)
    return log_p, selected.argmax(dim=-1) == targets


def _collect(
    rows: list[int], pairs: Sequence[tuple[Sequence[int], Sequence[int]]], owner: torch.Tensor,
    log_p: torch.Tensor, hit: torch.Tensor, results: list[Score | None],
) -> None:
    """Sum token log-probabilities per request (``owner[k]`` = batch row of token k)."""
    sums = torch.zeros(len(rows), dtype=torch.float64, device=log_p.device).index_add_(0, owner, log_p.double())
    misses = torch.zeros(len(rows), device=log_p.device).index_add_(0, owner, (~hit).float())
    for r, i in enumerate(rows):
        results[i] = Score(logprob=float(sums[r]), greedy=bool(misses[r] == 0), tokens=len(pairs[i][1]))


def _score_flat(
    core: nn.Module, caps: Capabilities, device: torch.device, rows: list[int],
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]], results: list[Score | None],
) -> None:
    """One right-padded forward pass over whole requests."""
    # The last token is only ever a target, never an input.
    inputs = [list(pairs[i][0]) + list(pairs[i][1])[:-1] for i in rows]
    length = max(len(x) for x in inputs)
    ids = torch.zeros((len(rows), length), dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for r, x in enumerate(inputs):
        ids[r, : len(x)] = torch.tensor(x)
        mask[r, : len(x)] = 1
    # Position p predicts token p+1; row r scores positions c-1 .. c+m-2.
    first = min(len(pairs[i][0]) - 1 for i in rows)
    kwargs = {"logits_to_keep": length - first} if caps.logits_to_keep else {}
    logits = core(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs).logits
    offset = first if caps.logits_to_keep else 0
    row_index, position, target = [], [], []
    for r, i in enumerate(rows):
        context, continuation = pairs[i]
        for t, token in enumerate(continuation):
            row_index.append(r)
            position.append(len(context) - 1 + t - offset)
            target.append(token)
    dev = logits.device
    owner = torch.tensor(row_index, device=dev)
    log_p, hit = _token_logprobs(logits[owner, torch.tensor(position, device=dev)], torch.tensor(target, device=dev))
    _collect(rows, pairs, owner, log_p, hit, results)


def _score_shared(
    core: nn.Module, device: torch.device, contexts: list[tuple[int, ...]], members: list[list[int]],
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]], results: list[Score | None],
) -> None:
    """Contexts once (left-padded, cached), then all their continuations on copies of the cache."""
    from transformers import DynamicCache

    length = max(len(c) for c in contexts)
    ids = torch.zeros((len(contexts), length), dtype=torch.long)
    mask = torch.zeros((len(contexts), length), dtype=torch.long)
    for g, c in enumerate(contexts):
        ids[g, length - len(c) :] = torch.tensor(c)
        mask[g, length - len(c) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    cache_arg = capabilities(core).cache_arg or "past_key_values"  # only called for models with a cache
    out = core(input_ids=ids, attention_mask=mask, position_ids=positions, **{cache_arg: DynamicCache()},
               use_cache=True, logits_to_keep=1)
    rows = [i for group in members for i in group]
    group_of = torch.tensor([g for g, group in enumerate(members) for _ in group], device=device)
    first_logits = out.logits[group_of, -1]  # [M, V]: predicts each continuation's first token
    dev = first_logits.device
    owner = [r for r, i in enumerate(rows) for _ in pairs[i][1]]
    step = [t for i in rows for t in range(len(pairs[i][1]))]
    target = torch.tensor([tok for i in rows for tok in pairs[i][1]], device=dev)
    longest = max(len(pairs[i][1]) for i in rows)
    selected = torch.empty((len(target), first_logits.shape[-1]), dtype=first_logits.dtype, device=dev)
    first_rows = [k for k, t in enumerate(step) if t == 0]
    selected[first_rows] = first_logits
    if longest > 1:
        cache = output_cache(out)
        cache.batch_select_indices(group_of)  # one copy of its context's cache per continuation
        cont = torch.zeros((len(rows), longest - 1), dtype=torch.long)
        cont_mask = torch.zeros((len(rows), longest - 1), dtype=torch.long)
        for r, i in enumerate(rows):
            tail = list(pairs[i][1])[:-1]
            if tail:
                cont[r, : len(tail)] = torch.tensor(tail)
                cont_mask[r, : len(tail)] = 1
        cont, cont_mask = cont.to(device), cont_mask.to(device)
        # Right padding after the context is harmless: padded positions come last and are never read.
        full_mask = torch.cat([mask[group_of], torch.ones_like(cont_mask)], dim=1)
        cont_positions = positions[group_of, -1:] + 1 + torch.arange(longest - 1, device=device)
        logits = core(input_ids=cont, attention_mask=full_mask, position_ids=cont_positions, **{cache_arg: cache},
                      use_cache=True).logits  # [M, longest-1, V]
        later = [k for k, t in enumerate(step) if t > 0]
        selected[later] = logits[torch.tensor([owner[k] for k in later], device=dev),
                                 torch.tensor([step[k] - 1 for k in later], device=dev)]
    log_p, hit = _token_logprobs(selected, target)
    _collect(rows, pairs, torch.tensor(owner, device=dev), log_p, hit, results)


@torch.no_grad()
def score_pairs(
    model: nn.Module,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    batch_size: int = 32,
    desc: str = "scoring",
    progress: bool = True,
    share_prefix: bool = True,
) -> list[Score]:
    """Log-likelihood of each continuation given its context, batched.

    Args:
        model: a causal LM (``forward(input_ids [B, T], attention_mask [B, T]).logits [B, T, V]``).
        pairs: ``(context_ids, continuation_ids)`` per request; both non-empty.
        batch_size: requests per forward pass (distinct contexts per pass when they are shared).
        desc: progress-bar label.
        progress: show a progress bar.
        share_prefix: run a context shared by several requests once (needs a model with
            a Hugging Face KV cache; others always take the flat path).

    Returns:
        One ``Score`` per request, in the order of ``pairs``.
    """
    _check(pairs)
    limit = position_limit(model)
    pairs = [fit_pair(limit, list(c), list(k)) for c, k in pairs]  # within the model's positions
    model.eval()
    core = core_model(model)
    caps = capabilities(model)
    device = model_device(model)
    results: list[Score | None] = [None] * len(pairs)
    bar = tqdm(total=len(pairs), desc=desc, unit="req", leave=False, disable=not progress)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (context, _) in enumerate(pairs):
        groups.setdefault(tuple(context), []).append(i)
    shared = share_prefix and caps.kv_cache and caps.position_ids and caps.logits_to_keep and len(groups) < len(pairs)
    if shared:
        # Longest context first; neighbours have similar lengths, so little left padding.
        contexts = sorted(groups, key=lambda c: -len(c))
        for start in range(0, len(contexts), batch_size):
            chunk = contexts[start : start + batch_size]
            _score_shared(core, device, list(chunk), [groups[c] for c in chunk], pairs, results)
            bar.update(sum(len(groups[c]) for c in chunk))
    else:
        # Longest first: the first batch shows the peak memory, and neighbours have similar lengths.
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            _score_flat(core, caps, device, rows, pairs, results)
            bar.update(len(rows))
    bar.close()
    return results  # type: ignore[return-value]

def encode_pair(tokenizer: object, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``(context, continuation)`` as lm-eval's ``HFLM`` encodes them.

    The context is text, never a chat turn (lm-eval renders its own requests when asked),
    encoded with the tokenizer's BOS convention (``special_tokens.encode``); trailing spaces of the context move to the continuation
    and the continuation is what encoding ``context + continuation`` adds after the
    context's ids, so a word is scored as the tokenizer splits it in running text. An
    empty context is BOS alone (EOS without one), lm-eval's ``prefix_token_id``. When the
    joint encoding does not extend the context's (a merge across the boundary), the
    continuation is encoded on its own.
    """
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if not context:
        return special_tokens.context_prefix(tokenizer), tokenizer(continuation, add_special_tokens=False)["input_ids"]  # type: ignore[arg-type,operator]
    context_ids = special_tokens.encode(tokenizer, context)  # type: ignore[arg-type]
    whole = special_tokens.encode(tokenizer, context + continuation)  # type: ignore[arg-type]
    if whole[: len(context_ids)] == context_ids and len(whole) > len(context_ids):
        return context_ids, whole[len(context_ids) :]
    return context_ids, tokenizer(continuation, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
