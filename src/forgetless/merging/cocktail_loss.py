"""The two losses LM-Cocktail's weights can be computed from: forgetless's code length, or lm-cocktail's own.

LM-Cocktail (Xiao et al., arXiv 2311.13534) weighs each candidate model by
softmax(−L/T) of its loss L on a few target examples. The paper does not pin down
how L is averaged, and the two implementations differ:

- ``tokens`` (forgetless's default): every example is encoded as ``BOS + text + EOS``
  (``text`` = prompt + completion, or ``text``) and *every* token after BOS is scored;
  L is the mean over all scored tokens of all examples pooled (long examples weigh
  more). It is the code length of ``forgetless.evaluation.codelength``.
- ``lm-cocktail``: what lm-cocktail 0.0.4's ``compute_weights`` does for decoders
  (``preprocess_data_for_llm`` + ``llm_loss``): an example is
  ``tokenizer.encode(input + ' ' + output) + [EOS]``, only the tokens after
  ``tokenizer.encode(input)`` are scored (the output and EOS), examples are taken in
  batches of 2 in file order, each batch's loss is the mean over its scored tokens,
  and L is the mean of the batch losses (so a batch of short outputs weighs as much
  as a batch of long ones). Inputs are cut at 2048 tokens. This module reproduces
  that convention so forgetless's weights can equal the reference's
  (``bench/cocktail_agreement.py``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from forgetless.data.errors import DataError
from forgetless.data.formats import IGNORE
from forgetless.data.records import read_records

# lm-cocktail 0.0.4's defaults of mix_models_with_data / compute_weights for decoders.
REFERENCE_BATCH_SIZE = 2
REFERENCE_MAX_LENGTH = 2048


def example_pairs(path: str | Path, limit: int | None = None) -> list[tuple[str, str]]:
    """(input, output) of the first ``limit`` records: ``input``/``output`` (lm-cocktail's own
    format) or ``prompt``/``completion``; the loss is taken on the output only."""
    pairs = []
    for record in read_records(path)[:limit]:
        fields = record.fields
        for first, second in (("input", "output"), ("prompt", "completion")):
            if isinstance(fields.get(first), str) and isinstance(fields.get(second), str):
                pairs.append((fields[first], fields[second]))
                break
        else:
            raise DataError(path, record.where, "input", "the lm-cocktail loss needs string 'input' and 'output' "
                                                         "(or 'prompt' and 'completion'): it scores the output only")
    if not pairs:
        raise DataError(path, None, None, "expected at least one example")
    return pairs


def reference_batches(tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]],
                      batch_size: int = REFERENCE_BATCH_SIZE,
                      max_length: int = REFERENCE_MAX_LENGTH) -> list[dict[str, torch.Tensor]]:
    """lm-cocktail's decoder batches: ``input_ids``, ``labels``, ``attention_mask``, each [B, S].

    Padded on the right to the longest example of each batch (the reference pads every
    example to ``max_length``; right padding behind a causal mask changes no scored
    logit, so the loss is the same and a batch costs S tokens, not 2048). The mask is
    ``input_ids != pad`` as in the reference: when PAD is EOS the appended EOS is masked
    as a key, which no scored position can see anyway.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None or tokenizer.eos_token_id is None:
        raise ValueError("the lm-cocktail loss needs a tokenizer with an EOS token")
    rows = []
    for source, target in pairs:
        ids = [*tokenizer.encode(source + " " + target), tokenizer.eos_token_id]
        prompt = len(tokenizer.encode(source))
        labels = [IGNORE] * prompt + ids[prompt:]
        rows.append((ids[:max_length], labels[:max_length]))
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in chunk])
        labels = torch.tensor([lab + [IGNORE] * (width - len(lab)) for _, lab in chunk])
        batches.append({"input_ids": ids, "labels": labels, "attention_mask": ids.ne(pad).long()})
    return batches


@torch.no_grad()
def reference_loss(model: PreTrainedModel, batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean over batches of each batch's mean next-token NLL over its scored tokens (nats).

    Args:
        model: a causal LM.
        batches: from ``reference_batches``; ``input_ids``, ``labels`` and ``attention_mask`` of shape [B, S].

    Raises:
        ValueError: a batch has no scored token (its outputs were cut off at the length limit).
    """
    device = next(model.parameters()).device
    total = 0.0
    for batch in batches:
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # [B, S-1, V]
        targets = batch["labels"][:, 1:].to(device)  # [B, S-1]: token t is predicted at t-1
        scored = targets.ne(IGNORE)
        if not scored.any():
            raise ValueError("an lm-cocktail batch has no output token to score (outputs cut at the length limit)")
        nll = torch.nn.functional.cross_entropy(logits[scored], targets[scored], reduction="sum")
        total += float(nll) / int(scored.sum())
    return total / len(batches)
