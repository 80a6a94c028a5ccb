"""Code length of held-out general text: nats per token and bits per byte.

Code length is exactly the quantity whose change the exponential-tilting view of
forgetting (arXiv 2509.20758) bounds; bits per byte compares across tokenizers.
Every text is encoded as the model's tokenizer encodes it (``forgetless.special_tokens``:
``BOS + text`` where it adds BOS, the bare text where it does not), then EOS; every
token after the first is scored once (EOS included), so a model that predicts uniformly
over ``V`` tokens has a code length of exactly ``ln V`` nats per token. Without BOS the
text's first token is context only, as it is for every tool that follows the tokenizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedTokenizerBase

from forgetless import special_tokens
from forgetless.data.formats import IGNORE
from forgetless.evaluation.scoring import score_pairs
from forgetless.positions import position_limit


@dataclass(frozen=True)
class CodeLength:
    """Summed and averaged code length of a set of texts (or of one text)."""

    nats: float
    tokens: int
    bytes: int

    @property
    def nats_per_token(self) -> float:
        return self.nats / self.tokens

    @property
    def bits_per_byte(self) -> float:
        return self.nats / math.log(2) / self.bytes


def text_windows(tokenizer: PreTrainedTokenizerBase, texts: list[str], window: int) -> list[dict[str, list[int]]]:
    """Encode texts (the convention's BOS, text, EOS) and cut each into windows of at most ``window`` tokens.

    Every token after the first of each text is scored exactly once; a window
    after the first starts with the last token of the previous one as context.
    Each window also carries ``text``, the index of its text.
    """
    if window < 2:
        raise ValueError(f"window={window}: expected at least 2 tokens (one context, one scored)")
    windows = []
    for index, text in enumerate(texts):
        # verbose=False: long texts are expected (they are windowed below), so the
        # tokenizer's "longer than model_max_length" warning would only be noise.
        ids = [*special_tokens.encode(tokenizer, text, verbose=False), tokenizer.eos_token_id]
        for start in range(0, len(ids) - 1, window - 1):
            chunk = ids[start : start + window]
            windows.append({"input_ids": chunk, "labels": [IGNORE, *chunk[1:]], "text": index})
    return windows


def text_code_lengths(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: list[str], window: int = 256, batch_size: int = 16,
    progress: bool = True,
) -> list[CodeLength]:
    """Code length of each text separately (the unit a bootstrap resamples).

    Args:
        model: a causal LM or anything with ``forward(input_ids, attention_mask).logits``.
        tokenizer: its tokenizer (needs BOS and EOS).
        texts: documents or paragraphs.
        window: maximum tokens per forward pass; longer texts are cut into windows
            that overlap by one token, so nothing is scored twice (context is then
            shorter than the text, which makes code length a little higher).
        batch_size: windows per forward pass.
        progress: show a progress bar.

    Returns:
        One ``CodeLength`` per text, in order.
    """
    limit = position_limit(model)
    windows = text_windows(tokenizer, texts, min(window, limit) if limit else window)
    scores = score_pairs(model, [(w["input_ids"][:1], w["input_ids"][1:]) for w in windows], batch_size,
                         desc="code length", progress=progress)
    nats = [0.0] * len(texts)
    tokens = [0] * len(texts)
    for w, score in zip(windows, scores):
        nats[w["text"]] -= score.logprob
        tokens[w["text"]] += score.tokens
    return [CodeLength(nats=n, tokens=t, bytes=len(text.encode("utf-8"))) for n, t, text in zip(nats, tokens, texts)]


def code_length(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: list[str], window: int = 256, batch_size: int = 16
) -> CodeLength:
    """Code length of ``texts`` under ``model`` (no gradient, eval mode).

    Args:
        model: a causal LM.
        tokenizer: its tokenizer.
        texts: documents or paragraphs.
        window: maximum tokens per forward pass.
        batch_size: windows per forward pass (sorted by length, so padding is small).

    Returns:
        The summed NLL in nats, the number of scored tokens, and the UTF-8 bytes of the texts.
    """
    parts = text_code_lengths(model, tokenizer, texts, window, batch_size)
    return CodeLength(nats=sum(p.nats for p in parts), tokens=sum(p.tokens for p in parts),
                      bytes=sum(p.bytes for p in parts))
