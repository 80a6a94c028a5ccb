"""``forgetless study CONFIG --dry-run``: check everything a study needs, count its cells, estimate its time.

Nothing is trained and no cell is written. The dry run resolves the base model and
every data spec, checks the base's weights (safetensors headers and config) and the
domain data (extractable answers, the test set's constant-answer floor, overlaps with
train), plans the cell graph exactly as ``run_study`` would, and then, unless told
not to, *measures* on this machine what the cells are made of: a few training steps
of the base at the study's batch size, greedy answers to a few validation prompts,
the code length of a few general texts and a few context-free samples. Each cell's
duration is estimated from those rates, and the graph is scheduled on ``workers``
slots the way the local executor takes tasks (declaration order, as soon as their
dependencies are done), which gives the wall time. What each cell is made of (its steps, answers, texts
and samples) is stated by the stage that declares it (``forgetless.study.running.graph.Work``).

The estimate is rough and says what it leaves out: every method's step is timed as
plain SFT (L2-SP, KL and FLOW's pre-pass cost more), a fine-tuned model's answers may
be longer or shorter than the base's, and parallel workers share memory bandwidth.
On the 2-core machine the quick study's estimate is compared with its measured time
in the README.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from forgetless.evaluation.codelength import text_code_lengths
from forgetless.evaluation.domain import domain_accuracy
from forgetless.machine import machine_stamp
from forgetless.models import check_safetensors, load_config
from forgetless.replay.generate import SamplingSettings, generate_context_free
from forgetless.study.config import StudyConfig
from forgetless.study.running.context import load_study_model, load_tokenizer
from forgetless.study.running.data_checks import constant_floor
from forgetless.study.running.graph import Graph, Work
from forgetless.study.running.plan import plan_cells
from forgetless.study.running.runner import prepare_context
from forgetless.study.running.stages import Stage
from forgetless.study.running.stages.registry import STAGES
from forgetless.study.running.stages.search import planned_rungs
from forgetless.study.tuning.halving import planned_steps
from forgetless.training.run import train

PROBE_STEPS = 6  # training steps timed (the first is dropped: it pays for warm-up allocations)
PROBE_ANSWERS = 32  # validation prompts answered greedily: one batch, as evaluation batches them
PROBE_TEXTS = 16  # general texts scored
PROBE_SAMPLES = 4  # context-free samples drawn


@dataclass(frozen=True)
class Rates:
    """What one unit of each kind of work costs on this machine, in seconds."""

    step: float
    answer: float
    text: float
    sample: float
    machine: str


@dataclass
class DryRun:
    """The outcome of a dry run: the cells by kind, the training steps, and the time estimate."""

    cells: dict[str, int]
    train_steps: int
    notes: list[str] = field(default_factory=list)
    rates: Rates | None = None
    serial_seconds: float | None = None
    parallel_seconds: float | None = None
    workers: int = 1

    def lines(self) -> list[str]:
        """The dry run as printable lines."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.cells.items())
        out = [f"cells: {sum(self.cells.values())} ({kinds}); {self.train_steps:,} training steps in all", *self.notes]
        if self.rates is not None and self.serial_seconds is not None and self.parallel_seconds is not None:
            r = self.rates
            out += [f"measured on {r.machine}: {r.step:.3f} s per training step, {r.answer:.3f} s per greedy answer, "
                    f"{r.text:.3f} s per general text, {r.sample:.3f} s per context-free sample",
                    f"estimated time: {self.serial_seconds / 60:.1f} min on one worker, "
                    f"{self.parallel_seconds / 60:.1f} min on {self.workers} workers (rough: every step timed as plain "
                    "SFT; KL, L2-SP and FLOW's pre-pass cost more; workers share memory bandwidth)"]
        return out


