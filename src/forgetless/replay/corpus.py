"""Corpus replay: a slice of a general corpus (a pretraining-data proxy) as ``text`` records.

The second comparison of arXiv 2505.13811: replaying real general text instead of
the model's own samples. Long documents are cut at whitespace into pieces of at
most ``max_chars`` characters, so a piece is about as long as a generated sample.
"""

from __future__ import annotations

import random
from pathlib import Path

from forgetless.data.texts import read_texts


def split_text(text: str, max_chars: int) -> list[str]:
    """Cut ``text`` into consecutive pieces of at most ``max_chars`` characters, at whitespace.

    A single word longer than ``max_chars`` becomes a piece of its own.
    """
    pieces, current = [], ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces


def corpus_slice(path: str | Path, num_samples: int, max_chars: int = 512, seed: int = 0,
                 order: str = "random") -> list[dict]:
    """``num_samples`` pieces of the texts in ``path`` as ``{"text"}`` records.

    Args:
        path: a general-text file whose records have a ``text`` field.
        num_samples: pieces wanted (all of them if fewer exist).
        max_chars: maximum characters per piece.
        seed: seed of the random draw.
        order: ``random`` (a seeded draw over all pieces) or ``first`` (the corpus's first pieces).

    Raises:
        DataError: a record has no string ``text``.
        ValueError: bad ``order`` or sizes.
    """
    if order not in ("random", "first"):
        raise ValueError(f"order must be 'random' or 'first', got {order!r}")
    if num_samples < 1 or max_chars < 1:
        raise ValueError(f"num_samples and max_chars must be positive, got {num_samples} and {max_chars}")
    pieces: list[str] = []
    for text in read_texts(path, "text"):
        pieces.extend(split_text(text, max_chars))
    if order == "random":
        pieces = random.Random(seed).sample(pieces, min(num_samples, len(pieces)))
    return [{"text": piece} for piece in pieces[:num_samples]]
