"""Load a data file into encoded training examples: read, validate, encode, pack."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerBase

from forgetless.data.collate import pack
from forgetless.data.formats import Example, Format, encode_records
from forgetless.data.records import read_records


def load_examples(
    path: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    fmt: Format = "auto",
    max_length: int = 1024,
    completion_only: bool = True,
    packing: bool = False,
) -> list[Example]:
    """Read and encode a dataset; every record is validated before anything is returned.

    Args:
        path: a JSONL, JSON or Parquet file, or a ``datasets`` directory.
        tokenizer: the model's tokenizer.
        fmt: ``auto`` (from the first record's fields), ``text``,
            ``prompt_completion`` or ``messages``.
        max_length: maximum tokens per example (the block size when packing).
        completion_only: loss on completion / assistant tokens only.
        packing: concatenate examples into blocks of ``max_length`` tokens.

    Returns:
        Encoded examples (``input_ids`` and ``labels``).

    Raises:
        DataError: naming the file, the line or record, the field and what was expected.
    """
    records = read_records(path)
    examples = encode_records(tokenizer, records, path, fmt, max_length, completion_only, truncate=not packing)
    return pack(examples, max_length) if packing else examples
