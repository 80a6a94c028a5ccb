"""Run the hostile-input suite (tests/hostile/, issue 34) in its two tiers and print its tally.

    python bench/hostile_tally.py              # both tiers: the fast cases (default tier) and the `hostile` ones
    python bench/hostile_tally.py -n 2         # pytest-xdist workers (default 1)

The fast tier is what a plain ``pytest`` runs (cases refused while arguments, configs and data are validated); the
``hostile`` marker holds the cases that load a model or run a command to its end. Each case's class travels in the
JUnit XML as the ``hostile_class`` property (``tests/hostile/tally.py``); the table counts cases per class and tier
and how many pass, then each tier's wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.hostile.harness import CLASSES  # noqa: E402  (the class titles, after the path is set)

TIERS = {"fast (default tier)": "not hostile", "hostile (marked)": "hostile"}


def run_tier(marker: str, workers: str, junit: Path) -> float:
    """Run ``tests/hostile`` with ``-m marker``; return the wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", workers, "-m", marker,
           f"--junitxml={junit}", "tests/hostile"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def outcomes(junit: Path) -> list[tuple[str, bool]]:
    """``[(class, passed)]`` of every hostile case in a JUnit XML file."""
    found = []
    for testcase in ET.parse(junit).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in testcase.iter("property")}
        if "hostile_class" in props:
            failed = any(testcase.find(tag) is not None for tag in ("failure", "error", "skipped"))
            found.append((str(props["hostile_class"]), not failed))
    return found


def main() -> None:
    """Run both tiers and print the tally."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", default="1", help="pytest-xdist workers")
    args = parser.parse_args()
    ran: dict[str, Counter[str]] = {}
    passed: dict[str, Counter[str]] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tier, marker in TIERS.items():
            junit = Path(tmp) / "junit.xml"
            seconds[tier] = run_tier(marker, args.n, junit)
            ran[tier], passed[tier] = Counter(), Counter()
            for klass, ok in outcomes(junit):
                ran[tier][klass] += 1
                passed[tier][klass] += ok
    tiers = list(TIERS)
    print(f"{'class':<45}" + "".join(f"{t:>22}" for t in tiers) + f"{'all':>14}")
    for klass, title in [*CLASSES.items(), ("all", "all")]:
        def cell(tier: str) -> tuple[int, int]:
            keys = list(CLASSES) if klass == "all" else [klass]
            return sum(passed[tier][k] for k in keys), sum(ran[tier][k] for k in keys)
        cells = [cell(t) for t in tiers]
        total = (sum(p for p, _ in cells), sum(r for _, r in cells))
        print(f"{title:<45}" + "".join(f"{f'{p}/{r} pass':>22}" for p, r in cells) + f"{f'{total[0]}/{total[1]}':>14}")
    print("wall time: " + ", ".join(f"{t} {seconds[t]:.1f} s" for t in tiers) + f" (-n {args.n})")


if __name__ == "__main__":
    main()
