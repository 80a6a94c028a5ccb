"""``--executor ray``: every study cell a Ray task, on a local Ray instance or a cluster.

Each cell is a Ray task declaring one CPU, and one GPU when the cluster has
GPUs (every cell loads a model); Ray places it. Cells read and write the study directory,
so on a cluster that directory (and the base model and data) must be on a
filesystem every node mounts at the same path. A cell's output (stdout and
stderr) goes to its log in the study's ``logs/`` directory, as with ``local``.

Ray's own retries are off (``max_retries=0``): the study's scheduler retries a
cell whose worker died, the same way for every executor.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from forgetless.study.running.scheduler import Backend, Executor, ExecutorError, Outcome
from forgetless.study.running.graph import Task
from forgetless.study.running.worker import run_logged

INSTALL = "--executor ray needs Ray: pip install 'forgetless[ray]'"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(INSTALL) from None
    return ray


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on an unreachable ``HOST:PORT`` (or ``ray://HOST:PORT``): Ray itself retries for minutes.

    ``None`` (start a local instance) and ``auto`` (the cluster this node belongs to) are left to Ray.
    """
    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ExecutorError(f"--executor ray: cannot reach the Ray cluster at {address}: {err}") from None


class _Ray:
    def __init__(self, address: str | None) -> None:
        ray = self.ray = _import_ray()
        self.owned = not ray.is_initialized()  # a Ray the caller started stays up
        if self.owned:
            try:
                ray.init(address=address, log_to_driver=False, include_dashboard=False)
            except Exception as err:  # Ray raises ConnectionError, RuntimeError, ... for an unreachable cluster
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise ExecutorError(f"--executor ray: cannot reach {where}: {str(err).splitlines()[0]}") from None
        self.has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        self.remote = ray.remote(max_retries=0)(run_logged)
        self.refs: dict[Any, str] = {}

    def can_take(self, task: Task) -> bool:
        return True  # Ray queues tasks until their resources are free

    def submit(self, task: Task, log: Path) -> None:
        # Every cell loads a model, so on a cluster with GPUs each takes one (as a local worker owns one).
        options = {"num_cpus": 1, "num_gpus": 1 if self.has_gpus else 0}
        ref = self.remote.options(**options).remote(task.fn, task.args, str(log), 1)
        self.refs[ref] = task.id

    def wait(self) -> list[Outcome]:
        ray = self.ray
        done, _ = ray.wait(list(self.refs), num_returns=1)
        outcomes = []
        for ref in done:
            task_id = self.refs.pop(ref)
            try:
                status, detail = ray.get(ref)
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.OutOfMemoryError, ray.exceptions.ObjectLostError) as err:
                status, detail = "died", type(err).__name__
            except ray.exceptions.RayError as err:
                status, detail = "error", str(err).strip().splitlines()[-1]
            outcomes.append(Outcome(task_id, status, detail))
        return outcomes

    def close(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)
        self.refs.clear()
        if self.owned:
            self.ray.shutdown()


class RayExecutor(Executor):
    """Cells as Ray tasks; ``address`` None starts a local Ray instance, ``auto`` joins the running cluster."""

    name = "ray"

    def __init__(self, address: str | None = None, retries: int = 2) -> None:
        super().__init__(retries)
        _import_ray()  # fail now, before any work, when Ray is missing or its cluster unreachable
        check_reachable(address)
        self.address = address

    def backend(self) -> Backend:
        return _Ray(self.address)
