"""What runs inside a worker process: one cell at a time, its output in the cell's log.

Imported by freshly spawned processes before torch is: the device and thread
settings of a worker go into its environment first (a torch imported earlier
would ignore ``CUDA_VISIBLE_DEVICES``), so this module imports nothing heavy at
the top.
"""

from __future__ import annotations

import os
import sys
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


def worker_main(conn: Connection, env: dict[str, str], threads: int) -> None:
    """A local worker: set its device and threads, then run cells sent over ``conn`` until it gets None.

    Each message is ``(task id, fn, args, log path)``; each reply ``(task id, status, detail)``.
    """
    os.environ.update(env)
    while True:
        message = conn.recv()
        if message is None:
            return
        task_id, fn, args, log = message
        status, detail = run_logged(fn, args, log, threads)
        conn.send((task_id, status, detail))
