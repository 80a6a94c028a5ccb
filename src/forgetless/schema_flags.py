"""Command-line flags generated from a pydantic schema, so flags and YAML keys cannot drift apart.

One builder for every subcommand: each field of the command's schema becomes
``--field-name`` (or a positional), typed from its annotation and documented by its
description. Flags default to None, so "not given" is distinguishable from a value
and a YAML config can fill in what the command line leaves out; ``schema_from_flags``
then builds the schema from the flags that were given, so its defaults are the only ones.
"""

from __future__ import annotations

import argparse
import json
import types
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

S = TypeVar("S", bound=BaseModel)


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
    except RecursionError:
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"key\": 0.1}', got JSON nested too "
                                         "deeply to read") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"key\": 0.1}}', got {text!r}")
    return value


def add_schema_flags(
    parser: argparse.ArgumentParser,
    schema: type[BaseModel],
    required: frozenset[str] | set[str] = frozenset(),
    show_defaults: bool = False,
    *,
    standalone: bool = False,
    positional: Collection[str] = (),
    exclusive: Sequence[Collection[str]] = (),
) -> None:
    """Add one ``--flag`` per field of ``schema``.

    ``bool`` becomes ``--x/--no-x``, ``Literal`` a choice, ``list``/``tuple`` a
    space-separated list, ``dict`` a JSON object; ``X | None`` takes an ``X``; any
    other type is read as a string for pydantic to validate.

    Args:
        required: fields whose help says they are required (here or in ``--config``).
        show_defaults: append each field's default (other than None) to its help.
        standalone: the command line is the only source of values (no ``--config``): a
            field without a default is a required flag, and a ``bool`` that defaults to
            False is a plain switch ``--x``.
        positional: fields given by position (``forgetless study CONFIG``), not as flags.
        exclusive: groups of fields of which at most one may be given.
    """
    owner: dict[str, Any] = {}  # field -> the mutually exclusive group its flag joins
    for group in exclusive:
        owner.update(dict.fromkeys(group, parser.add_mutually_exclusive_group()))
    for name, field in schema.model_fields.items():
        help_text = field.description or ""
        switch = standalone and field.annotation is bool and field.default is False
        if show_defaults and field.default not in (None, PydanticUndefined) and not switch:
            help_text += f" (default: {field.default})"
        if name in required:
            help_text += " (required, here or in --config)"
        annotation = field.annotation
        if get_origin(annotation) in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) == 1:  # X | None: the flag takes X
                annotation = options[0]
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        if switch:
            kwargs["action"] = "store_true"
        elif annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(annotation) is dict:
            kwargs.update(type=json_object, help=help_text + " (JSON)")
        elif get_origin(annotation) in (list, tuple):
            kwargs.update(type=get_args(annotation)[0], nargs="+")
        elif get_origin(annotation) is Literal:
            kwargs["choices"] = get_args(annotation)
        else:
            kwargs["type"] = annotation if annotation in (int, float, str) else str
        if name in positional:  # a positional's name is its dest; one with a default may be left out
            del kwargs["dest"]
            if not field.is_required():
                kwargs["nargs"] = "?"
            parser.add_argument(name, **kwargs)
            continue
        if standalone and field.is_required():
            kwargs["required"] = True
        owner.get(name, parser).add_argument("--" + name.replace("_", "-"), **kwargs)


def schema_from_flags(schema: type[S], args: argparse.Namespace) -> S:
    """``schema`` built from the flags given on the command line (its defaults for the rest).

    Raises:
        ValueError: one line naming each bad flag (``--d: Input should be greater than 1``).
    """
    values = {name: getattr(args, name) for name in schema.model_fields if getattr(args, name, None) is not None}
    try:
        return schema(**values)
    except ValidationError as err:
        # One line per problem, named by its flag, for the command's "forgetless: error:" line.
        problems = [(f"--{str(e['loc'][0]).replace('_', '-')}: " if e["loc"] else "") + e["msg"] for e in err.errors()]
        raise ValueError("; ".join(problems)) from None


def schema_command(schema: type[S], command: Callable[[S], int]) -> Callable[[argparse.Namespace], int]:
    """A parser's ``func``: ``command`` called with ``schema`` built from the parsed flags."""

    def run(args: argparse.Namespace) -> int:
        return command(schema_from_flags(schema, args))

    run.__doc__ = command.__doc__
    return run
