"""Time a study's training cells serially, on local worker processes, and on Ray; print the ratios.

    python bench/study_parallel.py                      # the quick study's training cells
    python bench/study_parallel.py --max-steps 40 --methods 3 --no-peers --curve-points 0

Each executor trains the same cells from scratch in its own directory (nothing is
cached between them): serial is today's behaviour (one process, torch's default
threads), ``local`` runs ``--workers`` spawned processes with one thread each,
``ray`` the same cells as Ray tasks on a local instance with ``--workers`` CPUs.
Only training cells are timed (the cells that dominate a study; with learning
curves on, their measurements, generation on the validation set, dominate
short runs: ``--curve-points 0`` times training alone); methods that
replay study-made samples (any source) are left out, since their samples cell would be timed
with them. The script prints how far each executor's final training losses are
from serial's: identical at equal threads per process; serial's default threads
sum fp32 in another order than the one-thread workers, and training amplifies it
(up to 1.9e-2 relative after 100 steps of the quick study on the tiny testbed, Intel Xeon).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from forgetless.machine import machine_stamp
from forgetless.study.config import StudyConfig, load_study
from forgetless.study.running.executors import Executor, LocalExecutor, SerialExecutor
from forgetless.study.running.graph import Graph
from forgetless.study.running.plan import plan_cells
from forgetless.study.running.replay_cells import replay_sources
from forgetless.study.running.runner import prepare_context
from forgetless.study.running.tasks import register_context


def training_cells(cfg: StudyConfig) -> tuple[Graph, Path]:
    """The study's training cells alone (peers included), and the study directory."""
    ctx, _ = prepare_context(cfg, lambda _: None)
    register_context(ctx)
    graph = Graph()
    for task in plan_cells(ctx):
        if task.id.startswith("train/"):
            graph.add(task.id, task.label, task.fn, task.args, task.deps, task.gpu)
    return graph, ctx.root


def final_losses(root: Path) -> dict[str, float]:
    """Each trained model's final training loss, by the config that trained it."""
    out = {}
    for record in sorted(root.glob("cells/train-*/model/forgetless.json")):
        data = json.loads(record.read_text())
        out[record.parent.parent.name] = data["metrics"].get("train_loss")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quick.yaml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-steps", type=int, help="override training.max_steps (shorter benchmark)")
    parser.add_argument("--methods", type=int, help="keep the first N methods (after leaving out replay ones)")
    parser.add_argument("--curve-points", type=int,
                        help="override eval.curve_points (0: no learning curves, which otherwise dominate short runs)")
    parser.add_argument("--no-peers", action="store_true", help="leave out LM-Cocktail's peers")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--out", default="runs/bench_study_parallel")
    args = parser.parse_args()

    base = load_study(args.config)
    methods = [m for m in base.methods if not replay_sources(m)][: args.methods]
    training = {**base.training, **({"max_steps": args.max_steps} if args.max_steps else {})}
    cocktail = None if args.no_peers or base.cocktail is None else base.cocktail.model_dump()
    executors: list[tuple[str, Executor]] = [("serial", SerialExecutor()),
                                             (f"local x{args.workers}", LocalExecutor(args.workers))]
    ray = None
    if not args.no_ray:
        try:
            import ray
        except ImportError:
            print("ray not installed (pip install 'forgetless[ray]'): its row is left out")
    if ray is not None:
        from forgetless.study.running.ray_backend import RayExecutor

        executors.append((f"ray {args.workers} CPUs", RayExecutor()))

    out = Path(args.out)
    seconds: dict[str, float] = {}
    losses: dict[str, dict[str, float]] = {}
    for name, executor in executors:
        root = out / name.split()[0]
        shutil.rmtree(root, ignore_errors=True)
        evaluation = {**base.eval.model_dump(), **({"curve_points": args.curve_points}
                                                   if args.curve_points is not None else {})}
        cfg = load_study(args.config, {"output": str(root), "methods": [m.model_dump() for m in methods],
                                       "training": training, "cocktail": cocktail, "eval": evaluation})
        graph, root = training_cells(cfg)
        if name.startswith("ray"):
            ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter()
        try:
            executor.run(graph, root / "logs", lambda line: None)
        finally:
            if name.startswith("ray"):
                ray.shutdown()
        seconds[name] = time.perf_counter() - start
        losses[name] = final_losses(root)
        print(f"{name:>14}: {len(graph)} training cells in {seconds[name]:7.1f} s", flush=True)
    reference = losses["serial"]
    # Relative difference of each model's final training loss from serial's. Serial runs with
    # torch's default threads and the workers with one: fp32 sums in another order, so the
    # figures may differ in the 5th digit; between executors with equal threads they are identical.
    differ = {name: max(abs(got[k] - reference[k]) / abs(reference[k]) for k in reference)
              for name, got in losses.items()}
    print(f"\n{len(reference)} cells ({len(methods)} methods, "
          f"{len(base.cocktail.peers) if cocktail and base.cocktail else 0} peers, "
          f"max_steps {training.get('max_steps')}, curve points {cfg.eval.curve_points}); "
          f"measured on {machine_stamp()['summary']}")
    for name, value in seconds.items():
        print(f"{name:>14}: {value:7.1f} s   speed-up over serial {seconds['serial'] / value:4.2f}x   "
              f"final losses vs serial: max relative difference {differ[name]:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
