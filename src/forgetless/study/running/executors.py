"""Executors run a study's graph of cells: serially here, on a pool of local processes, or on Ray.

One scheduler (``Executor.run``) walks the graph: it starts every task whose
dependencies have finished as long as the backend has room, and collects
outcomes. Backends differ only in where a task runs:

- ``serial``: in this process, in declaration order (the reference; exceptions
  propagate unchanged);
- ``local``: spawned worker processes (never forked: torch with fork is unsafe),
  one torch thread each on CPU, one GPU each when there are GPUs;
- ``ray`` (``forgetless.study.running.ray_backend``): each cell a Ray task with its
  resources declared.

A worker that dies mid-cell (killed, out of memory) leaves its cell unfinished:
cells write their result last and atomically, and training resumes from its last
Trainer checkpoint, so the cell is simply started again, up to ``retries`` more
times. A cell that raises, or dies once too often, fails the study with its log
path, after the cells still running have finished (every finished cell is kept).
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from forgetless.machine import usable_cores
from forgetless.study.running.graph import Task
# CellFailed and ExecutorError are re-exported: the CLI and callers of make_executor catch them from here.
from forgetless.study.running.scheduler import Backend, CellFailed, Executor, ExecutorError, Outcome  # noqa: F401
from forgetless.study.running.worker import worker_main

EXECUTORS = ("serial", "local", "ray")


class _Serial:
    """Runs each task in this process when it is waited for."""

    def __init__(self) -> None:
        self.pending: list[Task] = []

    def can_take(self, task: Task) -> bool:
        return not self.pending

    def submit(self, task: Task, log: Path) -> None:
        self.pending.append(task)

    def wait(self) -> list[Outcome]:
        task = self.pending.pop()
        task.fn(*task.args)
        return [Outcome(task.id, "ok")]

    def close(self) -> None:
        self.pending.clear()


class SerialExecutor(Executor):
    """Every cell in this process, in the graph's declaration order: today's behaviour, the reference."""

    name = "serial"
    announce = False

    def backend(self) -> Backend:
        return _Serial()


@dataclass
class _Worker:
    process: Any  # multiprocessing.Process of the spawn context
    conn: Any  # the driver's end of the pipe
    task: str | None = None


class _Local:
    """A fixed set of worker slots; slot k owns GPU ``gpus[k]`` when there is one, else runs on CPU."""

    def __init__(self, workers: int, gpus: list[str], threads: int, start_method: str) -> None:
        self.mp = multiprocessing.get_context(start_method)
        self.slots: list[_Worker | None] = [None] * workers
        self.gpus, self.threads = gpus, threads

    def _free_slot(self, gpu: bool) -> int | None:
        for k, worker in enumerate(self.slots):
            # Training cells take a GPU slot whenever the machine has GPUs.
            if (worker is None or worker.task is None) and (not gpu or not self.gpus or k < len(self.gpus)):
                return k
        return None

    def can_take(self, task: Task) -> bool:
        return self._free_slot(task.gpu) is not None

    def _start(self, k: int) -> _Worker:
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
               "TOKENIZERS_PARALLELISM": "false",
               "CUDA_VISIBLE_DEVICES": self.gpus[k] if k < len(self.gpus) else ""}
        parent, child = self.mp.Pipe()
        # os.getpid(): the worker dies with this study, killed or not (worker.die_with_parent).
        process = self.mp.Process(target=worker_main, args=(child, env, self.threads, os.getpid()), daemon=True,
                                  name=f"forgetless-study-worker-{k}")
        process.start()
        child.close()
        return _Worker(process, parent)

    def submit(self, task: Task, log: Path) -> None:
        k = self._free_slot(task.gpu)
        assert k is not None
        message = (task.id, task.fn, task.args, str(log))
        worker = self.slots[k]
        if worker is not None:
            try:
                worker.conn.send(message)
            except OSError:  # it died waiting for work (killed, out of memory): not an attempt of this cell
                self._death(worker)
                worker = None
        if worker is None:
            worker = self._start(k)
            worker.conn.send(message)
        self.slots[k] = worker
        worker.task = task.id

    def wait(self) -> list[Outcome]:
        busy = [w for w in self.slots if w is not None and w.task is not None]
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
        outcomes = []
        for k, worker in enumerate(self.slots):
            if worker is None or worker.task is None:
                continue
            if worker.conn in ready:
                try:
                    task_id, status, detail = worker.conn.recv()
                except (EOFError, OSError):  # died while (or before) answering
                    task_id, status, detail = worker.task, "died", self._death(worker)
                else:
                    worker.task = None
                    outcomes.append(Outcome(task_id, status, detail))
                    continue
            elif worker.process.sentinel not in ready:
                continue
            else:
                task_id, status, detail = worker.task, "died", self._death(worker)
            outcomes.append(Outcome(task_id, status, detail))
            self.slots[k] = None  # a fresh worker takes the slot
        return outcomes

    @staticmethod
    def _death(worker: _Worker) -> str:
        worker.process.join(timeout=5)
        worker.conn.close()
        code = worker.process.exitcode
        return f"worker pid {worker.process.pid} exited with {'signal ' + str(-code) if code and code < 0 else code}"

    def close(self) -> None:
        for worker in self.slots:
            if worker is None:
                continue
            try:
                if worker.task is None:
                    worker.conn.send(None)
            except OSError:
                pass
        for worker in self.slots:
            if worker is None:
                continue
            worker.process.join(timeout=10 if worker.task is None else 0)
            if worker.process.is_alive():  # interrupted mid-cell: the cell resumes on the next run
                worker.process.terminate()
                worker.process.join(timeout=10)
        self.slots = [None] * len(self.slots)


def local_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    return ids[: torch.cuda.device_count()] or [str(i) for i in range(torch.cuda.device_count())]


def default_workers() -> int:
    """Local workers by default: one per GPU when there are GPUs, else one per usable core."""

    return len(local_gpus()) or usable_cores()


class LocalExecutor(Executor):
    """A pool of spawned worker processes on this machine."""

    name = "local"

    def __init__(self, workers: int | None = None, retries: int = 2, start_method: str = "spawn") -> None:
        super().__init__(retries)
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f"start_method: {start_method!r}; use spawn or forkserver (torch with fork is unsafe)")
        self.workers = workers or default_workers()
        self.start_method = start_method

    def backend(self) -> Backend:
        # One thread per worker: on CPU, N single-threaded processes beat one N-threaded
        # process (the testbed trained 1.6x faster on 2 cores this way).
        return _Local(self.workers, local_gpus(), threads=1, start_method=self.start_method)


def make_executor(name: str | None = None, workers: int | None = None, address: str | None = None,
                  retries: int = 2) -> Executor:
    """The executor the command line asks for: ``local`` by default when more than one worker, else serial.

    Raises:
        ValueError: an unknown name, fewer than one worker, or ``address`` without ``ray``.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"--workers {workers}: must be at least 1")
    if address is not None and name != "ray":
        raise ValueError("--address is for --executor ray")
    if name is None:
        name = "serial" if (workers or default_workers()) == 1 else "local"
    if name == "serial":
        return SerialExecutor(retries)
    if name == "local":
        return SerialExecutor(retries) if workers == 1 else LocalExecutor(workers, retries)
    if name == "ray":
        # imported here: ray is an optional extra
        from forgetless.study.running.ray_backend import RayExecutor

        return RayExecutor(address, retries)
    raise ValueError(f"--executor {name}: unknown; choose one of {', '.join(EXECUTORS)}")