class _StepTimes(TrainerCallback):
    """Wall-clock time of each optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._last = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.times.append(time.perf_counter() - self._last)


def measure_rates(cfg: StudyConfig, base_path: str, train_data: str, validation: str | None,
                  general_texts: list[str]) -> Rates:
    """Time the units of a study's work on this machine (a few of each; see the module docstring)."""
    method = cfg.methods[0]
    work = Path(tempfile.mkdtemp(prefix="forgetless-dry-run-"))
    try:
        # A tuned method has no fixed rate; the timed steps are plain SFT's anyway, so the search's low end does.
        rate = method.learning_rates[0] if method.learning_rates else cfg.search.learning_rate.low or 1e-3
        probe = cfg.train_config(method, rate, cfg.seeds[0], str(work / "model"))
        timer = _StepTimes()
        train(probe.model_copy(update={"model": base_path, "data": train_data, "max_steps": PROBE_STEPS,
                                       "epochs": 1, "save_steps": 10 * PROBE_STEPS, "method": "nll",
                                       "method_params": {}, "regularizers": {}, "lora": False, "replay": None}),
              callbacks=[timer])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    step = statistics.median(timer.times[1:] or timer.times)
    model = load_study_model(base_path, cfg.trust_remote_code).eval()
    tokenizer = load_tokenizer(base_path, cfg.add_bos, cfg.chat_template, cfg.trust_remote_code)
    start = time.perf_counter()
    domain_accuracy(model, tokenizer, validation or train_data, limit=PROBE_ANSWERS, progress=False)
    answer = (time.perf_counter() - start) / PROBE_ANSWERS
    texts = general_texts[:PROBE_TEXTS]
    start = time.perf_counter()
    text_code_lengths(model, tokenizer, texts, progress=False)
    text = (time.perf_counter() - start) / max(len(texts), 1)
    cf = cfg.context_free
    start = time.perf_counter()
    settings = SamplingSettings(num_samples=PROBE_SAMPLES, max_new_tokens=cf.max_new_tokens,
                                temperature=cf.temperature, seed=0)
    generate_context_free(model, tokenizer, settings, progress=False)
    sample = (time.perf_counter() - start) / PROBE_SAMPLES
    return Rates(step=step, answer=answer, text=text, sample=sample, machine=machine_stamp()["summary"])


def cell_seconds(work: Work, rates: Rates) -> float:
    """The estimated duration of one cell: the work its stage declared (``Work``) at the measured rates."""
    return (work.steps * rates.step + work.answers * rates.answer + work.texts * rates.text
            + work.samples * rates.sample)


def schedule(graph: Graph, seconds: Callable[[str], float], workers: int) -> float:
    """The wall time of ``graph`` on ``workers`` slots, taking ready tasks in declaration order (like the
    local executor) as soon as a slot is free."""
    finish: dict[str, float] = {}
    slots = [0.0] * max(workers, 1)
    pending = list(graph)
    while pending:
        free = min(range(len(slots)), key=slots.__getitem__)
        now = slots[free]
        ready = [t for t in pending if all(d in finish and finish[d] <= now for d in t.deps)]
        if not ready:  # wait for the earliest dependency to finish
            later = [finish[d] for t in pending for d in t.deps if d in finish and finish[d] > now]
            slots[free] = min(later) if later else now
            continue
        task = ready[0]
        pending.remove(task)
        finish[task.id] = now + seconds(task.id)
        slots[free] = finish[task.id]
    return max(finish.values(), default=0.0)


def dry_run(cfg: StudyConfig, workers: int = 1, timing: bool = True, print_fn: Callable[[str], None] = print,
            stages: Sequence[Stage] = STAGES) -> DryRun:
    """Check a study's inputs, plan its cells and (with ``timing``) estimate its time; trains nothing.
    ``stages`` as in ``run_study``.

    Raises:
        ModelLoadError: the base's weights or config cannot be read.
        DataError: a data file is missing or malformed, or the test set has no extractable answers.
    """
    ctx, _ = prepare_context(cfg, print_fn, stages)
    check_safetensors(ctx.base_path)
    config = load_config(ctx.base_path)
    graph = plan_cells(ctx, stages)
    cells: dict[str, int] = {}
    for task in graph:
        cells[task.work.kind] = cells.get(task.work.kind, 0) + 1
    steps = sum(t.work.steps for t in graph)
    floor = constant_floor(ctx.test_path, cfg.eval.domain_limit, cfg.eval.answer_extraction)
    lines = [f"base: {ctx.base_path} ({', '.join(config.architectures or [config.model_type])})",
             f"test set: always answering {floor['majority_answer']!r} scores {floor['majority_accuracy']:.1%} "
             f"under {floor['floor_extraction']} (the constant-answer floor a trained model must beat)"]
    tuned = [m.name for m in cfg.methods if m.tuned]
    # The search's rungs run one after another before the graph (stages.search), each rung a graph of its own.
    rungs = planned_rungs(ctx) if tuned else []
    for rung in rungs:
        for task in rung:
            cells[f"search {task.work.kind}"] = cells.get(f"search {task.work.kind}", 0) + 1
    steps += sum(t.work.steps for rung in rungs for t in rung)
    if tuned:
        lines.append(f"search: {', '.join(tuned)} tuned, {cfg.search.trials} trials and {planned_steps(cfg):,} training "
                     f"steps each (successive halving over {len(rungs)} rungs, docs/tuning.md)")
    result = DryRun(cells=cells, train_steps=steps, notes=lines, workers=workers)
    if timing:
        rates = measure_rates(cfg, ctx.base_path, ctx.train_data or str(ctx.test_path), ctx.validation_path,
                              ctx.general_texts)
        result.rates = rates
        for slots, attr in ((1, "serial_seconds"), (workers, "parallel_seconds")):
            setattr(result, attr, sum(schedule(g, lambda i, g=g: cell_seconds(g.tasks[i].work, rates), slots)
                                      for g in [*rungs, graph]))
    return result
