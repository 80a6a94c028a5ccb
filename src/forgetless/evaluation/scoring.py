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
  the whole ``[B, T, V]`` tensor.

Any ``nn.Module`` whose ``forward(input_ids, attention_mask)`` returns an object with
``.logits [B, T, V]`` can be scored: a checkpoint, a PEFT model, an in-memory
interpolation, an output ensemble.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm


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


@dataclass(frozen=True)
class Capabilities:
    """Which optional forward arguments a model accepts (checked by signature)."""

    logits_to_keep: bool
    position_ids: bool
    kv_cache: bool


def core_model(model: nn.Module) -> nn.Module:
    """The module to call: a PEFT wrapper's base model (its LoRA layers are injected
    in place, so calling the base model runs the adapter), else the model itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def capabilities(model: nn.Module) -> Capabilities:
    """Inspect ``forward`` for ``logits_to_keep``, ``position_ids`` and ``past_key_values``.

    Only explicitly named parameters count: a ``**kwargs`` forward (a user's ensemble
    wrapper) gets the plain ``(input_ids, attention_mask)`` call, which always works.
    """
    params = inspect.signature(core_model(model).forward).parameters
    return Capabilities(
        logits_to_keep="logits_to_keep" in params,
        position_ids="position_ids" in params,
        kv_cache="past_key_values" in params and "use_cache" in params,
    )


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless module)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def _check(pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> None:
    for i, (context, continuation) in enumerate(pairs):
        if len(context) == 0:
            raise ValueError(f"request {i}: empty context; prepend BOS so the first token has something to condition on")
        if len(continuation) == 0:
            raise ValueError(f"request {i}: empty continuation; nothing to score")


@torch.no_grad()
def score_pairs(
    model: nn.Module,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    batch_size: int = 32,
    desc: str = "scoring",
    progress: bool = True,
) -> list[Score]:
    """Log-likelihood of each continuation given its context, batched.

    Args:
        model: a causal LM (``forward(input_ids [B, T], attention_mask [B, T]).logits [B, T, V]``).
        pairs: ``(context_ids, continuation_ids)`` per request; both non-empty.
        batch_size: requests per forward pass.
        desc: progress-bar label.
        progress: show a progress bar.

    Returns:
        One ``Score`` per request, in the order of ``pairs``.
    """
    _check(pairs)
    model.eval()
    core = core_model(model)
    caps = capabilities(model)
    device = model_device(model)
    # Longest first: the first batch shows the peak memory, and neighbours have similar lengths.
    order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    results: list[Score | None] = [None] * len(pairs)
    bar = tqdm(total=len(pairs), desc=desc, unit="req", leave=False, disable=not progress)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
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
        row_index, position, target, owner = [], [], [], []
        for r, i in enumerate(rows):
            context, continuation = pairs[i]
            for t, token in enumerate(continuation):
                row_index.append(r)
                position.append(len(context) - 1 + t - offset)
                target.append(token)
                owner.append(r)
        selected = logits[torch.tensor(row_index, device=logits.device), torch.tensor(position, device=logits.device)]
        selected = selected.float()  # [N, V]; fp32 normalizer whatever the model dtype
        targets = torch.tensor(target, device=logits.device)
        token_lp = selected.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(selected, dim=-1)
        hit = (selected.argmax(dim=-1) == targets).float()
        owners = torch.tensor(owner, device=logits.device)
        sums = torch.zeros(len(rows), dtype=torch.float64, device=logits.device).index_add_(0, owners, token_lp.double())
        misses = torch.zeros(len(rows), device=logits.device).index_add_(0, owners, 1.0 - hit)
        for r, i in enumerate(rows):
            results[i] = Score(logprob=float(sums[r]), greedy=bool(misses[r] == 0), tokens=len(pairs[i][1]))
        bar.update(len(rows))
    bar.close()
    return results  # type: ignore[return-value]


def encode_pair(tokenizer: object, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``(context, continuation)`` as one text would be tokenized.

    The context is encoded like a training prompt (BOS + text, ``encode_prompt``); the
    continuation is what encoding ``context + continuation`` adds after the context's
    ids (lm-eval's convention), so a word is scored as the tokenizer splits it in
    running text. When the joint encoding does not extend the context's (a merge
    across the boundary), the continuation is encoded on its own.
    """
    from forgetless.data.formats import encode_prompt

    context_ids = encode_prompt(tokenizer, context)  # type: ignore[arg-type]
    whole = encode_prompt(tokenizer, context + continuation)  # type: ignore[arg-type]
    if whole[: len(context_ids)] == context_ids and len(whole) > len(context_ids):
        return context_ids, whole[len(context_ids) :]
    return context_ids, tokenizer(continuation, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
