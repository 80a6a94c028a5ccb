"""Study executors: the same results.jsonl serially, on local worker processes and on Ray; killed workers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from forgetless.study.config import load_study
from forgetless.study.running.executors import CellFailed, ExecutorError, LocalExecutor, SerialExecutor, make_executor
from forgetless.study.running.graph import Graph
from forgetless.study.running.runner import run_study
from tests.study_toy_tasks import die, fail, finish
from tests.test_study import study_yaml  # noqa: F401  (the fixture)
from tests.test_study_cocktail import with_cocktail

# Timing fields differ between runs of the same cells; every other field must match exactly.
TIMINGS = ("train_seconds",)


def comparable(root: Path) -> list[dict]:
    """The rows of a study with its directory replaced in model paths, and timings dropped.

    A cell key hashes the paths in its spec, and a replay method's spec names the
    samples file inside the study directory: the same cell has another key in
    another directory, so the key is replaced too.
    """
    rows = []
    for line in (root / "results.jsonl").read_text().splitlines():
        line = re.sub(r"cells/train-[0-9a-f]{16}/", "cells/train-<key>/", line.replace(str(root), "<study>"))
        row = json.loads(line)
        rows.append({k: v for k, v in row.items() if k not in TIMINGS})
    return rows


def _with(study_yaml: Path, output: Path, **changes: object) -> Path:  # noqa: F811
    values = yaml.safe_load(study_yaml.read_text())
    values["output"] = str(output)
    values.update(changes)
    path = output.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(values))
    return path


def _with_replay(study_yaml: Path, output: Path) -> Path:  # noqa: F811
    """The study with a replay method added: its training waits for the samples cell."""
    replay = {"name": "cf-replay", "learning_rates": [1e-3],
              "train": {"replay": {"data": "context-free", "ratio": 0.5}}}
    methods = [*yaml.safe_load(study_yaml.read_text())["methods"], replay]
    return _with(study_yaml, output, methods=methods)


def _serial_rows(study_yaml: Path, tmp_path: Path) -> list[dict]:  # noqa: F811
    # conftest.py runs the suite's process at one torch thread, as every worker does: the same sums in the same
    # order, so the results must be equal bit for bit.
    assert torch.get_num_threads() == 1
    expected = comparable(run_study(load_study(_with_replay(study_yaml, tmp_path / "serial")), print_fn=lambda _: None))
    assert [r["kind"] for r in expected] == ["base", "trained", "trained", "trained",
                                             "interpolation", "interpolation", "interpolation"]
    return expected


def test_serial_and_local_workers_give_identical_results(study_yaml: Path, tmp_path: Path) -> None:  # noqa: F811
    expected = _serial_rows(study_yaml, tmp_path)
    lines: list[str] = []
    local = run_study(load_study(_with_replay(study_yaml, tmp_path / "local")), print_fn=lines.append,
                      executor=LocalExecutor(workers=2))
    assert comparable(local) == expected
    # Every cell ran in a worker and logged there; the driver printed one start and one done line per cell.
    logs = sorted(p.name for p in (local / "logs").iterdir())
    assert "train__sft__lr=0.001__seed=0.log" in logs and "samples__replay.log" in logs
    assert sum(" done " in line for line in lines) == len(logs)


def test_serial_and_ray_give_identical_results(study_yaml: Path, tmp_path: Path) -> None:  # noqa: F811
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install 'forgetless[ray]'): the ray executor case is not run")
    expected = _serial_rows(study_yaml, tmp_path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_study(load_study(_with_replay(study_yaml, tmp_path / "ray")), print_fn=lambda _: None,
                           executor=make_executor("ray"))
    finally:
        ray.shutdown()
    assert comparable(on_ray) == expected


def test_cocktail_with_peers_on_local_workers_matches_serial(study_yaml: Path, tmp_path: Path) -> None:  # noqa: F811
    with_cocktail(study_yaml, tmp_path, peers=True)
    assert torch.get_num_threads() == 1  # as every worker (conftest.py)
    serial = run_study(load_study(_with(study_yaml, tmp_path / "serial")), print_fn=lambda _: None)
    local = run_study(load_study(_with(study_yaml, tmp_path / "local")), print_fn=lambda _: None,
                      executor=LocalExecutor(workers=2))
    expected = comparable(serial)
    assert [r["kind"] for r in expected].count("cocktail") == 3 and comparable(local) == expected


def test_killed_worker_leaves_no_cell_and_the_rerun_resumes(study_yaml: Path, tmp_path: Path) -> None:  # noqa: F811
    training = {"max_steps": 60, "batch_size": 4, "save_steps": 5, "logging_steps": 1}
    cfg = load_study(_with(study_yaml, tmp_path / "killed", training=training,
                           methods=[{"name": "sft", "learning_rates": [1e-2]}],
                           sweeps={"interpolation": [], "ensemble": []}))
    root = Path(cfg.output)
    failure: list[BaseException] = []

    def study() -> None:
        try:
            run_study(cfg, print_fn=lambda _: None, executor=LocalExecutor(workers=1, retries=0))
        except BaseException as err:  # noqa: BLE001  (handed to the test thread)
            failure.append(err)

    runner = threading.Thread(target=study)
    runner.start()
    log = root / "logs" / "train__sft__lr=0.01__seed=0.log"
    deadline = time.time() + 240
    while time.time() < deadline and runner.is_alive():
        done = list(root.glob("cells/train-*/model.work/checkpoints/checkpoint-*/trainer_state.json"))
        if done and log.is_file():
            break
        time.sleep(0.01)
    pid = int(log.read_text().split("[worker pid ")[1].split()[0])
    os.kill(pid, signal.SIGKILL)
    runner.join(timeout=120)
    assert len(failure) == 1 and isinstance(failure[0], CellFailed)
    message = str(failure[0])
    assert "train/sft/lr=0.01/seed=0" in message and str(log) in message and "signal 9" in message
    # No half-written cell: no result, no model; the base's evaluation (finished before) is kept.
    cell = next(root.glob("cells/train-*"))
    assert not (cell / "result.json").exists() and not (cell / "model").exists()
    assert [p for p in root.glob("cells/eval-*/result.json")]
    checkpoints = sorted(cell.glob("model.work/checkpoints/checkpoint-*"))
    assert checkpoints
    # The rerun resumes the cell from its last checkpoint and gives the uninterrupted run's results.
    resumed = run_study(cfg, print_fn=lambda _: None)
    record = json.loads((cell / "model" / "forgetless.json").read_text())
    assert record["resolved"]["resumed_from"] and "checkpoint-" in record["resolved"]["resumed_from"]
    fresh = run_study(load_study(_with(study_yaml, tmp_path / "fresh", training=training,
                                       methods=[{"name": "sft", "learning_rates": [1e-2]}],
                                       sweeps={"interpolation": [], "ensemble": []})), print_fn=lambda _: None)
    assert comparable(resumed) == comparable(fresh)


def test_a_cell_whose_worker_keeps_dying_fails_after_its_retries(tmp_path: Path) -> None:
    graph = Graph()
    graph.add("fine", "a cell that finishes", finish, (str(tmp_path / "fine"),))
    graph.add("dies", "a cell that kills its worker", die, (str(tmp_path / "attempts"),))
    graph.add("after", "waits for the dying cell", finish, (str(tmp_path / "after"),), deps=["dies"])
    lines: list[str] = []
    with pytest.raises(CellFailed, match=r"'dies' failed after 3 attempts: worker pid \d+ exited with signal 9; "
                                         r"log: .*dies\.log"):
        LocalExecutor(workers=2, retries=2).run(graph, tmp_path / "logs", lines.append)
    assert (tmp_path / "fine").read_text() == "finished"  # the finished cell is kept
    assert (tmp_path / "attempts").read_text() == "attempt\n" * 3 and not (tmp_path / "after").exists()
    assert sum("retrying" in line for line in lines) == 2


def test_a_cell_that_raises_fails_at_once_with_its_log(tmp_path: Path) -> None:
    graph = Graph()
    graph.add("bad", "a cell that raises", fail)
    with pytest.raises(CellFailed, match=r"'bad' failed: ValueError: bad cell; log: .*bad\.log"):
        LocalExecutor(workers=1).run(graph, tmp_path / "logs", lambda _: None)
    assert "Traceback" in (tmp_path / "logs" / "bad.log").read_text()
    with pytest.raises(ValueError, match="bad cell"):  # serially the exception itself propagates
        SerialExecutor().run(graph, tmp_path / "logs", lambda _: None)


def test_graph_rejects_undeclared_dependencies_and_orders_ready_tasks() -> None:
    graph = Graph()
    graph.add("a", "a", fail)
    with pytest.raises(ValueError, match="depends on undeclared b"):
        graph.add("c", "c", fail, deps=["b"])
    graph.add("b", "b", fail, deps=["a"])
    graph.add("c", "c", fail, deps=["a"])
    assert [t.id for t in graph.ready(set(), set())] == ["a"]
    assert [t.id for t in graph.ready({"a"}, {"a"})] == ["b", "c"]


def test_executor_choice_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="--workers 0"):
        make_executor("local", workers=0)
    with pytest.raises(ValueError, match="--address is for --executor ray"):
        make_executor("local", address="auto")
    assert isinstance(make_executor(workers=1), SerialExecutor)
    assert isinstance(make_executor("local", workers=2), LocalExecutor)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ExecutorError, match=r"^--executor ray needs Ray: pip install 'forgetless\[ray\]'$"):
        make_executor("ray")
    monkeypatch.undo()
    pytest.importorskip("ray", reason="ray is not installed: the unreachable-address case needs it")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ExecutorError, match=rf"cannot reach the Ray cluster at 127.0.0.1:{port}: "):
        make_executor("ray", address=f"127.0.0.1:{port}")
