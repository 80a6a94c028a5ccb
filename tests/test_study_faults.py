"""Kill a tiny study with SIGKILL, the study process and its worker processes, rerun it until it completes,
and require the results of an uninterrupted run in every field but timings (issue 29, item 7).

The study (``forgetless study``, run as a command as a user runs it) trains three models (two SFT learning
rates, one with context-free replay, so a samples cell comes first), evaluates them and the base, and sweeps
one interpolation point per model; each training cell saves checkpoints, so a kill mid-training resumes.

- Deterministic kills at points read from the study's cells and logs (``slow``, about a minute): a worker
  mid-training (the study retries its cell), then the study itself once the retry runs and a model is
  half-trained (its workers must die with it; the rerun resumes the model).
- The default tier: the study killed while it starts up (the rerun must not refuse its folder) and, on toy
  cells, a worker killed between cells, a worker whose study is killed, a killed writer's temporary file.
- ``slow``: kills at random moments (seeded: ``FORGETLESS_FAULT_SEED`` replays a round's plan, the seed and
  every kill are printed; ``FORGETLESS_FAULT_ROUNDS`` rounds), of the study or of one of its two workers,
  and of a serial study, rerun until it completes.

Timing fields are the only ones allowed to differ (``TIMINGS``); paths inside the study are compared
relative to it, since the uninterrupted reference runs in a folder of its own.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import forgetless
from forgetless.atomic import write_json
from forgetless.study.cli import refuse_foreign_study_dir
from forgetless.study.config import load_study
from forgetless.study.running.executors import LocalExecutor
from forgetless.study.running.graph import Graph
from forgetless.study.running.runner import run_study
from tests.study_toy_tasks import finish, finish_then_die, linger
from tests.test_study import study_yaml  # noqa: F401  (the fixture)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds worker processes in /proc")

# The row fields that measure time: everything else must be identical after any number of kills.
TIMINGS = ("train_seconds",)
# report.md states no timing (train_seconds is not shown): it must be identical but for the study's own path.

SRC = str(Path(forgetless.__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}  # unbuffered: a killed study's lines are kept
# The slow test's rounds and the seed of its first round (round r uses SEED + r): a printed seed replays a run's
# kill plan (what a kill then hits depends on the machine's speed, so it is printed too).
ROUNDS = int(os.environ.get("FORGETLESS_FAULT_ROUNDS", "2"))
SEED = int(os.environ.get("FORGETLESS_FAULT_SEED", "29"))


def study_config(study_yaml: Path, output: Path, small: bool = False) -> Path:  # noqa: F811
    """The tiny study, with checkpoints every two of six steps and a replay method (a samples cell first).

    ``small``: two SFT models, no replay and no sweep (6 cells instead of 12), for the default tier.
    """
    values = yaml.safe_load(study_yaml.read_text())
    values["output"] = str(output)
    values["training"] = {"max_steps": 6, "batch_size": 4, "save_steps": 2, "logging_steps": 1}
    if small:
        values["sweeps"]["interpolation"] = []
    else:
        values["methods"].append({"name": "cf-replay", "learning_rates": [1e-3],
                                  "train": {"replay": {"data": "context-free", "ratio": 0.5}}})
    path = output.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(values))
    return path


def comparable_rows(root: Path) -> list[dict]:
    """The rows of ``results.jsonl`` with paths inside the study made relative to it and timings dropped."""
    text = (root / "results.jsonl").read_text().replace(str(root), "<study>")
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in text.splitlines()]


def comparable_report(root: Path) -> str:
    """``report.md`` with paths inside the study made relative to it."""
    return (root / "report.md").read_text().replace(str(root), "<study>")


def assert_same_results(root: Path, reference: Path) -> None:
    """Every row equal field by field but ``TIMINGS`` (a differing field is named), and report.md equal."""
    rows, expected = comparable_rows(root), comparable_rows(reference)
    assert [r["id"] for r in rows] == [r["id"] for r in expected]
    for row, want in zip(rows, expected):
        differing = sorted(k for k in row.keys() | want.keys() if row.get(k) != want.get(k))
        assert not differing, f"row {row['id']}: fields {differing} differ from the uninterrupted run"
    assert comparable_report(root) == comparable_report(reference)


def study_command(config: Path, executor: str) -> list[str]:
    workers = ["--executor", "local", "--workers", "2"] if executor == "local" else ["--executor", "serial"]
    return [sys.executable, "-m", "forgetless.cli", "study", str(config), *workers]


def children(pid: int) -> list[int]:
    """The live worker processes of the study ``pid`` (spawned by multiprocessing; the resource tracker is not one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and b"spawn_main" in cmdline and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Tally:
    """What a fault run did: the kills delivered, the study's launches, the cells it started."""

    kills: list[str] = field(default_factory=list)
    launches: int = 0
    starts: int = 0  # cell computations started, over all launches (a cell read from its cache is not one)
    exits: list[int] = field(default_factory=list)

    @property
    def resumes(self) -> int:
        return self.launches - 1


def running_lines(text: str) -> int:
    """How many cell computations ``text`` says were started: its ``(running)`` progress lines (a cell read back
    from its cache says ``(cached)``). A serial study prints them; a local worker writes them to the cell's log."""
    return sum(line.endswith("(running)") for line in text.splitlines())


def logged_starts(root: Path) -> int:
    """The cell computations the workers of every launch started, from the cells' logs (appended to by each)."""
    return sum(running_lines(log.read_text(errors="replace")) for log in (root / "logs").glob("*.log"))


def paths_under(folder: Path) -> set[Path]:
    """Every path under ``folder`` now (os.walk passes over a directory removed meanwhile; rglob raises)."""
    return {Path(top) / name for top, dirs, files in os.walk(folder) for name in (*dirs, *files)}


@dataclass
class Clock:
    """A launch's time since it started and since its first cell (None before: still starting up), and the
    study's progress: how many paths under ``cells/`` it has seen so far (cached ones included), which does
    not depend on the machine's speed."""

    elapsed: float
    in_cells: float | None
    progress: int = 0


def launch(config: Path, executor: str, tally: Tally,
           killer: Callable[[subprocess.Popen, Clock], bool] | None = None, timeout: float = 900) -> tuple[int, Clock]:
    """Run the study once; ``killer(process, clock)`` is polled (it records its kills in ``tally``) until it
    returns True (it killed the study).

    After a kill of the study itself, its workers must be gone within seconds (an orphan would go on
    writing the cell the rerun computes again).

    Returns:
        The exit status and the launch's clock at its end.
    """
    tally.launches += 1
    process = subprocess.Popen(study_command(config, executor), env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    first_cell: list[float] = []

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            if not first_cell and line.startswith("[study"):
                first_cell.append(time.monotonic())
            lines.append(line.rstrip("\n"))
    reader = threading.Thread(target=read)
    reader.start()
    start = time.monotonic()
    workers: set[int] = set()
    seen: set[Path] = set()
    cells = Path(yaml.safe_load(config.read_text())["output"]) / "cells"

    def clock() -> Clock:
        now = time.monotonic()
        return Clock(now - start, now - first_cell[0] if first_cell else None, len(seen))
    polls = 0
    while process.poll() is None:
        assert time.monotonic() - start < timeout, "the study hung"
        if polls % 10 == 0:  # every 0.1 s: scanning /proc costs
            workers.update(children(process.pid))
        polls += 1
        seen.update(paths_under(cells))
        if killer is not None and killer(process, clock()):
            killer = None
        time.sleep(0.01)
    process.wait()
    reader.join()
    stdout = "\n".join(lines)
    tally.starts += running_lines(stdout)  # serial: the study's own lines (local: logged_starts, at the end)
    tally.exits.append(process.returncode)
    if process.returncode == -signal.SIGKILL:
        deadline = time.monotonic() + 5
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(alive(w) for w in workers), "a worker outlived its killed study"
    else:  # 1: a cell's worker was killed once too often (CellFailed); the rerun resumes it
        assert process.returncode in (0, 1), f"the study failed with exit {process.returncode}:\n{stdout[-3000:]}"
        assert process.returncode == 0 or "failed after" in stdout, stdout[-3000:]
    return process.returncode, clock()


def no_leftovers(root: Path) -> None:
    """No temporary file or directory of a killed write is left in the finished study."""
    leftovers = [p for p in root.rglob("*") if re.search(r"\.(tmp|old)-\d+$", p.name)]
    assert not leftovers, f"left behind by killed writes: {leftovers[:5]}"



def busy_workers(root: Path) -> dict[int, str]:
    """The workers running a cell now, read from the cells' logs: ``{pid: log name}``."""
    busy: dict[int, str] = {}
    for log in sorted((root / "logs").glob("*.log")) if (root / "logs").is_dir() else []:
        pid = None
        for line in log.read_text(errors="replace").splitlines():
            if (started := re.match(r"\[worker pid (\d+) on .*\] .* start ", line)) is not None:
                pid = int(started[1])
            elif re.match(r"\[worker pid \d+\] done", line):
                pid = None
        if pid is not None and alive(pid):
            busy[pid] = log.name
    return busy


def half_trained(root: Path) -> list[Path]:
    """Training cells with a complete checkpoint and no model yet: a kill now resumes from the checkpoint."""
    return [cell for cell in root.glob("cells/train-*")
            if list(cell.glob("model.work/checkpoints/checkpoint-*/trainer_state.json"))
            and not (cell / "model").exists()]


@pytest.fixture
def reference(study_yaml: Path, tmp_path: Path) -> Path:  # noqa: F811
    """The uninterrupted study, serially in this process (serial and local workers agree bit for bit:
    tests/test_study_executors.py)."""
    return run_study(load_study(study_config(study_yaml, tmp_path / "reference")), print_fn=lambda _: None)


@pytest.mark.slow  # 50-60 s on 2 busy cores: the study and two workers start up (torch) before the first kill
def test_a_killed_worker_and_a_killed_study_resume_to_the_same_results(
    study_yaml: Path, tmp_path: Path  # noqa: F811
) -> None:
    reference = run_study(load_study(study_config(study_yaml, tmp_path / "reference", small=True)),
                          print_fn=lambda _: None)
    config = study_config(study_yaml, tmp_path / "killed", small=True)
    root = tmp_path / "killed"
    tally = Tally()
    killed: dict[str, int | str] = {}

    def killer(process: subprocess.Popen, clock: Clock) -> bool:
        elapsed = clock.elapsed
        # First a worker in the middle of training (the study retries its cell), then the study itself
        # while a model is half-trained (the rerun resumes it from its checkpoint).
        busy = busy_workers(root)
        if "worker" not in killed:
            training = [pid for pid, log in busy.items() if log.startswith("train__")]
            if training and half_trained(root):
                os.kill(training[0], signal.SIGKILL)
                killed["worker"], killed["log"] = training[0], busy[training[0]]
                tally.kills.append(f"worker {training[0]} training ({busy[training[0]]}) at {elapsed:.2f} s")
            return False
        retried = [log for pid, log in busy.items() if log == killed["log"] and pid != killed["worker"]]
        if retried and half_trained(root):  # the killed worker's cell runs again on a fresh worker
            process.send_signal(signal.SIGKILL)
            tally.kills.append(f"study, a model half-trained, at {elapsed:.2f} s")
            return True
        return False

    assert launch(config, "local", tally, killer)[0] == -signal.SIGKILL
    assert len(tally.kills) == 2, tally.kills
    # The rerun, serially in this process (as quick as the reference): it resumes the half-trained models.
    lines: list[str] = []
    run_study(load_study(config), print_fn=lines.append)
    tally.launches += 1
    tally.starts += logged_starts(root) + running_lines("\n".join(lines))
    print(f"\nkills: {tally.kills}; {tally.resumes} resume; {tally.starts} cell computations for 6 cells; "
          f"{resumed_models(root)} models resumed from a checkpoint")
    assert resumed_models(root) >= 1
    assert_same_results(root, reference)
    no_leftovers(root)



def test_a_study_killed_while_starting_up_is_resumed_not_refused(study_yaml: Path, tmp_path: Path) -> None:  # noqa: F811
    # Killed once it has carved its validation set into data/ (before any cell): the rerun must take the folder
    # for the study's own, not refuse it as a folder of the user's holding data/ and no cells/.
    config = study_config(study_yaml, tmp_path / "study", small=True)
    root = tmp_path / "study"
    tally = Tally()

    def killer(process: subprocess.Popen, clock: Clock) -> bool:
        if (root / "data" / "validation.jsonl").is_file():
            process.send_signal(signal.SIGKILL)
            tally.kills.append(f"study, data/ written, at {clock.elapsed:.2f} s")
            return True
        return False

    assert launch(config, "serial", tally, killer)[0] == -signal.SIGKILL
    assert not list(root.glob("cells/*/result.json"))  # no cell had finished
    refuse_foreign_study_dir(root)  # what `forgetless study` checks first: the rerun takes the folder for its own

def test_a_worker_killed_between_cells_is_replaced(tmp_path: Path) -> None:
    # Slot 0's worker dies idle; the next cell goes to slot 0 and must start on a fresh worker (not fail
    # sending to the dead one, and not count as an attempt of that cell).
    graph = Graph()
    graph.add("a", "finishes, then its worker is killed idle", finish_then_die, (str(tmp_path / "a"), 0.5))
    graph.add("c", "keeps the other worker busy", linger, (str(tmp_path / "c"), 3.0))
    graph.add("b", "runs after c on slot 0", finish, (str(tmp_path / "b"),), deps=["c"])
    lines: list[str] = []
    LocalExecutor(workers=2, retries=0).run(graph, tmp_path / "logs", lines.append)
    assert [(tmp_path / name).read_text() for name in "acb"] == ["finished"] * 3
    assert not any("retrying" in line or "attempt" in line for line in lines)


def test_workers_die_with_their_study(tmp_path: Path) -> None:
    # A SIGKILLed study runs no cleanup: its worker must not go on computing the cell a rerun starts again.
    marker = tmp_path / "pid"
    driver = ("import sys; from pathlib import Path\n"
              "from forgetless.study.running.executors import LocalExecutor\n"
              "from forgetless.study.running.graph import Graph\nfrom tests.study_toy_tasks import linger\n"
              "if __name__ == '__main__':\n"
              "    g = Graph(); g.add('slow', 'a long cell', linger, (sys.argv[1], 30.0))\n"
              "    LocalExecutor(workers=1).run(g, Path(sys.argv[2]), print)\n")
    study = subprocess.Popen([sys.executable, "-c", driver, str(marker), str(tmp_path / "logs")],
                             env={**ENV, "PYTHONPATH": os.pathsep.join([SRC, str(Path(__file__).parents[1])])},
                             stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (marker.is_file() and marker.read_text().isdigit()):
        assert study.poll() is None and time.monotonic() < deadline, "the cell never started"
        time.sleep(0.01)
    worker = int(marker.read_text())
    study.send_signal(signal.SIGKILL)
    study.wait()
    deadline = time.monotonic() + 5
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(worker), "the worker outlived its killed study"
    assert marker.read_text() == str(worker)  # the cell was left unfinished


def resumed_models(root: Path) -> int:
    """How many of the study's models resumed from a checkpoint (their ``forgetless.json`` says from which)."""
    records = [json.loads(p.read_text()) for p in root.glob("cells/train-*/model/forgetless.json")]
    return sum(bool(r["resolved"].get("resumed_from")) for r in records)


def random_killer(rng: random.Random, executor: str, straight: Clock, root: Path, tally: Tally,
                  log: Callable[[str], None]) -> Callable[[subprocess.Popen, Clock], bool]:
    """A launch's kill plan drawn from ``rng``: with local workers, one or two kills of one of its workers,
    and one kill of the study (in the first three launches; then in half of them).

    One kill in eight comes at a uniform moment of the study's start-up (timed as in the uninterrupted run
    ``straight``); the others once the study has made a uniformly drawn amount of the progress left to it
    (``Clock.progress``, which does not depend on the machine's load), then up to a second more.
    """
    assert straight.in_cells is not None
    startup, done = straight.elapsed - straight.in_cells, len(paths_under(root / "cells"))

    def moment() -> tuple[str, float, float]:
        if rng.random() < 0.125 or done >= straight.progress:
            return "start-up", rng.uniform(0, startup), 0.0
        # Within the first 85% of what is left: a resumed launch sees fewer new paths (its checkpoints exist).
        return "cells", rng.randint(done + 1, done + max(1, int(0.85 * (straight.progress - done)))), rng.uniform(0, 1)
    plan = [(*moment(), "worker") for _ in range(rng.randint(1, 2) if executor == "local" else 0)]
    if tally.launches < 3 or rng.random() < 0.5:  # the study is killed in its first three launches at least
        plan.append((*moment(), "study"))
    plan.sort(key=lambda event: (event[0] == "cells", event[1]))
    log(f"launch {tally.launches + 1}: plan " + (", ".join(
        f"{what} at {t:.2f} s" if phase == "start-up" else f"{what} {delay:.2f} s after progress {t:.0f}"
        for phase, t, delay, what in plan) or "no kill") + f" (progress {done} of {straight.progress} at start)")
    reached: list[float] = []

    def killer(process: subprocess.Popen, clock: Clock) -> bool:
        while plan:
            phase, t, delay, what = plan[0]
            if phase == "start-up" and clock.elapsed < t:
                return False
            if phase == "cells":
                if clock.progress < t:
                    return False
                reached[:1] = reached[:1] or [clock.elapsed]
                if clock.elapsed < reached[0] + delay:
                    return False
                reached.clear()
            plan.pop(0)
            when = f"{clock.elapsed:.2f} s, progress {clock.progress}"
            if what == "study":
                process.send_signal(signal.SIGKILL)
                tally.kills.append(f"study at {when}")
                log(f"  killed the study at {when}")
                return True
            workers = children(process.pid)
            if not workers:
                log(f"  no worker to kill at {when} (none started yet)")
                continue
            pid = rng.choice(workers)
            doing = busy_workers(root).get(pid, "no cell started in its log")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # ended meanwhile
                continue
            tally.kills.append(f"worker {pid} ({doing}) at {when}")
            log(f"  killed worker {pid} ({doing}) at {when}")
        return False
    return killer


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "serial"])
def test_random_kills_until_the_study_completes(executor: str, study_yaml: Path, tmp_path: Path,  # noqa: F811
                                                reference: Path) -> None:
    once = Tally()
    code, straight = launch(study_config(study_yaml, tmp_path / "straight"), executor, once)
    assert code == 0 and straight.in_cells is not None
    assert once.starts + (logged_starts(tmp_path / "straight") if executor == "local" else 0) == 12
    assert_same_results(tmp_path / "straight", reference)
    summaries = []
    for round_ in range(ROUNDS):
        seed = SEED + round_
        rng, root, tally = random.Random(seed), tmp_path / f"round{round_}", Tally()
        config = study_config(study_yaml, root)

        def log(line: str, seed: int = seed) -> None:
            print(f"[{executor} seed {seed}] {line}", flush=True)
        log(f"uninterrupted run: {straight.elapsed:.1f} s, {straight.in_cells:.1f} s of them in cells, progress "
            f"{straight.progress}; "
            f"FORGETLESS_FAULT_SEED={seed} replays this round's plan")
        begin = time.monotonic()
        while launch(config, executor, tally, random_killer(rng, executor, straight, root, tally, log))[0] != 0:
            assert tally.launches < 40, "the study never completed"
        seconds = time.monotonic() - begin
        tally.starts += logged_starts(root) if executor == "local" else 0
        assert_same_results(root, reference)
        no_leftovers(root)
        summaries.append(f"[{executor} seed {seed}] {len(tally.kills)} kills, {tally.resumes} resumes, "
                         f"{tally.starts - 12} cells computed again, {resumed_models(root)} of 3 models "
                         f"resumed from a checkpoint, {seconds:.0f} s; results identical; kills: {tally.kills}")
        print(summaries[-1], flush=True)
    print("\n" + "\n".join(summaries))


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path: Path) -> None:
    # A kill between writing a cell's result.json under its temporary name and the rename leaves the
    # temporary file; the cell is unfinished, so the rerun writes result.json again and removes it.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".result.json.tmp-{int(dead.stdout)}"
    stale.write_text('{"half": ')
    live = tmp_path / f".result.json.tmp-{os.getppid()}"  # a running writer's file is left alone
    live.write_text("{")
    write_json(tmp_path / "result.json", {"done": True})
    assert not stale.exists() and live.exists() and json.loads((tmp_path / "result.json").read_text()) == {"done": True}
