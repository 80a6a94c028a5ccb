"""Data specs: where records come from, and how a dataset's columns become forgetless's fields.

A data spec is one string, so it travels unchanged through configs, study cells,
worker processes and ``forgetless.json``:

- a path: ``train.jsonl``, ``train.json``, ``train.parquet`` or a ``save_to_disk`` folder;
- ``hf:NAME[:CONFIG]:SPLIT``: a dataset loaded (and cached) by ``datasets``, e.g.
  ``hf:openai/gsm8k:main:train``; SPLIT may take a slice, ``train[:7000]`` or
  ``train[7000:]``; NAME may be a local ``save_to_disk`` folder (``hf:./gsm8k:test``);
- with a column mapping, the JSON of a ``DataSource``:
  ``{"source": "hf:openai/gsm8k:main:train", "template": {"prompt": "{question}\\n"}}``.

YAML and the command line write the mapping as a mapping, ``{source: ..., fields:
{prompt: question}, template: {...}}``; ``normalize_spec`` turns it into that JSON
string (the one form everything downstream reads, and the data's identity for caches),
and leaves a spec without a mapping as the plain source string.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator

_KEYS = {"source", "fields", "template", "replace", "min_chars"}


@dataclass(frozen=True)
class DataSource:
    """A source of records and the mapping that turns its columns into fields.

    Attributes:
        source: a path or an ``hf:`` spec.
        fields: output field -> input column, copied as is (``{"prompt": "question"}``).
        template: output field -> a format string over input columns (``"Q: {question}\\nA:"``).
        replace: literal replacements applied to every string the mapping produces, in
            order (``{"####": "Answer:"}`` turns GSM8K's final line into the answer format).
        min_chars: records with a mapped string field shorter than this (whitespace
            stripped) are skipped: WikiText's rows are lines, many of them empty.
    With a mapping, a record holds exactly the mapped fields (other columns are dropped, so
    a dataset's own ``answer`` column cannot silently stand in for the gold answer).
    """

    source: str
    fields: dict[str, str] = field(default_factory=dict)
    template: dict[str, str] = field(default_factory=dict)
    replace: dict[str, str] = field(default_factory=dict)
    min_chars: int = 0

    @property
    def mapped(self) -> bool:
        """Whether records are rewritten (any of fields, template)."""
        return bool(self.fields or self.template)

    def spec(self) -> str:
        """The one-string form: the source alone without a mapping, else sorted JSON."""
        if not self.mapped:
            return self.source
        values = {"source": self.source, "fields": self.fields, "template": self.template, "replace": self.replace,
                  "min_chars": self.min_chars}
        return json.dumps({k: v for k, v in values.items() if v}, sort_keys=True, ensure_ascii=False)


def template_columns(template: str, target: str) -> list[str]:
    """The columns a format string reads, in order.

    Only plain names are allowed: ``{question}``, not ``{row.attr}`` or ``{row[0]}`` (a
    format string with attribute access can read more than the record), nor conversions.

    Raises:
        ValueError: a bad format string, or a placeholder that is not a plain column name.
    """
    columns = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"template.{target}: not a valid format string ({err}); write a literal brace as {{{{ or }}}}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or name.isdigit() or "." in name or "[" in name or spec or conversion:
            raise ValueError(f"template.{target}: placeholder {{{name}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}} is not a plain column name; expected e.g. {{question}}")
        columns.append(name)
    return columns


def data_source(value: Any) -> DataSource:
    """A ``DataSource`` from a spec string (plain or JSON) or a mapping.

    Raises:
        ValueError: a mapping with unknown keys, a non-string entry, an output field given
            twice, or a template placeholder that is not a plain column name.
    """
    if isinstance(value, DataSource):
        return value
    if isinstance(value, str):
        if not value.lstrip().startswith("{"):
            return DataSource(value)
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"expected a data spec: a path, hf:NAME[:CONFIG]:SPLIT, or a JSON object with 'source' "
                             f"({err.msg} at character {err.pos})") from None
        except RecursionError:
            raise ValueError("expected a data spec, got JSON nested too deeply to read") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a data spec: a path, hf:NAME[:CONFIG]:SPLIT, or a mapping with 'source', "
                         f"got {type(value).__name__}")
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise ValueError(f"unknown data spec key(s) {unknown}; expected {sorted(_KEYS)}")
    if not isinstance(value.get("source"), str) or not value["source"].strip():
        raise ValueError("a data spec mapping needs 'source': a path or hf:NAME[:CONFIG]:SPLIT")
    parts: dict[str, dict[str, str]] = {}
    for key in ("fields", "template", "replace"):
        entry = value.get(key) or {}
        if not isinstance(entry, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in entry.items()):
            raise ValueError(f"{key}: expected a mapping of strings to strings, got {entry!r}")
        parts[key] = dict(entry)
    both = sorted(set(parts["fields"]) & set(parts["template"]))
    if both:
        raise ValueError(f"field(s) {both} given both in fields and in template; give each output field once")
    for target, template in parts["template"].items():
        template_columns(template, target)
    min_chars = value.get("min_chars", 0)
    if isinstance(min_chars, bool) or not isinstance(min_chars, int) or min_chars < 0:
        raise ValueError(f"min_chars: expected a whole number >= 0, got {min_chars!r}")
    for key, given in (("replace", parts["replace"]), ("min_chars", min_chars)):
        if given and not (parts["fields"] or parts["template"]):
            raise ValueError(f"{key}: applies to the strings a mapping produces; give fields or template too")
    if "" in parts["replace"]:
        raise ValueError("replace: an empty string cannot be replaced")
    return DataSource(value["source"], parts["fields"], parts["template"], parts["replace"], min_chars)


def normalize_spec(value: Any) -> Any:
    """A config value as a spec string (pydantic ``BeforeValidator``); None passes through."""
    if value is None:
        return None
    return data_source(value).spec()


def with_mapping(spec: str, fields: dict[str, str], template: dict[str, str], replace: dict[str, str]) -> str:
    """``spec`` with a column mapping given next to it (``--fields``/``--template`` of ``forgetless train``).

    Raises:
        ValueError: ``spec`` already carries a mapping (give it in one place).
    """
    if not (fields or template or replace):
        return spec
    source = data_source(spec)
    if source.mapped:
        raise ValueError("data already carries a field mapping; give fields/template in one place")
    return data_source({"source": source.source, "fields": fields, "template": template, "replace": replace}).spec()


def fill_template(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``{column}`` replaced by ``values[column]`` (names checked by ``template_columns``).

    Substituted piece by piece rather than with ``str.format``, so nothing in a value or a
    placeholder is interpreted.
    """
    return "".join(literal + (values[name] if name is not None else "")
                   for literal, name, _, _ in string.Formatter().parse(template))


def display_name(spec: str) -> str:
    """The source a spec reads, for messages (the JSON form's ``source``)."""
    try:
        return data_source(spec).source
    except ValueError:
        return spec


# A config field holding a data spec: a string, or a mapping normalized to the one-string form.
DataSpec = Annotated[str, BeforeValidator(normalize_spec)]
