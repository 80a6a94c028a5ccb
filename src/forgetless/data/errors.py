"""The one error type for bad training or evaluation data."""

from __future__ import annotations

from pathlib import Path

from forgetless.data.spec import display_name


class DataError(ValueError):
    """Bad input data, located precisely enough to fix it.

    The message names the file, the line (JSONL) or record index (other formats),
    the field, and what was expected, e.g.
    ``data.jsonl, line 3, field 'completion': expected a string, got int``.
    A data spec with a column mapping (``forgetless.data.spec``) is named by its source.
    """

    def __init__(self, path: str | Path, where: str | None, field: str | None, expected: str) -> None:
        self.path = display_name(path) if isinstance(path, str) else str(path)
        self.where = where
        self.field = field
        self.expected = expected
        parts = [self.path]
        if where:
            parts.append(where)
        if field:
            parts.append(f"field {field!r}")
        super().__init__(", ".join(parts) + f": {expected}")
