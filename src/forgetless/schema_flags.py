"""Every subcommand's one shape: flags generated from a pydantic schema, an optional ``--config`` YAML under them,
one merge of the two, one validation.

One builder for every subcommand: each field of the command's schema becomes
``--field-name`` (or a positional), typed from its annotation and documented by its
description. Flags default to None, so "not given" is distinguishable from a value
and a YAML config can fill in what the command line leaves out; ``schema_from_flags``
then builds the schema from the flags that were given, so its defaults are the only ones.

A subcommand is a ``Command`` (its schema and the function that runs it) registered with
``add_command``; ``forgetless.cli.main`` calls it with the parsed flags and the resolver of
``testbed:``/``gguf:``/``real:`` specs, and the function receives the validated schema.
"""

from __future__ import annotations

import argparse
import json
import types
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from forgetless.config import ConfigError, build_config, load_yaml

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
    switches: bool | None = None,
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
        switches: a ``bool`` that defaults to False is a plain switch ``--x`` rather than
            ``--x/--no-x`` (default: ``standalone``).
    """
    owner: dict[str, Any] = {}  # field -> the mutually exclusive group its flag joins
    for group in exclusive:
        owner.update(dict.fromkeys(group, parser.add_mutually_exclusive_group()))
    for name, field in schema.model_fields.items():
        help_text = field.description or ""
        switch = (standalone if switches is None else switches) and field.annotation is bool and field.default is False
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
    return _validated(schema, {name: getattr(args, name) for name in schema.model_fields
                               if getattr(args, name, None) is not None})


class Command:
    """One subcommand: the schema of its settings and the function that runs it.

    The one path every subcommand's settings take to the library: the ``--config`` file's keys (when one is
    given), the flags given over them (flags win), a check that every required field was given somewhere,
    one validation against ``schema``, then the ``testbed:``, ``gguf:`` and ``real:`` specs in the result resolved
    once (by ``resolve``, which the entry point passes: this layer cannot import the testbed), and ``run`` called
    with it.

    A field without a default is required here or in ``--config``; missing from both, it is refused as argparse
    refuses a required flag (``forgetless eval: error: the following arguments are required: --model``). A bad
    value from a ``--config`` file is named by the file and the key (``c.yaml: key 'limit': ...``); from flags
    alone, by its flag (``--limit: Input should be greater than 0``), or with ``key_errors`` as a key of the
    command line (``command line: key 'learning_rate': ...``: ``train`` and ``merge`` have always said so).

    Args:
        schema: one field per flag (and ``--config`` key).
        run: the command; called with the validated ``schema`` (and with ``config=`` the ``--config`` path, or
            None, when ``pass_config``: ``merge`` refuses to write over it).
        config_file: the command takes ``--config FILE`` (off for ``study`` and ``report``, whose own argument is
            the study's YAML).
        resolve_specs: its strings may be ``testbed:``/``gguf:``/``real:`` specs (off for commands whose arguments
            are preset names or the files to convert).
        key_errors: name a bad flag as a key of the command line (see above).
        pass_config: pass the ``--config`` path to ``run`` as ``config=``.
    """

    def __init__(self, schema: type[S], run: Callable[..., int], *, config_file: bool = True,
                 resolve_specs: bool = True, key_errors: bool = False, pass_config: bool = False) -> None:
        self.schema = schema
        self.run = run
        self.config_file = config_file
        self.resolve_specs = resolve_specs
        self.key_errors = key_errors
        self.pass_config = pass_config
        self.parser: argparse.ArgumentParser | None = None  # set by add_command, for argparse's own errors
        self.__doc__ = run.__doc__

    def required(self) -> list[str]:
        """The fields without a default (flags or ``--config`` keys that must be given), in schema order."""
        return [name for name, field in self.schema.model_fields.items() if field.is_required()]

    def values(self, args: argparse.Namespace) -> dict[str, Any]:
        """The ``--config`` file's keys with the flags given over them: the one merge of file and flags."""
        config = getattr(args, "config", None) if self.config_file else None
        values: dict[str, Any] = dict(load_yaml(config)) if config else {}
        values.update({name: getattr(args, name) for name in self.schema.model_fields
                       if getattr(args, name, None) is not None})
        return values

    def settings(self, args: argparse.Namespace) -> BaseModel:
        """The command's schema, validated once from the merged values.

        Raises:
            SystemExit: (2) a required field given neither as a flag nor in ``--config``, as argparse refuses it.
            ConfigError: a bad key of the ``--config`` file (or of the command line, with ``key_errors``).
            ValueError: a bad flag, named by the flag.
        """
        values = self.values(args)
        config = getattr(args, "config", None) if self.config_file else None
        missing = [name for name in self.required() if name not in values]
        if missing and not config:
            message = "the following arguments are required: " + ", ".join(
                "--" + name.replace("_", "-") for name in missing)
            if self.parser is None:
                raise ConfigError(message)
            self.parser.error(message)  # one line and exit 2, as for any argument argparse refuses
        if config or self.key_errors:
            return build_config(self.schema, values, config or "command line")  # names a key missing from the file
        return _validated(self.schema, values)

    def __call__(self, args: argparse.Namespace, resolve: Callable[[Any], Any] | None = None) -> int:
        """Run the command on the parsed flags (``resolve``: the entry point's resolver of model and data specs)."""
        settings = self.settings(args)
        if resolve is not None and self.resolve_specs:
            settings = resolve(settings)
        if self.pass_config:
            return self.run(settings, config=getattr(args, "config", None))
        return self.run(settings)


CONFIG_HELP = "YAML file of the keys below (the flag names, with underscores); flags given here override it"


def add_command(subparsers: Any, name: str, command: Command, *, show_defaults: bool = False,
                positional: Collection[str] = (), exclusive: Sequence[Collection[str]] = (),
                switches: bool = True, **parser_options: Any) -> argparse.ArgumentParser:
    """Register ``command`` as subcommand ``name``: its ``--config`` (if it reads one), a flag per field, and the
    ``Command`` as the parser's ``func``.

    Args:
        subparsers: the parent command's ``add_subparsers()`` action.
        show_defaults, positional, exclusive, switches: as ``add_schema_flags``.
        parser_options: passed to ``add_parser`` (``help``, ``description``, ``epilog_factory``, ...); ``help`` and
            ``description`` default to the first line and the whole of the command's docstring.
    """
    doc = command.__doc__ or ""
    parser_options.setdefault("help", doc.splitlines()[0] if doc else None)
    parser_options.setdefault("description", doc or None)
    parser = subparsers.add_parser(name, **parser_options)
    if command.config_file:
        parser.add_argument("--config", help=CONFIG_HELP)
    # With --config a required field may come from the file: the Command checks it once the two are merged.
    # Without, argparse requires the flag itself.
    add_schema_flags(parser, command.schema, set(command.required()) - set(positional) if command.config_file else (),
                     show_defaults, standalone=not command.config_file, positional=positional, exclusive=exclusive,
                     switches=switches)
    command.parser = parser
    parser.set_defaults(func=command)
    return parser


def _validated(schema: type[S], values: dict[str, Any]) -> S:
    """``schema`` built from ``values`` given as flags, errors naming each bad flag."""
    try:
        return schema(**values)
    except ValidationError as err:
        # One line per problem, named by its flag, for the command's "forgetless: error:" line.
        problems = [(f"--{str(e['loc'][0]).replace('_', '-')}: " if e["loc"] else "") + e["msg"] for e in err.errors()]
        raise ValueError("; ".join(problems)) from None


def schema_command(schema: type[S], command: Callable[[S], int]) -> Command:
    """A parser's ``func``: ``command`` called with ``schema`` built from the parsed flags (and a ``--config``)."""
    return Command(schema, command)
