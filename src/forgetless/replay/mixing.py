"""Mixing replay samples into the training data: a ratio of replay to domain examples, a loss weight λ.

Context-free replay (arXiv 2505.13811) trains with the usual loss over the whole
generated sequence, so replay files in the ``text`` format are supervised on every
token. Contextual replay (prompt/completion) follows the run's completion-only
setting. The paper leaves the ratio r and the weight λ open; both are exposed:

- ``ratio``: ``round(r · n_domain)`` replay examples are drawn with the run's seed
  (without replacement while the file lasts, then again), so r = 0.5 adds one
  replay example for every two domain examples;
- ``weight``: every replay example carries ``sample_weight = λ``, which the trainer
  multiplies into its token weights (``L = Σ w_t ℓ_t / N`` with N the supervised
  tokens of the batch, replay tokens included).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from forgetless.data.errors import DataError
from forgetless.data.formats import IGNORE, Example, encode_records
from forgetless.data.records import read_records


def load_replay_examples(
    path: str | Path, tokenizer: PreTrainedTokenizerBase, max_length: int, completion_only: bool = True
) -> list[Example]:
    """Read and encode a replay file (``text``, prompt/completion or messages).

    Two things differ from ordinary training data, both because of how samples are
    drawn: a ``text`` record whose text is empty (the model emitted EOS at once) is
    skipped, and a record marked ``"finished": false`` (cut at the length limit)
    gets no loss on the EOS that encoding appends, since the model never ended it.

    Raises:
        DataError: the file is bad, or no record is left to train on.
    """
    records = read_records(path)
    kept = [r for r in records if not (isinstance(r.fields.get("text"), str) and not r.fields["text"].strip()
                                       and "prompt" not in r.fields and "messages" not in r.fields)]
    if not kept:
        raise DataError(path, None, "text", "every replay sample is empty; expected at least one non-empty sample")
    examples = encode_records(tokenizer, kept, path, "auto", max_length, completion_only, truncate=True)
    for record, example in zip(kept, examples, strict=True):
        if record.fields.get("finished") is False and example["input_ids"][-1] == tokenizer.eos_token_id:
            example["labels"][-1] = IGNORE
    return examples


def mix_replay(
    domain: list[Example], replay: list[Example], ratio: float | None = None, weight: float = 1.0, seed: int = 0
) -> list[Example]:
    """Domain examples followed by the drawn replay examples, each replay one weighted by λ.

    Order does not matter: the trainer's sampler shuffles (or groups by length) with
    its own seed.

    Args:
        domain: the encoded fine-tuning examples.
        replay: the encoded replay examples.
        ratio: replay examples per domain example; None takes every replay example once.
        weight: the loss weight λ of replay examples.
        seed: seed of the draw.

    Returns:
        A new list; the inputs are not modified.
    """
    if ratio is not None and ratio < 0:
        raise ValueError(f"replay ratio must be >= 0, got {ratio}")
    if weight < 0:
        raise ValueError(f"replay weight must be >= 0, got {weight}")
    if ratio is None:
        chosen = list(range(len(replay)))
    else:
        wanted = round(ratio * len(domain))
        if wanted and not replay:  # whole passes over nothing would never reach ``wanted``
            raise ValueError(f"replay ratio {ratio:g} asks for {wanted} replay examples, but the replay data holds none")
        rng = random.Random(seed)
        chosen = []
        while len(chosen) < wanted:  # whole passes over a shuffled file, then a partial one
            order = list(range(len(replay)))
            rng.shuffle(order)
            chosen.extend(order[: wanted - len(chosen)])
    drawn = [{**replay[i], "sample_weight": float(weight)} for i in chosen]
    return [*domain, *drawn]


def add_replay(
    domain: list[Example], replay: Any, tokenizer: PreTrainedTokenizerBase, max_length: int,
    completion_only: bool = True, seed: int = 0,
) -> list[Example]:
    """``domain`` with the replay a ``ReplayConfig`` asks for (``load_replay_examples`` + ``mix_replay``)."""
    examples = load_replay_examples(replay.data, tokenizer, max_length, completion_only)
    return mix_replay(domain, examples, replay.ratio, replay.weight, seed)
