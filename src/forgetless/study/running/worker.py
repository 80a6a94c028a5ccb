"""What runs inside a worker process: one cell at a time, its output in the cell's log.

Imported by freshly spawned processes before torch is: the device and thread
settings of a worker go into its environment first (a torch imported earlier
would ignore ``CUDA_VISIBLE_DEVICES``), so this module imports nothing heavy at
the top.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

Outcome = tuple[str, str]  # ("ok" | "error", detail)


def run_logged(fn: Callable[..., Any], args: tuple[Any, ...], log: str, threads: int | None = None) -> Outcome:
    """Run ``fn(*args)`` with this process's stdout and stderr (file descriptors too) appended to ``log``.

    Returns:
        ``("ok", "")``, or ``("error", last line of the exception)`` with the traceback in the log.
    """
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a", encoding="utf-8") as handle:
        # Redirect the descriptors, not only sys.stdout: C extensions and child tools write there too.
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            print(f"[worker pid {os.getpid()} on {os.uname().nodename}] {time.strftime('%Y-%m-%d %H:%M:%S')} "
                  f"start {getattr(fn, '__name__', fn)}", flush=True)
            fn(*args)
            print(f"[worker pid {os.getpid()}] done", flush=True)
            return "ok", ""
        except Exception as err:  # reported to the driver, which fails the study after in-flight cells finish
            traceback.print_exc()
            return "error", f"{type(err).__name__}: {err}".splitlines()[0]
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def die_with_parent(parent: int) -> None:
    """End this process as soon as ``parent`` (the study that started it) is gone, even when killed.

    A SIGKILLed study runs no cleanup, and an orphaned worker would go on computing its cell while
    the rerun starts the same cell again: two trainers writing one cell's checkpoints. On Linux the
    kernel kills the worker with its parent (``PR_SET_PDEATHSIG``); elsewhere a thread watches for the
    worker being handed to another parent. Either way the cell is left unfinished, which a rerun resumes.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1  # <linux/prctl.h>
            if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the study died before the setting took effect
                    os.kill(os.getpid(), signal.SIGKILL)
                return
        except (OSError, AttributeError):  # no libc to call: the watching thread below
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="forgetless-watch-study", daemon=True).start()


def worker_main(conn: Connection, env: dict[str, str], threads: int, parent: int | None = None) -> None:
    """A local worker: set its device and threads, then run cells sent over ``conn`` until it gets None.

    Each message is ``(task id, fn, args, log path)``; each reply ``(task id, status, detail)``.
    ``parent``: the study's pid; the worker dies with it (``die_with_parent``).
    """
    if parent is not None:
        die_with_parent(parent)
    os.environ.update(env)
    while True:
        message = conn.recv()
        if message is None:
            return
        task_id, fn, args, log = message
        status, detail = run_logged(fn, args, log, threads)
        conn.send((task_id, status, detail))
