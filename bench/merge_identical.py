"""Run every ``forgetless merge`` command on two source trees and compare the outputs byte for byte.

    python bench/merge_identical.py --src /tmp/before/src --src src

A refactoring of the merge engine or its command line must not change a single byte of a
merged model. This builds three tiny models from config (the fixtures of
``bench/study_identical.py``: a base and two perturbed copies, one saved in bf16), then runs
each rule's command (interpolation, average with and without weights, greedy soup, task
arithmetic, LM-Cocktail and its variants, SLERP, the budgeted sweep) once per source tree
(``PYTHONPATH`` set to that tree, a fresh process each) and compares every output file
byte for byte, except ``forgetless-merge.json``, which is compared as JSON without the
fields that record time or machine. A command that one tree does not know (a rule added
later) is reported and skipped, not counted as a difference.

Exit status 0 when every output is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_identical import build_fixtures  # noqa: E402  (a sibling script of bench/)

IGNORED = {"seconds", "measured_on", "machine", "created", "elapsed_seconds"}


def perturbed(base: Path, out: Path, seed: int, dtype: str) -> str:
    """A copy of ``base`` with Gaussian noise (std 0.02) on every float tensor, saved in ``dtype``."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(base, out)
    tensors = load_file(str(out / "model.safetensors"))
    gen = torch.Generator().manual_seed(seed)
    noisy = {k: (v + 0.02 * torch.randn(v.shape, generator=gen)).to(getattr(torch, dtype)).contiguous()
             for k, v in tensors.items()}
    save_file(noisy, str(out / "model.safetensors"), metadata={"format": "pt"})
    return str(out)


def commands(m: dict[str, str]) -> dict[str, list[str]]:
    """Each merge command's arguments (``--output`` is appended per run)."""
    base, a, b = m["model"], m["a"], m["b"]
    return {
        "interpolate": ["--models", base, a, "--alpha", "0.3"],
        "interpolate-bf16": ["--models", base, b, "--alpha", "0.5"],
        "average": ["--rule", "average", "--models", base, a, b],
        "average-weights": ["--rule", "average", "--models", base, a, b, "--weights", "0.2", "0.3", "0.5"],
        "greedy-soup": ["--rule", "greedy_soup", "--models", a, b, base, "--validation", m["train"]],
        "task-arithmetic": ["--rule", "task_arithmetic", "--models", base, a, b, "--lambdas", "0.5"],
        "cocktail": ["--rule", "cocktail", "--models", base, a, b, "--examples", m["train"], "--alpha", "0.5"],
        "cocktail-mono": ["--rule", "cocktail", "--variant", "mono-specialist", "--models", base, a,
                          "--alpha", "0.4"],
        "slerp": ["--rule", "slerp", "--models", a, b, "--t", "0.3"],
        "budget": ["--budget", "0.5", "--models", base, a, "--general", m["general"], "--domain", m["test"]],
    }


def strip(value: Any) -> Any:
    """A JSON value without its time and machine fields, at any depth."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in IGNORED}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def differences(left: Path, right: Path) -> list[str]:
    """The files of two output folders that differ (missing on one side counts)."""
    names = sorted({p.relative_to(left) for p in left.rglob("*") if p.is_file()}
                   | {p.relative_to(right) for p in right.rglob("*") if p.is_file()})
    found = []
    for name in names:
        x, y = left / name, right / name
        if not x.exists() or not y.exists():
            found.append(f"{name}: only on one side")
        elif name.name == "forgetless-merge.json":
            if strip(json.loads(x.read_text())) != strip(json.loads(y.read_text())):
                found.append(f"{name}: differs")
        elif x.read_bytes() != y.read_bytes():
            found.append(f"{name}: bytes differ")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", required=True, help="a source tree (PYTHONPATH); give two")
    parser.add_argument("--out", default="/tmp/merge_identical")
    args = parser.parse_args()
    if len(args.src) != 2:
        parser.error("give --src twice")
    out = Path(args.out)
    if out.exists():
        parser.error(f"--out {out}: exists; choose a fresh directory")
    fixtures = build_fixtures(out / "fixtures")
    fixtures["a"] = perturbed(Path(fixtures["model"]), out / "fixtures" / "a", 1, "float32")
    fixtures["b"] = perturbed(Path(fixtures["model"]), out / "fixtures" / "b", 2, "bfloat16")
    same, skipped, bad = 0, [], []
    for name, argv in commands(fixtures).items():
        outputs, codes = [], []
        for k, src in enumerate(args.src):
            target = out / f"side{k}" / name
            env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "OMP_NUM_THREADS": "1",
                   "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
            done = subprocess.run([sys.executable, "-m", "forgetless.cli", "merge", *argv, "--output", str(target)],
                                  env=env, capture_output=True, text=True)
            codes.append(done.returncode)
            outputs.append(target)
            if done.returncode:
                print(f"{name}: side {k} exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
        if any(codes):
            (skipped if codes[0] != codes[1] else bad).append(name)
            continue
        found = differences(*outputs)
        if found:
            bad.append(name)
            print(f"{name}: DIFFERENT: " + "; ".join(found))
        else:
            same += 1
            print(f"{name}: identical")
    print(f"{same} identical, {len(bad)} different or failing on both sides {bad}, "
          f"{len(skipped)} run on one side only {skipped}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
