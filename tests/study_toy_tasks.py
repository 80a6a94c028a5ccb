"""Toy study cells for the executor tests, in a module of their own: a spawned worker imports
only this (no torch), so killing and restarting workers costs little."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def finish(path: str) -> None:
    """Mark a finished cell."""
    Path(path).write_text("finished")


def die(path: str) -> None:
    """Record an attempt, then kill this worker as an out-of-memory killer would."""
    with open(path, "a") as handle:
        handle.write("attempt\n")
    os.kill(os.getpid(), signal.SIGKILL)


def fail() -> None:
    """A cell with a bug."""
    raise ValueError("bad cell")


def linger(path: str, seconds: float) -> None:
    """Write this worker's pid to ``path``, then finish ``seconds`` later (a cell still running when its
    study is killed)."""
    import time

    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    Path(path).write_text("finished")


def finish_then_die(path: str, delay: float) -> None:
    """Finish, and have this worker killed ``delay`` seconds later, while it waits for its next cell."""
    import subprocess

    subprocess.Popen(["sh", "-c", f"sleep {delay}; kill -9 {os.getpid()}"], start_new_session=True)
    finish(path)
