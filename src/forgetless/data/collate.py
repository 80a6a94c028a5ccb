"""Batching: padding collation and optional packing of examples into fixed blocks."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from forgetless.data.formats import IGNORE, Example


def pack(examples: list[Example], block_size: int) -> list[Example]:
    """Concatenate examples and cut the stream into blocks of ``block_size`` tokens.

    Examples are joined end to end (each already ends with EOS) and the tail
    that does not fill a block is dropped. The first label of every block is set
    to ``-100``: nothing in the block predicts it, and it keeps the invariant that
    position 0 is never supervised.

    Args:
        examples: encoded examples, in order.
        block_size: tokens per block.

    Returns:
        Blocks with ``input_ids`` and ``labels`` of exactly ``block_size`` tokens.
    """
    ids: list[int] = []
    labels: list[int] = []
    for example in examples:
        ids.extend(example["input_ids"])
        labels.extend(example["labels"])
    blocks = []
    for start in range(0, len(ids) - block_size + 1, block_size):
        block_labels = labels[start : start + block_size]
        block_labels[0] = IGNORE
        blocks.append({"input_ids": ids[start : start + block_size], "labels": block_labels})
    return blocks


@dataclass
class PadCollator:
    """Pad a list of examples on the right into a batch.

    Returns tensors ``input_ids [B, T]``, ``attention_mask [B, T]`` and
    ``labels [B, T]`` (``-100`` on padding), with ``T`` the longest example.
    When any example carries a ``sample_weight`` (a float: FLOW's per-sample
    weight, a replay source's loss weight), the batch also has
    ``sample_weight [B]`` (1.0 for examples without one); the trainer multiplies
    every token weight of a sample by it.
    """

    pad_token_id: int

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        length = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), length), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(examples), length), dtype=torch.long)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            ids[row, :n] = torch.tensor(example["input_ids"])
            labels[row, :n] = torch.tensor(example["labels"])
            mask[row, :n] = 1
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if any("sample_weight" in e for e in examples):
            batch["sample_weight"] = torch.tensor([float(e.get("sample_weight", 1.0)) for e in examples])
        return batch
