"""Run a study: its stages' cells (base -> trained models -> sweeps -> cocktail), then results.jsonl and the report.

Every unit of work is a cell (``forgetless.study.running.cells``) keyed by what determines
it, so a rerun skips finished cells and a killed study resumes where it stopped:
a half-trained model resumes from its last Trainer checkpoint, finished
evaluations are read back. ``results.jsonl`` and the report are rebuilt from the
cells each time, so every figure in the report comes from the results file.

The stages (``forgetless.study.running.stages``) declare their cells and dependencies as a
graph (``forgetless.study.running.plan``), run by an executor (``forgetless.study.running.executors``:
serial in this process, local worker processes, or Ray); each stage then makes its
rows from the finished cells, stage after stage in a fixed order (``assemble_rows``),
so the results do not depend on the executor or on the order the cells ran in.

Every model is scored on the validation set as well as the test set, and every
row keeps its per-item scores: the choices (``forgetless.study.reporting.selection``), the
recommendation (``forgetless.study.reporting.verdicts``) and the seed claims
(``forgetless.study.reporting.claims``) are pure functions of the rows.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from forgetless.atomic import write_jsonl
from forgetless.data import data_hash
from forgetless.data.texts import read_texts
from forgetless.study.config import PROBES_INCLUDE, StudyConfig
from forgetless.study.running.context import Context, Progress, load_tokenizer, resolve_base, resolve_data, tokens_key
from forgetless.study.running.data_checks import carve_validation, check_answers, duplicate_prompts
from forgetless.study.running.executors import Executor, SerialExecutor
from forgetless.study.running.model_cells import train_spec  # noqa: F401  (tests import it from here)
from forgetless.study.running.plan import plan_cells
from forgetless.study.running.replay_cells import attach_kl_samples
from forgetless.study.rows import Row
from forgetless.study.running.stages import Stage
from forgetless.study.running.stages.registry import STAGES
from forgetless.study.running.stages.search import run_search
from forgetless.study.running.tasks import register_context


def prepare_domain_data(cfg: StudyConfig, root: Path,
                        print_fn: Callable[[str], None]) -> tuple[str, str, dict[str, Any]]:
    """Check the domain data and settle the validation set before any work starts.

    Refuses a test or validation set without extractable answers; carves a
    validation split from train when none is given; warns about validation or test
    prompts that appear verbatim in train.

    Returns:
        ``(training data, validation set, notes)``; the notes (where the validation set
        came from, duplicate prompt counts) go into the base row for the report.
    """
    train_data = resolve_data(cfg.data.train)
    check_answers(resolve_data(cfg.data.test))
    if cfg.data.validation is not None:
        validation = resolve_data(cfg.data.validation)
        check_answers(validation)
        source = f"`{cfg.data.validation}`"
    else:
        train_data, validation = carve_validation(train_data, cfg.eval.validation_limit, root / "data")
        source = (f"{len(check_answers(validation))} examples carved from `{cfg.data.train}` (seeded sample, "
                  "removed from training; no data.validation given)")
    duplicates = {}
    for name, path in (("validation", validation), ("test", resolve_data(cfg.data.test))):
        overlap = duplicates[name] = duplicate_prompts(train_data, path)
        if overlap:
            print_fn(f"[study] warning: {overlap} {name} prompts appear verbatim in the training data; their "
                     f"scores overstate what a model learned")
    return train_data, validation, {"validation_source": source, "duplicate_prompts": duplicates}


def lm_eval_settings(cfg: StudyConfig, root: Path) -> dict[str, Any]:
    """The lm-eval settings every evaluation runs (``task_items``'s arguments), part of every eval cell's key.

    ``include_path: testbed:PRESET`` writes the testbed's task YAMLs (``forgetless_cloze`` and one per
    task family) into the study directory: the study is an entry point, so it resolves the spec.
    ``include_path: probes`` writes the general-ability probes there (``forgetless.testbed.probes``:
    ``forgetless_probes`` and one ``forgetless_probe_<name>`` per probe).
    """
    lm = cfg.data.general_lm_eval
    assert lm is not None
    include = lm.include_path
    if include is not None and include.startswith("testbed:"):
        from forgetless.testbed.lmeval_tasks import write_testbed_tasks  # imported here: the lm-eval extra

        preset = include.removeprefix("testbed:").partition("@")[0]
        include = str(write_testbed_tasks(root / "lmeval-tasks", preset))
    elif include == PROBES_INCLUDE:
        from forgetless.testbed.probes import write_probes  # imported here: the probes' data packages are an extra

        include = str(write_probes(root / "probe-tasks"))
    settings = {"tasks": lm.tasks, "include_path": include, "limit": lm.limit, "num_fewshot": lm.num_fewshot,
                "batch_size": lm.batch_size}
    if lm.apply_chat_template:  # only when set, so the eval cells of studies written before keep their keys
        settings["apply_chat_template"] = True
    return settings


def prepare_context(cfg: StudyConfig, print_fn: Callable[[str], None],
                    stages: Sequence[Stage] = STAGES) -> tuple[Context, dict[str, Any]]:
    """Resolve the base and the data, check the domain data, and build the study's context.

    Returns:
        ``(context, notes)``; the notes (also ``context.notes``) go into the base row.
    """
    root = Path(cfg.output).resolve()  # absolute: paths inside the study enter cell keys relative to it (cells.py)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    # cells/ first: it marks the folder as a study's (cli.refuse_foreign_study_dir), so a study killed while it
    # writes data/ below is resumed by the rerun, not refused as a folder of the user's.
    (root / "cells").mkdir(exist_ok=True)
    try:
        base_path = resolve_base(cfg.base_model)
        general = resolve_data(cfg.data.general)
        test = resolve_data(cfg.data.test)
        train_data, validation, notes = prepare_domain_data(cfg, root, print_fn)
        tokenizer = load_tokenizer(base_path, cfg.add_bos, cfg.chat_template, cfg.trust_remote_code)
        ctx = Context(
            cfg=cfg, root=root, base_path=base_path, tokenizer=tokenizer,
            general_texts=read_texts(general)[: cfg.eval.general_limit], test_path=test,
            eval_spec={"general": data_hash(general), "general_limit": cfg.eval.general_limit,
                       "test": data_hash(test), "domain_limit": cfg.eval.domain_limit,
                       "validation": data_hash(validation), "validation_limit": cfg.eval.validation_limit,
                       # only when set, so the eval cells of studies written before keep their keys
                       **({"answer_extraction": cfg.eval.answer_extraction} if cfg.eval.answer_extraction else {}),
                       **({"lm_eval": lm_eval_settings(cfg, root)} if cfg.data.general_lm_eval else {}),
                       **tokens_key(tokenizer)},
            progress=Progress(sum(stage.weight(cfg) for stage in stages), print_fn), validation_path=validation,
            train_data=train_data, general_path=general, notes=notes,
        )
    except BaseException:
        if created:  # refused before any cell ran (bad data, an unloadable base): leave no empty study behind
            shutil.rmtree(root, ignore_errors=True)
        raise
    return ctx, notes


def run_study(cfg: StudyConfig, print_fn: Callable[[str], None] = print, executor: Executor | None = None,
              stages: Sequence[Stage] = STAGES) -> Path:
    """Run (or resume) a whole study and write its results and report.

    The stages' cells (``forgetless.study.running.plan``) run on ``executor`` (serial, in
    this process, when None); the rows are then assembled from the finished cells
    in a fixed order, so ``results.jsonl`` is the same whichever executor ran them.
    ``stages`` replaces the registry's (a stage of one's own: ``[*STAGES, MyStage()]``).

    Returns:
        The study directory, holding ``results.jsonl``, ``report.md`` and ``report.html``.

    Raises:
        CellFailed: a cell failed on a worker (every finished cell is kept; rerun to resume).
    """
    # imported here: matplotlib, only when a report is written
    from forgetless.study.reporting.report import write_report

    ctx, _ = prepare_context(cfg, print_fn, stages)
    register_context(ctx)  # the serial executor's tasks run on this very context
    executor = executor or SerialExecutor()
    if any(stage.name == "search" for stage in stages):  # adaptive: its rungs run before the graph (stages.search)
        run_search(ctx, lambda graph: executor.run(graph, ctx.root / "logs", print_fn), print_fn)
    executor.run(plan_cells(ctx, stages), ctx.root / "logs", print_fn)
    start, ctx.progress = ctx.progress.start, Progress(1.0, lambda _: None)  # every cell is finished: no progress
    rows = assemble_rows(ctx, stages)
    write_jsonl(ctx.root / "results.jsonl", rows)
    report = write_report(ctx.root, cfg)
    print_fn(f"study finished in {(time.time() - start) / 60:.1f} min; report: {report}")
    return ctx.root


def assemble_rows(ctx: Context, stages: Sequence[Stage] = STAGES) -> list[Row]:
    """The results rows, stage by stage, read from the finished cells (any missing cell is computed here)."""
    attach_kl_samples(ctx)
    for stage in stages:
        ctx.rows.extend(stage.rows(ctx))
    if ctx.diverged and ctx.rows:  # the base row carries the study's notes (report.data_note)
        ctx.rows[0]["diverged"] = list(ctx.diverged)
    return ctx.rows
