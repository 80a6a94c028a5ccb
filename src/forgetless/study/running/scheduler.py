"""The scheduler every executor shares (``Executor.run``), the backend protocol it drives, and their errors.

Backends (``forgetless.study.running.executors``: serial and local processes;
``forgetless.study.running.ray_backend``: Ray) only say where a task runs; this module is below both, so neither imports the other's module to reach it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from forgetless.study.running.graph import Graph, Task


class ExecutorError(RuntimeError):
    """The executor cannot start: Ray missing, its cluster unreachable."""


class CellFailed(RuntimeError):
    """A cell of the study failed (raised, or its worker died too often); its log says why."""


@dataclass(frozen=True)
class Outcome:
    """How one attempt of a task ended: ``ok``, ``error`` (it raised) or ``died`` (its worker is gone)."""

    task_id: str
    status: str
    detail: str = ""


class Backend(Protocol):
    """Where tasks run. ``wait`` blocks until at least one submitted task has ended."""

    def can_take(self, task: Task) -> bool: ...

    def submit(self, task: Task, log: Path) -> None: ...

    def wait(self) -> list[Outcome]: ...

    def close(self) -> None: ...


class Executor:
    """Runs a graph on a backend (built lazily, so a bad executor fails before any work is planned)."""

    name = "executor"
    announce = True  # one line per started and finished cell (serial cells print their own progress)

    def __init__(self, retries: int = 2) -> None:
        self.retries = retries

    def backend(self) -> Backend:
        raise NotImplementedError

    def run(self, graph: Graph, log_dir: Path, print_fn: Callable[[str], None] = print) -> None:
        """Run every task of ``graph`` once its dependencies have finished.

        Raises:
            CellFailed: a task raised, or its worker died more than ``retries`` times in a row.
        """
        backend = self.backend()
        finished: set[str] = set()
        started: set[str] = set()
        attempts: dict[str, int] = {}
        running = 0
        failure: str | None = None
        begin = time.time()
        try:
            while True:
                for task in graph.ready(finished, started) if failure is None else []:
                    if not backend.can_take(task):
                        continue
                    attempts[task.id] = attempts.get(task.id, 0) + 1
                    started.add(task.id)
                    running += 1
                    backend.submit(task, log_dir / task.log_name)
                    if self.announce:
                        again = f" (attempt {attempts[task.id]})" if attempts[task.id] > 1 else ""
                        print_fn(f"[study {len(finished)}/{len(graph)} cells | {(time.time() - begin) / 60:5.1f} "
                                 f"min] start {task.label}{again}")
                if running == 0:
                    break
                for out in backend.wait():
                    running -= 1
                    task = graph.tasks[out.task_id]
                    log = log_dir / task.log_name
                    if out.status == "ok":
                        finished.add(task.id)
                        if self.announce:
                            print_fn(f"[study {len(finished)}/{len(graph)} cells | "
                                     f"{(time.time() - begin) / 60:5.1f} min] done {task.label}")
                    elif out.status == "died" and attempts[task.id] <= self.retries and failure is None:
                        started.discard(task.id)  # started again on the next pass, resuming from its checkpoint
                        print_fn(f"[study] worker died running {task.label} ({out.detail}); retrying; log: {log}")
                    elif failure is None:
                        tries = f" after {attempts[task.id]} attempts" if out.status == "died" else ""
                        failure = f"study cell {task.id!r} failed{tries}: {out.detail}; log: {log}"
                        if running:
                            print_fn(f"[study] {failure}; waiting for {running} running cells to finish")
        finally:
            backend.close()
        if failure is not None:
            raise CellFailed(f"{failure} (finished cells are kept: rerun the study to resume)")
