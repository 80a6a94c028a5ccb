"""Time the test suite per module, so the next slow test is easy to find.

    python bench/suite_times.py                 # the README's suite, as scripts/test.sh runs it (-n auto)
    python bench/suite_times.py --serial        # also one process, and print the parallel speed-up
    python bench/suite_times.py -- -m slow      # anything after -- goes to pytest

Runs pytest with one torch thread per process (as ``scripts/test.sh`` does), reads the per-test times from
its JUnit XML (setup + call + teardown of each test), and prints the time per module, the slowest tests, the
wall time, and with ``--serial`` the ratio of one process's wall time to the parallel run's, both measured in
this one run. Times are seconds of each test in its worker: their sum over the wall time is how busy the
workers were.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_suite(workers: str, extra: list[str], junit: Path) -> tuple[float, int]:
    """Run pytest with ``-n workers``; return (wall seconds, exit code)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", workers,
           f"--junitxml={junit}", *extra]
    start = time.perf_counter()
    code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL).returncode
    return time.perf_counter() - start, code


def test_times(junit: Path) -> list[tuple[str, str, float]]:
    """``[(module path, test name, seconds)]`` of every test case in a JUnit XML file."""
    cases = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        # classname is dotted: tests.test_x (or tests.test_x.TestClass for a test in a class).
        path = "/".join(p for p in module if not p[:1].isupper()) + ".py"
        cases.append((path, case.get("name", ""), float(case.get("time", 0.0))))
    return cases


def report(cases: list[tuple[str, str, float]], wall: float, top: int) -> None:
    """Print the time per module and the slowest tests."""
    per_module: dict[str, list[float]] = defaultdict(list)
    for module, _, seconds in cases:
        per_module[module].append(seconds)
    total = sum(seconds for _, _, seconds in cases)
    print(f"{'module':<44} {'tests':>5} {'seconds':>8} {'share':>6}")
    for module, times in sorted(per_module.items(), key=lambda kv: -sum(kv[1])):
        print(f"{module:<44} {len(times):>5} {sum(times):>8.1f} {sum(times) / max(total, 1e-9):>6.1%}")
    print(f"\nslowest {top} tests:")
    for module, name, seconds in sorted(cases, key=lambda c: -c[2])[:top]:
        print(f"{seconds:>8.1f}  {module}::{name}")
    busy = total / max(wall, 1e-9)
    print(f"\n{len(cases)} tests, {total:.0f} s of test time in {wall:.0f} s wall ({busy:.2f} busy workers)")


def main() -> None:
    """Parse flags, run the suite (and optionally serially), print the tables and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="auto", help="pytest-xdist's -n (default: auto, one per core)")
    parser.add_argument("--serial", action="store_true", help="also run in one process and print the speed-up")
    parser.add_argument("--top", type=int, default=15, help="how many of the slowest tests to list")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args()

    from forgetless.machine import machine_stamp

    print(f"machine: {machine_stamp()['summary']} (the suite runs at 1 thread per process)")
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "parallel.xml"
        wall, code = run_suite(args.workers, args.pytest_args, junit)
        print(f"pytest -n {args.workers}: exit {code}, {wall:.0f} s wall\n")
        report(test_times(junit), wall, args.top)
        if args.serial:
            serial_junit = Path(tmp) / "serial.xml"
            serial_wall, serial_code = run_suite("0", args.pytest_args, serial_junit)
            print(f"\npytest -n 0 (one process): exit {serial_code}, {serial_wall:.0f} s wall")
            print(f"speed-up of -n {args.workers} over one process: {serial_wall / wall:.2f}x")
    sys.exit(code)


if __name__ == "__main__":
    main()
