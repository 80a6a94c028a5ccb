"""Read raw records from JSONL, JSON, Parquet, a local ``datasets`` directory or an ``hf:`` spec.

Every record keeps where it came from (``line 12`` or ``record 12``), so a later
check can name it in its error. A spec with a column mapping (``forgetless.data.spec``)
has its records rewritten here, so every reader downstream sees forgetless's fields.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from forgetless.data.errors import DataError
from forgetless.data.hub import PREFIX as HF_PREFIX
from forgetless.data.hub import fingerprint, load_split, parse_hf
from forgetless.data.mapping import check_columns, map_fields
from forgetless.data.spec import DataSource, data_source
from forgetless.data.text import decode_utf8


@dataclass(frozen=True)
class Record:
    """One raw example and its location in the source."""

    fields: dict[str, Any]
    where: str


def read_records(path: str | Path) -> list[Record]:
    """Read every record of a data spec.

    Args:
        path: a ``.jsonl``, ``.json`` (a list of objects), ``.parquet`` file, a directory
            written by ``datasets.Dataset.save_to_disk``, ``hf:NAME[:CONFIG]:SPLIT``, or
            the JSON form of any of these with a column mapping (``forgetless.data.spec``).

    Returns:
        The records in file order (mapped, when the spec carries a mapping).

    Raises:
        DataError: the file or dataset is missing, unreadable, not of a known kind, holds a
            line that is not a JSON object, holds no records at all, or lacks a column the
            mapping reads.
    """
    try:
        source = data_source(str(path)) if isinstance(path, str) else DataSource(str(path))
    except ValueError as err:
        raise DataError(path, None, None, str(err)) from None
    name = source.source
    if name.startswith(HF_PREFIX):
        records, columns = _read_hf(name)
    else:
        records, columns = _read_path(Path(name))
    if not source.mapped:
        return records
    if columns is not None:  # a table: every record has the same columns, so check them once, up front
        check_columns(source, name, columns)
    mapped = [Record(map_fields(r.fields, r.where, source, name), r.where) for r in records]
    kept = [r for r in mapped if all(len(v.strip()) >= source.min_chars for v in r.fields.values() if isinstance(v, str))]
    if not kept:
        raise DataError(name, None, None, f"min_chars={source.min_chars} skips all {len(mapped)} records; expected at "
                                          "least one to remain")
    return kept


# A JSONL line (one record) longer than this is refused before it is read whole: a symlink to /dev/zero, or a
# file with no newline, would otherwise be read into memory until it runs out.
MAX_LINE_BYTES = 64 * 2**20


def _read_path(path: Path) -> tuple[list[Record], list[str] | None]:
    """A file's or folder's records, and its columns when it is a table (Parquet, ``datasets``)."""
    if not path.exists():
        raise DataError(path, None, None, "no such file or directory")
    if not (path.is_file() or path.is_dir()):  # is_file follows symlinks: a link to /dev/zero is refused too
        raise DataError(path, None, None, "is not a regular file (a FIFO, device or socket would be read without "
                                          "end); expected a data file or a datasets directory")
    columns = None
    if path.is_dir():
        records, columns = _read_datasets_dir(path)
    elif path.suffix == ".jsonl":
        records = _read_jsonl(path)
    elif path.suffix == ".json":
        records = _read_json(path)
    elif path.suffix == ".parquet":
        records, columns = _read_parquet(path)
    else:
        raise DataError(path, None, None, "expected a .jsonl, .json or .parquet file, a datasets directory, or "
                                          "hf:NAME[:CONFIG]:SPLIT")
    if not records:
        raise DataError(path, None, None, "the dataset is empty; expected at least one record")
    return records, columns


def _read_hf(spec: str) -> tuple[list[Record], list[str]]:
    dataset, first = load_split(spec)
    if len(dataset) == 0:
        raise DataError(spec, None, None, "the dataset is empty; expected at least one record")
    rows = dataset.to_list()
    return [Record(row, f"record {first + i}") for i, row in enumerate(rows)], list(dataset.column_names)


def check_unicode(record: dict[str, Any], path: Path, where: str) -> None:
    """Refuse a record whose text holds a lone UTF-16 surrogate (JSON's ``"\\ud800"``): no tokenizer can encode it.

    Raises:
        DataError: naming the file, the line or record, the field and the code point.
    """

    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return []

    for field, value in record.items():
        for text in strings(value):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise DataError(path, where, field, f"holds a lone surrogate (U+{ord(text[err.start]):04X}), which "
                                "is not text; expected valid Unicode") from None


def _read_jsonl(path: Path) -> list[Record]:
    records: list[Record] = []
    offset = 0
    with open(path, "rb") as handle:
        # Bytes, decoded line by line, so a bad byte is reported with its line and offset.
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(path, f"line {number}", None, f"longer than {MAX_LINE_BYTES // 2**20} MiB; expected "
                                "one JSON record per line")
            line = decode_utf8(raw, path, number, offset)
            offset += len(raw)
            if not line.strip():
                continue  # blank lines, e.g. a trailing newline, are not records
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(path, f"line {number}", None, f"expected a JSON object, got invalid JSON ({err.msg})") from None
            except RecursionError:  # arrays or objects nested thousands deep: Python's parser gives up
                raise DataError(path, f"line {number}", None, "expected a JSON object, got JSON nested too deeply "
                                "to read") from None
            if not isinstance(value, dict):
                raise DataError(path, f"line {number}", None, f"expected a JSON object, got {type(value).__name__}")
            if "\\u" in line:  # only an escape can smuggle a lone surrogate past the UTF-8 decoding above
                check_unicode(value, path, f"line {number}")
            records.append(Record(value, f"line {number}"))
    return records


def _read_json(path: Path) -> list[Record]:
    text = decode_utf8(path.read_bytes(), path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, f"line {err.lineno}", None, f"expected a JSON list of objects, got invalid JSON ({err.msg})") from None
    except RecursionError:
        raise DataError(path, None, None, "expected a JSON list of objects, got JSON nested too deeply to "
                                          "read") from None
    if not isinstance(value, list):
        raise DataError(path, None, None, f"expected a JSON list of objects, got {type(value).__name__}")
    records = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise DataError(path, f"record {index}", None, f"expected a JSON object, got {type(item).__name__}")
        if "\\u" in text:  # as for JSONL: only an escape can smuggle in a lone surrogate
            check_unicode(item, path, f"record {index}")
        records.append(Record(item, f"record {index}"))
    return records


def _read_parquet(path: Path) -> tuple[list[Record], list[str]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise DataError(path, None, None, f"expected a Parquet file ({err})") from None
    return [Record(row, f"record {index}") for index, row in enumerate(table.to_pylist())], table.column_names


def _read_datasets_dir(path: Path) -> tuple[list[Record], list[str]]:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as err:
        raise DataError(path, None, None, f"expected a directory written by datasets' save_to_disk ({err})") from None
    if isinstance(dataset, datasets.DatasetDict):
        if "train" not in dataset:
            raise DataError(path, None, None, f"expected a 'train' split, found {sorted(dataset)}")
        dataset = dataset["train"]
    return [Record(row, f"record {index}") for index, row in enumerate(dataset.to_list())], dataset.column_names


def data_hash(path: str | Path) -> str:
    """SHA-256 identifying a data spec's records.

    A file: its bytes (every file's, in name order, for a directory). An ``hf:`` spec of a
    hub dataset: the spec and ``datasets``' fingerprint of the split (``hub.fingerprint``).
    A column mapping adds its JSON, so the same dataset mapped differently hashes differently.
    """
    source = data_source(str(path)) if isinstance(path, str) else DataSource(str(path))
    prefix = source.spec().encode() if source.mapped else b""
    name = source.source
    if name.startswith(HF_PREFIX):
        local = Path(parse_hf(name).name).expanduser()
        if not local.exists():
            return hashlib.sha256(prefix + fingerprint(name).encode()).hexdigest()
        prefix += name.encode()  # the split and slice read from the folder
        file = local
    else:
        file = Path(name)
    files = sorted(p for p in file.rglob("*") if p.is_file()) if file.is_dir() else [file]
    return _digest_files(prefix, tuple((str(f), *file_stamp(f)) for f in files))


def file_stamp(file: Path) -> tuple[int, int]:
    """A file's size and modification time (ns): what a memo of something read from it is keyed by."""
    stat = file.stat()
    return stat.st_size, stat.st_mtime_ns


@lru_cache(maxsize=128)
def _digest_files(prefix: bytes, files: tuple[tuple[str, int, int], ...]) -> str:
    """SHA-256 of ``prefix`` then each file's name and bytes. Memoized by the files' size and modification time: a
    study looks its cells up many times a run (every search segment, at every rung), and each lookup would
    otherwise read and hash the whole training set again."""
    digest = hashlib.sha256(prefix)
    for path, _size, _mtime in files:
        digest.update(Path(path).name.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()
