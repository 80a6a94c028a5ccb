"""Apply a ``DataSource``'s column mapping: a dataset's columns become forgetless's fields.

``fields`` copies a column as is (any type: a ``messages`` list too); ``template`` fills
a format string with columns (strings and numbers); ``replace`` then rewrites literal
substrings of every string produced. A mapped record holds exactly the mapped fields, and
is validated afterwards like any JSONL record (``formats.encode_record``).
"""

from __future__ import annotations

from typing import Any

from forgetless.data.errors import DataError
from forgetless.data.spec import DataSource, fill_template, template_columns


def _reads(source: DataSource) -> dict[str, str]:
    """Input column -> the first mapping entry that reads it (``fields.prompt``), for messages."""
    reads: dict[str, str] = {}
    for target, column in source.fields.items():
        reads.setdefault(column, f"fields.{target}")
    for target, template in source.template.items():
        for column in template_columns(template, target):
            reads.setdefault(column, f"template.{target}")
    return reads


def check_columns(source: DataSource, name: str, columns: list[str]) -> None:
    """Fail before reading a record when the mapping reads a column the dataset lacks.

    Raises:
        DataError: ``NAME, field 'questin': no such column (fields.prompt reads it); the dataset's columns are [...]``.
    """
    for column, entry in _reads(source).items():
        if column not in columns:
            raise DataError(name, None, column, f"no such column ({entry} reads it); the dataset's columns are "
                                                f"{sorted(columns)}")


def _replace(value: str, replace: dict[str, str]) -> str:
    for old, new in replace.items():
        value = value.replace(old, new)
    return value


def map_fields(record: dict[str, Any], where: str, source: DataSource, name: str) -> dict[str, Any]:
    """The mapped fields of one record (see the module docstring).

    Args:
        record: the record's columns.
        where: its location (``record 12``), for errors.
        source: the mapping.
        name: the dataset, for errors.

    Raises:
        DataError: a column the mapping reads is missing or null in this record, or a
            template column holds something other than a string or a number.
    """
    reads = _reads(source)
    for column, entry in reads.items():
        if record.get(column) is None:
            raise DataError(name, where, column, f"missing; {entry} reads it")
    fields = {target: record[column] for target, column in source.fields.items()}
    for target, template in source.template.items():
        values = {}
        for column in template_columns(template, target):
            value = record[column]
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise DataError(name, where, column,
                                f"expected a string or a number for template.{target}, got {type(value).__name__}")
            values[column] = str(value)
        fields[target] = fill_template(template, values)
    fields = {k: _replace(v, source.replace) if isinstance(v, str) else v for k, v in fields.items()}
    return fields
