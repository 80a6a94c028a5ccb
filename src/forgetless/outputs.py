"""Where a command may write: never over one of its inputs, and ``--overwrite`` only over what forgetless wrote.

Every command that writes checks its output here before any work (issue 34):

- the output must not be, contain, or lie inside any input (a model, a data file, a corpus, a config): writing
  there would replace or mix with the user's files (``--output P`` with ``--data P/data.jsonl`` used to delete P);
- an existing output is replaced only with ``--overwrite``, and then only if forgetless wrote it: a directory
  holding one of forgetless's record files (``MARKERS``) or an empty directory; a file for a file output.

Paths are compared after resolving symlinks and ``..``, so ``--output sub/..`` is the directory it names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

# A directory holding one of these was written by forgetless: a trained model (train), a merge (merge), a
# converted GGUF file (convert-gguf).
MARKERS = ("forgetless.json", "forgetless-merge.json", "gguf_source.json")


class OutputError(ValueError):
    """An output path that would destroy an input or a file forgetless did not write (one line, names both)."""


def real(path: str | Path) -> Path:
    """``path`` absolute, with symlinks and ``..`` resolved (it need not exist)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def input_paths(value: Any) -> list[str]:
    """Every string in ``value`` (a string, a list/tuple/dict of them, a pydantic model) that names an existing path.

    Hub ids and other strings that are not on disk are dropped: only a local file can be overwritten.
    """
    if value is None:
        return []
    if isinstance(value, str | Path):
        return [os.fspath(value)] if os.path.exists(value) else []
    if isinstance(value, Mapping):
        return [p for v in value.values() for p in input_paths(v)]
    if isinstance(value, list | tuple | set):
        return [p for v in value for p in input_paths(v)]
    if hasattr(value, "model_fields"):  # a pydantic model: its fields
        return [p for name in type(value).model_fields for p in input_paths(getattr(value, name))]
    return []


def refuse_overlap(output: str | Path, inputs: Mapping[str, Any], flag: str = "--output") -> None:
    """Refuse ``output`` if it is, contains, or lies inside one of ``inputs`` (``{what: path(s) or config}``).

    Raises:
        OutputError: naming the output, the input and how they overlap.
    """
    out = real(output)
    if out == out.parent:
        raise OutputError(f"{flag} {output}: is the file system's root; choose a directory for forgetless's output")
    for what, value in inputs.items():
        for path in input_paths(value):
            given = real(path)
            if given == out:
                how = "is"
            elif out in given.parents:
                how = "contains"
            elif given in out.parents:
                how = "lies inside"
            else:
                continue
            raise OutputError(f"{flag} {output}: {how} the {what} {path}; writing there would replace it, "
                              f"choose another {flag}")


def guard_output(output: str | Path, inputs: Mapping[str, Any], overwrite: bool,
                 kind: Literal["dir", "file"] = "dir", flag: str = "--output") -> None:
    """Check, before any work, that writing ``output`` destroys nothing of the user's.

    Args:
        output: the directory (``kind="dir"``) or file (``kind="file"``) the command will write.
        inputs: ``{what: path(s) or config}`` the command reads (what names it in the error: "--data").
        overwrite: the user passed ``--overwrite``.

    Raises:
        OutputError: ``output`` overlaps an input, or ``--overwrite`` would replace something forgetless did not write.
        FileExistsError: ``output`` exists and ``overwrite`` is off.
    """
    refuse_overlap(output, inputs, flag)
    path = Path(output)
    if not os.path.lexists(path):
        return
    if not overwrite:
        raise FileExistsError(f"{output}: already exists; pass --overwrite to replace it")
    if kind == "file":
        if path.is_dir():
            raise OutputError(f"{flag} {output}: is a directory; --overwrite replaces a file forgetless wrote, "
                              "not a directory")
        return
    if not path.is_dir():
        raise OutputError(f"{flag} {output}: is a file; --overwrite replaces only a directory forgetless wrote")
    entries = sorted(p.name for p in path.iterdir())
    if entries and not any(marker in entries for marker in MARKERS):
        raise OutputError(f"{flag} {output}: --overwrite replaces only a directory forgetless wrote (holding "
                          f"{' or '.join(MARKERS)}) or an empty one; this one holds {_some(entries)}")


def guard_result(output: str | Path, inputs: Mapping[str, Any], key: str, command: str,
                 flag: str = "--output") -> None:
    """Check a command's one JSON result file (``eval --output``, ``kl-estimate --output``), which replaces an
    earlier result without asking: it may not overlap an input, and an existing file must be such a result (a JSON
    object holding ``key``), never a file of the user's.

    Raises:
        OutputError: ``output`` overlaps an input, is a directory, or holds something other than an earlier result.
    """
    refuse_overlap(output, inputs, flag)
    path = Path(output)
    if not os.path.lexists(path):
        return
    if path.is_dir():
        raise OutputError(f"{flag} {output}: is a directory; expected the path of a JSON file")
    earlier = False
    if path.is_file() and path.stat().st_size < 2**26:  # a result is kilobytes; nothing larger is read to find out
        try:
            value = json.loads(path.read_bytes())
            earlier = isinstance(value, dict) and key in value
        except (ValueError, RecursionError):  # not JSON (a user's notes, a JSONL file)
            pass
    if not earlier:
        raise OutputError(f"{flag} {output}: already exists and is not an earlier result of {command} (a JSON object "
                          f"with {key!r}); writing there would replace it, choose another {flag}")


def _some(names: Iterable[str], shown: int = 3) -> str:
    """``a, b, c and 4 more``: a short list for a one-line error."""
    names = list(names)
    head = ", ".join(names[:shown])
    return head + (f" and {len(names) - shown} more" if len(names) > shown else "")
