"""Command-line flags generated from a pydantic schema, so flags and YAML keys cannot drift apart.

One builder for every subcommand that takes a schema (``train``, ``merge``, ``theory``):
each field becomes ``--field-name``, typed from its annotation and documented by its
description. Flags default to None, so "not given" is distinguishable from a value
and a YAML config can fill in what the command line leaves out.
"""

from __future__ import annotations

import argparse
import json
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel


def json_object(text: str) -> dict[str, Any]:
    """A flag's value read as a JSON object (argparse reports the ``ArgumentTypeError`` on one line).

    Raises:
        argparse.ArgumentTypeError: not JSON, or JSON that is not an object.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"key\": 0.1}}', got {text!r} ({err.msg} at character {err.pos})"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"key\": 0.1}}', got {text!r}")
    return value


def add_schema_flags(
    parser: argparse.ArgumentParser,
    schema: type[BaseModel],
    required: frozenset[str] | set[str] = frozenset(),
    show_defaults: bool = False,
) -> None:
    """Add one ``--flag`` per field of ``schema``.

    ``bool`` becomes ``--x/--no-x``, ``Literal`` a choice, ``list``/``tuple`` a
    space-separated list, ``dict`` a JSON object; ``X | None`` takes an ``X``; any
    other type is read as a string for pydantic to validate.

    Args:
        required: fields whose help says they are required (here or in ``--config``).
        show_defaults: append each field's default to its help.
    """
    for name, field in schema.model_fields.items():
        help_text = field.description or ""
        if show_defaults:
            help_text += f" (default: {field.default})"
        if name in required:
            help_text += " (required, here or in --config)"
        annotation = field.annotation
        if get_origin(annotation) in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) == 1:  # X | None: the flag takes X
                annotation = options[0]
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(annotation) is dict:
            kwargs.update(type=json_object, help=help_text + " (JSON)")
        elif get_origin(annotation) in (list, tuple):
            kwargs.update(type=get_args(annotation)[0], nargs="+")
        elif get_origin(annotation) is Literal:
            kwargs["choices"] = get_args(annotation)
        else:
            kwargs["type"] = annotation if annotation in (int, float, str) else str
        parser.add_argument("--" + name.replace("_", "-"), **kwargs)
