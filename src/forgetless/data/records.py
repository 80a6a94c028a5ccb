"""Read raw records from JSONL, JSON, Parquet or a local ``datasets`` directory.

Every record keeps where it came from (``line 12`` or ``record 12``), so a later
check can name it in its error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.data.errors import DataError
from forgetless.data.text import decode_utf8


@dataclass(frozen=True)
class Record:
    """One raw example and its location in the source."""

    fields: dict[str, Any]
    where: str


def read_records(path: str | Path) -> list[Record]:
    """Read every record of a data file or ``datasets`` directory.

    Args:
        path: a ``.jsonl``, ``.json`` (a list of objects), ``.parquet`` file, or a
            directory written by ``datasets.Dataset.save_to_disk``.

    Returns:
        The records in file order.

    Raises:
        DataError: the file is missing, unreadable, not of a known kind, holds a line
            that is not a JSON object, or holds no records at all.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "no such file or directory")
    if path.is_dir():
        records = _read_datasets_dir(path)
    elif path.suffix == ".jsonl":
        records = _read_jsonl(path)
    elif path.suffix == ".json":
        records = _read_json(path)
    elif path.suffix == ".parquet":
        records = _read_parquet(path)
    else:
        raise DataError(path, None, None, "expected a .jsonl, .json or .parquet file or a datasets directory")
    if not records:
        raise DataError(path, None, None, "the dataset is empty; expected at least one record")
    return records


def _read_jsonl(path: Path) -> list[Record]:
    records: list[Record] = []
    offset = 0
    with open(path, "rb") as handle:
        # Bytes, decoded line by line, so a bad byte is reported with its line and offset.
        for number, raw in enumerate(handle, start=1):
            line = decode_utf8(raw, path, number, offset)
            offset += len(raw)
            if not line.strip():
                continue  # blank lines, e.g. a trailing newline, are not records
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(path, f"line {number}", None, f"expected a JSON object, got invalid JSON ({err.msg})") from None
            if not isinstance(value, dict):
                raise DataError(path, f"line {number}", None, f"expected a JSON object, got {type(value).__name__}")
            records.append(Record(value, f"line {number}"))
    return records


def _read_json(path: Path) -> list[Record]:
    try:
        value = json.loads(decode_utf8(path.read_bytes(), path))
    except json.JSONDecodeError as err:
        raise DataError(path, f"line {err.lineno}", None, f"expected a JSON list of objects, got invalid JSON ({err.msg})") from None
    if not isinstance(value, list):
        raise DataError(path, None, None, f"expected a JSON list of objects, got {type(value).__name__}")
    records = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise DataError(path, f"record {index}", None, f"expected a JSON object, got {type(item).__name__}")
        records.append(Record(item, f"record {index}"))
    return records


def _read_parquet(path: Path) -> list[Record]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise DataError(path, None, None, f"expected a Parquet file ({err})") from None
    return [Record(row, f"record {index}") for index, row in enumerate(rows)]


def _read_datasets_dir(path: Path) -> list[Record]:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as err:
        raise DataError(path, None, None, f"expected a directory written by datasets' save_to_disk ({err})") from None
    if isinstance(dataset, datasets.DatasetDict):
        if "train" not in dataset:
            raise DataError(path, None, None, f"expected a 'train' split, found {sorted(dataset)}")
        dataset = dataset["train"]
    return [Record(row, f"record {index}") for index, row in enumerate(dataset)]


def data_hash(path: str | Path) -> str:
    """SHA-256 of a data file's bytes (of every file, in name order, for a directory)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()
