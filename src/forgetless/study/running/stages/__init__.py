"""Study stages: each declares its cells in the study's graph and makes its rows from the finished cells.

A study runs its stages in the order of ``forgetless.study.running.stages.registry.STAGES``
(the base, the trained models, the sweeps, LM-Cocktail). A stage is an object with

- ``name``: what it is called (its tasks are ``Planned.by_stage[name]``);
- ``weight(cfg)``: its share of the progress line (a training cell weighs 6-7, an evaluation 1);
- ``plan(ctx, graph, planned)``: declare its cells as tasks of ``graph`` with the tasks
  they wait for and what each is made of (``work=Work(...)``: the dry run estimates a cell's
  time from it; ``model_cells.eval_work`` and ``train_work`` state an evaluation's and a
  training's), and return their ids. A task is a module-level function taking a
  ``ContextSpec`` (``forgetless.study.running.tasks.spec_of(ctx)``) and picklable arguments;
  it reaches the context with ``context_for(spec)`` and writes a cell. The executor
  runs the tasks in any order the dependencies allow, in this process or in workers;
- ``rows(ctx)``: the stage's results rows, read from its finished cells (the same
  calls as its tasks, which find their cells done), in a fixed order, so the results
  do not depend on the executor. Every row compares to the base row's measurements,
  which the base stage records first.

The helpers a stage needs are public: ``forgetless.study.running.context`` (the context,
``Context.load_model``, ``resolve_data``), ``forgetless.study.running.model_cells`` (``train_model``,
``trained_path``, ``evaluate``, ``make_row``, task ids), ``forgetless.study.running.replay_cells``
(sample cells) and ``forgetless.study.running.tasks`` (``spec_of``, ``context_for``, ``holder``).

Adding a stage is one file here and one line in ``registry.STAGES`` (or, outside
the package, ``run_study(cfg, stages=[*STAGES, MyStage()])``). A new kind of row
is a member of the stage's own ``str`` enum, passed to ``make_row`` like a ``RowKind``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from forgetless.study.config import StudyConfig
from forgetless.study.running.context import Context
from forgetless.study.running.graph import Graph
from forgetless.study.rows import Row


@dataclass
class Planned:
    """The task ids declared so far, for a stage to wait on."""

    before_eval: list[str]  # every evaluation waits for these: the KL estimate's samples (empty when off)
    by_stage: dict[str, list[str]] = field(default_factory=dict)  # stage name -> the ids its plan returned


class Stage(Protocol):
    """One stage of a study (see the module's docstring)."""

    name: str

    def weight(self, cfg: StudyConfig) -> float:
        """The stage's share of the study's progress line."""
        ...

    def plan(self, ctx: Context, graph: Graph, planned: Planned) -> list[str]:
        """Declare the stage's cells in ``graph``; return their task ids."""
        ...

    def rows(self, ctx: Context) -> list[Row]:
        """The stage's results rows, from its finished cells."""
        ...
