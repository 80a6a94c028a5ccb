"""Code length of held-out general text: nats per token and bits per byte.

Code length is exactly the quantity whose change the exponential-tilting view of
forgetting (arXiv 2509.20758) bounds; bits per byte compares across tokenizers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from forgetless.data.collate import PadCollator
from forgetless.data.formats import IGNORE
from forgetless.training.trainer import token_nll


@dataclass(frozen=True)
class CodeLength:
    """Summed and averaged code length of a set of texts."""

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
    """Encode texts (BOS + text + EOS) and cut each into windows of at most ``window`` tokens.

    Every token after the first of each text is scored exactly once; a window
    after the first starts with the last token of the previous one as context.
    """
    windows = []
    for text in texts:
        ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
        for start in range(0, len(ids) - 1, window - 1):
            chunk = ids[start : start + window]
            windows.append({"input_ids": chunk, "labels": [IGNORE, *chunk[1:]]})
    return windows


@torch.no_grad()
def code_length(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], window: int = 256, batch_size: int = 16
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
    model.eval()
    windows = sorted(text_windows(tokenizer, texts, window), key=lambda w: len(w["input_ids"]))
    collate = PadCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    nats, tokens = 0.0, 0
    for start in tqdm(range(0, len(windows), batch_size), desc="scoring", unit="batch", leave=False):
        batch = {k: v.to(device) for k, v in collate(windows[start : start + batch_size]).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss, mask = token_nll(logits, batch["labels"])
        nats += loss.sum().item()
        tokens += int(mask.sum())
    return CodeLength(nats=nats, tokens=tokens, bytes=sum(len(t.encode("utf-8")) for t in texts))
