"""The ``forgetless`` command. Each subcommand parses its arguments and calls the library.

This module lists the subcommands, once (``build_parser``), and dispatches to them (``main``).
Each is defined in its package's ``cli.py`` in one shape (``forgetless.schema_flags.Command``):
flags built from the fields of a schema, an optional ``--config`` YAML under them, one merge,
one validation, then the library. docs/architecture.md says how to add one.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from forgetless.config import ConfigError
from forgetless.data.errors import DataError
from forgetless.evaluation.cli import add_eval_parser
from forgetless.extras import missing_extra_message
from forgetless.gguf.cli import add_convert_gguf_parser
from forgetless.merging.cli import add_merge_parser
from forgetless.replay.cli import add_generate_parser
from forgetless.study.cli import add_study_parser
from forgetless.study.tuning.cli import add_tune_parser
from forgetless.testbed.cli import add_testbed_parsers
from forgetless.testbed.specs import resolve_specs
from forgetless.theory.cli import add_theory_parser
from forgetless.training.cli import add_train_parser


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that reads ``-1e-3`` and ``-.5e2`` as numbers, not as flags, takes no abbreviated flag,
    and reports an error in one line.

    argparse's own test for a negative number (``-1``, ``-0.5``) misses scientific
    notation, so ``--alpha -1e-3`` failed with "expected one argument". Subparsers
    inherit the class. ``epilog_factory`` builds the epilog when the help is printed
    (so what it imports is paid for only then).
    """

    def __init__(self, *args: Any, epilog_factory: Callable[[], str] | None = None, **kwargs: Any) -> None:
        # No abbreviations: `--lr 1e-4` was read as --lr-scheduler 1e-4, a scheduler named "1e-4".
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^-inf$")
        self._epilog_factory = epilog_factory

    def error(self, message: str) -> NoReturn:
        """One line and exit 2: argparse's own error prints the whole usage block above the message, which buried
        it (``forgetless train`` has 45 flags); the line says where the usage is instead."""
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the arguments)\n")

    def format_help(self) -> str:
        """The help, with the epilog built now when it is built on demand."""
        if self._epilog_factory is not None:
            self.epilog = self._epilog_factory()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``forgetless`` command."""
    parser = _Parser(prog="forgetless", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    # The subcommands, in the order `forgetless --help` lists them; each package's cli.py defines its own.
    for add in (add_train_parser, add_testbed_parsers, add_eval_parser, add_theory_parser, add_generate_parser,
                add_study_parser, add_tune_parser, add_merge_parser, add_convert_gguf_parser):
        add(sub)
    return parser


def error_message(err: BaseException) -> str | None:
    """The one-line message for an error caused by the user's input or files, or None for a bug.

    Bad values, data and configs (``ValueError`` and its kin: ``ConfigError``,
    ``DataError``, ``MergeError``, ``ModelLoadError``) say what is wrong themselves. A file
    that cannot be written or read (``PermissionError``, ``NotADirectoryError``, a full disk)
    is named with the system's reason. A truncated safetensors file and a refused pickle
    are reported without the libraries' advice (torch's suggests ``weights_only=False``,
    which would run the file's code).
    """
    import pickle

    if isinstance(err, UnicodeDecodeError):
        return f"a file is not valid UTF-8 ({err.reason} at byte offset {err.start})"
    if isinstance(err, pickle.UnpicklingError):
        return ("refused to unpickle a file holding more than plain tensors: forgetless never runs code from a "
                "checkpoint; use safetensors weights")
    if isinstance(err, (ConfigError, DataError, FileExistsError, ValueError)):
        return str(err)
    missing = missing_extra_message(err)
    if missing is not None:
        return missing
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    if type(err).__name__ == "SafetensorError":  # not imported here: safetensors is heavy at start-up
        return f"a safetensors file is truncated or corrupt ({err})"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``forgetless`` console script (exit 2 and one line on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        # The subcommand merges its --config file and flags, validates them once, and resolves the testbed:,
        # gguf: and real: specs in the result with this resolver (which its layer cannot import) before it runs.
        return args.func(args, resolve_specs)
    except KeyboardInterrupt:
        _close_progress_bars()
        # Outputs are written under a temporary name and renamed at the end: nothing half-written is left.
        print("forgetless: interrupted (nothing half-written was left)", file=sys.stderr)
        return 130
    except Exception as err:
        message = error_message(err)
        if message is None:
            raise
        _close_progress_bars()
        print(f"forgetless: error: {message}", file=sys.stderr)
        return 2


def _close_progress_bars() -> None:
    """Close progress bars an error interrupted, so the error starts a line of its own (a bar ends without one)."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is not None:
        for bar in list(getattr(tqdm_module.tqdm, "_instances", [])):
            bar.close()


if __name__ == "__main__":
    sys.exit(main())
