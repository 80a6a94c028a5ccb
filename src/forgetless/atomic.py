"""Atomic outputs: write under a temporary name, then rename, so an interrupted
command never leaves a half-written file or model directory behind."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from glob import escape as glob_escape
from pathlib import Path
from typing import Any


@contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that becomes ``path`` when the block succeeds.

    On an exception the temporary directory is removed and ``path`` is untouched.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    given = path
    path = Path(os.path.abspath(path))  # "sub/.." names its parent: the temporary sibling needs a real name
    if path.exists() and not overwrite:
        raise FileExistsError(f"{given}: already exists; pass --overwrite to replace it")
    _remove_stale_siblings(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as err:  # named as the output the user asked for, not the temporary sibling
        raise type(err)(err.errno, err.strerror, str(path)) from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_stale_siblings(path: Path) -> None:
    """Remove ``.NAME.tmp-PID`` / ``.NAME.old-PID`` (directories or files) left by a process killed mid-write.

    Only those of processes no longer running: a concurrent writer's is left alone.
    """
    if not path.parent.is_dir():
        return
    for sibling in path.parent.glob(f".{glob_escape(path.name)}.*-*"):
        stem, _, pid = sibling.name.rpartition("-")
        if stem in (f".{path.name}.tmp", f".{path.name}.old") and pid.isdigit() and not _pid_alive(int(pid)):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it is renamed to ``path``, on an error removed.

    A reader never sees a half-written file, and a writer killed mid-write leaves only its ``.NAME.tmp-PID``,
    which the next write of the same path removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(path)  # a killed writer's temporary file (a study cell's result.json, resumed)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, value: Any) -> None:
    """Write JSON atomically (temporary file in the same directory, then rename)."""
    write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write JSON lines atomically."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
