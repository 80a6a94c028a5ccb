"""The study's work as an explicit graph of cells: what each cell runs and what it waits for.

A study declares every cell it needs (train a model, evaluate it, evaluate a
sweep point, draw samples, mix a cocktail) as a ``Task`` with the ids of the
tasks it depends on; an executor (``forgetless.study.running.executors``) runs them in
any order the dependencies allow. A task writes its cell under the study
directory and returns nothing the study needs: the rows are assembled from the
finished cells afterwards, in a fixed order, so the results do not depend on the
order the cells ran in.

Tasks cross process (and machine) boundaries, so ``fn`` must be a module-level
function and ``args`` picklable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Work:
    """What a cell is made of, stated by the stage that declares it: the dry run's estimate is these counts
    times the rates it measures (``forgetless.study.running.dry_run``), and ``kind`` is what it counts the cell as.

    ``steps`` are training steps, ``answers`` greedy answers to domain prompts, ``texts`` general texts (or
    held-out samples) scored, ``samples`` context-free samples drawn.
    """

    kind: str
    steps: int = 0
    answers: int = 0
    texts: int = 0
    samples: int = 0


@dataclass(frozen=True)
class Task:
    """One cell of work: ``fn(*args)`` once every task in ``deps`` has finished.

    ``gpu`` marks a task that must have a GPU of its own when the machine has GPUs
    (training): a local worker without one (more ``--workers`` than GPUs) never
    takes it. On Ray every cell takes a GPU on a cluster that has them. ``work`` is what the task's
    stage says it costs (``Work``).
    """

    id: str
    label: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    deps: tuple[str, ...] = ()
    gpu: bool = False
    work: Work = Work("other")

    @property
    def log_name(self) -> str:
        """A file name for the task's log: its id with path separators and odd characters replaced."""
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.id.replace("/", "__")) + ".log"


@dataclass
class Graph:
    """Tasks in declaration order (a topological order: a task may only depend on tasks declared before it)."""

    tasks: dict[str, Task] = field(default_factory=dict)

    def add(self, id: str, label: str, fn: Callable[..., Any], args: Sequence[Any] = (),
            deps: Sequence[str] = (), gpu: bool = False, work: Work = Work("other")) -> str:
        """Declare a task; returns its id (for later tasks' ``deps``).

        Raises:
            ValueError: a duplicate id, or a dependency on a task not declared yet.
        """
        if id in self.tasks:
            raise ValueError(f"study graph: task {id!r} declared twice")
        missing = [d for d in deps if d not in self.tasks]
        if missing:
            raise ValueError(f"study graph: task {id!r} depends on undeclared {', '.join(missing)}")
        self.tasks[id] = Task(id, label, fn, tuple(args), tuple(dict.fromkeys(deps)), gpu, work)
        return id

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks.values())

    def __len__(self) -> int:
        return len(self.tasks)

    def ready(self, finished: set[str], started: set[str]) -> list[Task]:
        """Tasks not started yet whose dependencies have all finished, in declaration order."""
        return [t for t in self if t.id not in started and all(d in finished for d in t.deps)]
