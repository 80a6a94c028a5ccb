"""Typed parameters of registered plug-ins (methods, regularizers): validation and help text.

Each plug-in class declares a pydantic ``params_model``: its fields, with types,
defaults, constraints and descriptions, are the one place a parameter is documented.
``validate_params`` checks a config's dict against it, with an error that names the
plug-in, the parameter and what was expected; ``params_help`` lists every plug-in's
parameters for ``forgetless train --help``. Both read the same type descriptions, so the
help and the errors cannot disagree.
"""

from __future__ import annotations

import textwrap
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo


class NoParams(BaseModel):
    """The parameters of a plug-in that takes none."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _literal(value: Any) -> str:
    """A value as a YAML/JSON reader writes it: 'mean', false, null, 0.5."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value)


def _bounds(base: str, constraints: list[Any]) -> str:
    """``a number`` with its constraints: ``a number >= 0``, ``an integer in [2, 10)``."""
    low = high = None
    for c in constraints:
        if isinstance(c, (annotated_types.Ge, annotated_types.Gt)):
            low = ("[", c.ge) if isinstance(c, annotated_types.Ge) else ("(", c.gt)
        elif isinstance(c, (annotated_types.Le, annotated_types.Lt)):
            high = ("]", c.le) if isinstance(c, annotated_types.Le) else (")", c.lt)
    if low and high:
        return f"{base} in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{base} {'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f"{base} {'<=' if high[0] == ']' else '<'} {high[1]}"
    return base


def _kinds(annotation: Any, constraints: list[Any]) -> list[str]:
    """What an annotation accepts, as phrases (one per alternative of a union)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return [phrase for arg in get_args(annotation) for phrase in _kinds(arg, constraints)]
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return _kinds(base, [*constraints, *extra])
    if origin is Literal:
        return [_literal(v) for v in get_args(annotation)]
    if annotation is type(None):
        return ["null"]
    if annotation is bool:
        return ["true or false"]
    if annotation is int:
        return [_bounds("an integer", constraints)]
    if annotation is float:
        return [_bounds("a number", constraints)]
    if annotation is str:
        return ["a string"]
    return [getattr(annotation, "__name__", str(annotation))]


def describe_field(field: FieldInfo) -> str:
    """What a field accepts, in words: ``'mean' or 'none'``, ``a number in [0, 1)``, ``a string or null``."""
    kinds = _kinds(field.annotation, list(field.metadata))
    return kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]


def validate_params(kind: str, name: str, model: type[BaseModel], values: Mapping[str, Any]) -> Any:
    """``values`` validated against ``model`` (a plug-in's ``params_model``).

    Args:
        kind: what the plug-in is, for messages ("method", "regularizer").
        name: the plug-in's registered name.

    Raises:
        ValueError: one line naming the plug-in and each bad parameter with what was
            expected (``method talr: floor must be a number in [0, 1), got 2``), or the
            unknown keys with the known ones.
    """
    values = dict(values)
    fields = model.model_fields
    unknown = sorted(k for k in values if k not in fields)
    if unknown and not fields:
        raise ValueError(f"{kind} {name!r} takes no parameters, got {unknown}")
    if unknown:
        raise ValueError(f"{kind} {name!r}: bad parameters {unknown}: {name} takes {', '.join(fields)}")
    try:
        return model.model_validate(values)
    except ValidationError as err:
        problems = []
        for item in err.errors():
            key = str(item["loc"][0]) if item["loc"] else ""
            if key in fields:
                problems.append(f"{key} must be {describe_field(fields[key])}, got {_literal(values.get(key))}")
            else:  # a check across fields
                problems.append(item["msg"])
        raise ValueError(f"{kind} {name}: " + "; ".join(dict.fromkeys(problems))) from None


def params_help(title: str, plugins: Mapping[str, type[BaseModel]], width: int = 88) -> str:
    """A help section listing each plug-in's parameters: name, accepted values, default, description."""
    lines = [title]
    for name, model in plugins.items():
        if not model.model_fields:
            lines.append(f"  {name}: no parameters")
            continue
        lines.append(f"  {name}:")
        for key, field in model.model_fields.items():
            lines.append(f"    {key}: {describe_field(field)} (default {_literal(field.default)})")
            if field.description:
                lines += textwrap.wrap(field.description, width, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return "\n".join(lines)
