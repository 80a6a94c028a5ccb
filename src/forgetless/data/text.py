"""Decode a text file's bytes as UTF-8, naming the file, line and byte offset of a bad byte.

A leading UTF-8 byte-order mark is accepted and dropped (``utf-8-sig``): spreadsheet
exports write one, and ``json.loads`` refuses it.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from forgetless.data.errors import DataError


def decode_utf8(data: bytes, path: str | Path, first_line: int = 1, offset: int = 0) -> str:
    """``data`` decoded as UTF-8 (a leading BOM dropped when ``offset`` is 0).

    Args:
        data: the bytes, a whole file or one of its lines.
        path: the file, for the error message.
        first_line: the line number ``data`` starts on.
        offset: the byte offset of ``data`` in the file.

    Raises:
        DataError: ``path, line N: not valid UTF-8 (byte 0xff at byte offset 264) ...``.
    """
    if offset == 0 and data.startswith(codecs.BOM_UTF8):
        data, offset = data[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data.count(b"\n", 0, err.start)
        raise DataError(
            path, f"line {line}", None,
            f"not valid UTF-8 (byte 0x{data[err.start]:02x} at byte offset {offset + err.start}); "
            "re-save the file as UTF-8",
        ) from None
