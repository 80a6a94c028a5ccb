"""How a study's task reaches its context in any process: a picklable ``ContextSpec``, rebuilt once per process.

A stage's task functions (``forgetless.study.running.stages``) receive a ``ContextSpec``
(paths and the config) and call ``context_for`` on it: a worker builds the study's
``Context`` once and reuses it for every cell it runs; in the driver process (the
serial executor) the driver's own context is found, so a serial study prints its
progress exactly as the driver does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.data.texts import read_texts
from forgetless.study.running.cells import content_key
from forgetless.study.config import StudyConfig
from forgetless.study.running.context import Context, Progress, load_tokenizer
from forgetless.study.running.replay_cells import attach_kl_samples


@dataclass(frozen=True)
class ContextSpec:
    """What a worker needs to rebuild a study's context: the config and the resolved paths."""

    cfg: StudyConfig
    root: str
    base_path: str
    general_path: str
    test_path: str
    validation_path: str | None
    train_data: str | None
    eval_spec: dict[str, Any]

    @property
    def key(self) -> str:
        return content_key({"cfg": self.cfg.model_dump(), "root": self.root, "base": self.base_path,
                            "eval": {k: v for k, v in self.eval_spec.items() if k != "kl_samples"}})


class CellProgress(Progress):
    """A worker's progress lines, in the cell's log: what it runs or reads back (the driver keeps the totals)."""

    def begin(self, what: str, weight: float, cached: bool) -> None:
        print(f"[cell] {what} ({'cached' if cached else 'running'})", flush=True)

    def end(self, weight: float, cached: bool) -> None:
        pass


_CONTEXTS: dict[str, Context] = {}  # one per study per process: the tokenizer and texts load once
# What the last sweep this process evaluated kept in memory (its interpolator): consecutive
# points of one sweep (a serial run, or a worker that drew them) load the two models once.
_HOLDER: dict[str, Any] = {"key": None, "holder": {}}


def holder(key: str) -> dict[str, Any]:
    """A dict kept across tasks of this process while ``key`` stays the same (emptied when it changes).

    Sweep tasks keep their interpolator in it, keyed by the models they mix.
    """
    if _HOLDER["key"] != key:
        _HOLDER["key"], _HOLDER["holder"] = key, {}
    return _HOLDER["holder"]


def spec_of(ctx: Context) -> ContextSpec:
    """The picklable description of a prepared context."""
    assert ctx.general_path is not None
    return ContextSpec(ctx.cfg, str(ctx.root), ctx.base_path, ctx.general_path, ctx.test_path,
                       ctx.validation_path, ctx.train_data,
                       {k: v for k, v in ctx.eval_spec.items() if k != "kl_samples"})


def register_context(ctx: Context) -> None:
    """Make tasks in this process run on ``ctx`` (the driver's, with its progress printer)."""
    _CONTEXTS[spec_of(ctx).key] = ctx


def context_for(spec: ContextSpec) -> Context:
    """This process's context for the study of ``spec`` (built on first use; progress lines go to stdout,
    which a worker sends to the cell's log)."""
    ctx = _CONTEXTS.get(spec.key)
    if ctx is None:
        cfg = spec.cfg
        ctx = _CONTEXTS[spec.key] = Context(
            cfg=cfg, root=Path(spec.root), base_path=spec.base_path,
            tokenizer=load_tokenizer(spec.base_path, cfg.add_bos, cfg.chat_template, cfg.trust_remote_code),
            general_texts=read_texts(spec.general_path)[: cfg.eval.general_limit], test_path=spec.test_path,
            eval_spec=dict(spec.eval_spec), progress=CellProgress(0.0), validation_path=spec.validation_path,
            train_data=spec.train_data, general_path=spec.general_path)
    attach_kl_samples(ctx, draw=False)  # once their cell has finished (every evaluation waits for it)
    return ctx
