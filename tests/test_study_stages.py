"""A study stage added the documented way: one file (here, this module) and one line in the stage list.

The toy stage averages the base and the fine-tuned model uniformly, in a cell of
its own, and adds one row of a kind of its own. The uniform average is WiSE-FT at
α = 1/2 computed another way, so its row must agree with the study's own
``interp=0.5`` row; every row the study made before must be unchanged.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from forgetless.study.running.cells import model_fingerprint
from forgetless.study.config import MethodConfig, StudyConfig, load_study
from forgetless.study.running.context import Context, load_study_model
from forgetless.study.running.executors import LocalExecutor
from forgetless.study.running.graph import Graph
from forgetless.study.running.model_cells import (eval_task_id, evaluate, make_row, train_task_id, trained_models,
                                          trained_path, trained_row_id)
from forgetless.study.running.plan import plan_cells
from forgetless.study.rows import Row
from forgetless.study.running.runner import prepare_context, run_study
from forgetless.study.running.stages import Planned
from forgetless.study.running.stages.registry import STAGES
from forgetless.study.running.tasks import ContextSpec, context_for, spec_of
from tests.test_study import study_yaml  # noqa: F401  (the fixture)


class SoupKind(str, Enum):
    """The toy stage's own kind of row."""

    SOUP = "soup"


def measure_soup(ctx: Context, method: MethodConfig, lr: float, seed: int) -> dict[str, Any]:
    """Measure (θ_base + θ_ft) / 2 of one trained model, in its cell."""
    path = trained_path(ctx, method, lr, seed)

    def soup() -> torch.nn.Module:
        model, base = load_study_model(path), load_study_model(ctx.base_path).state_dict()
        with torch.no_grad():
            for name, param in model.named_parameters():  # a tied embedding once, not once per name
                param.copy_((param + base[name]) / 2)
        return model

    return evaluate(ctx, {"soup": model_fingerprint(path), "base": model_fingerprint(ctx.base_path)},
                    f"soup of {method.name}", soup)


def soup_task(spec: ContextSpec, method: MethodConfig, lr: float, seed: int) -> None:
    """The stage's one cell, run by whichever executor the study uses."""
    measure_soup(context_for(spec), method, lr, seed)


class SoupStage:
    """The uniform average of the base and the study's first fine-tuned model."""

    name = "soup"

    def weight(self, cfg: StudyConfig) -> float:
        return 1.0

    def plan(self, ctx: Context, graph: Graph, planned: Planned) -> list[str]:
        method, lr, seed = next(trained_models(ctx.cfg))
        row_id = trained_row_id(method, lr, seed)
        return [graph.add(f"{eval_task_id(row_id)}/soup", f"evaluate the soup of {row_id}", soup_task,
                          (spec_of(ctx), method, lr, seed), [train_task_id(row_id), *planned.before_eval])]

    def rows(self, ctx: Context) -> list[Row]:
        method, lr, seed = next(trained_models(ctx.cfg))
        row_id = trained_row_id(method, lr, seed)
        m = measure_soup(ctx, method, lr, seed)
        return [make_row(ctx, f"{row_id}/soup", f"{method.name} soup", SoupKind.SOUP, m, parent=row_id, alpha=0.5)]


def rows_of(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]


@pytest.fixture
def one_model(study_yaml: Path) -> StudyConfig:  # noqa: F811
    values = yaml.safe_load(study_yaml.read_text())
    values["methods"][0]["learning_rates"] = [1e-2]  # one trained model, WiSE-FT at alpha 0.5
    study_yaml.write_text(yaml.safe_dump(values))
    return load_study(study_yaml)


def check_soup(rows: list[dict[str, Any]], before: list[dict[str, Any]]) -> None:
    """The soup row is last, the rows before it are the study's own, unchanged, and its figures are right."""
    assert rows[:-1] == before
    soup, base = rows[-1], rows[0]
    trained = next(r for r in rows if r["kind"] == "trained")
    wise = next(r for r in rows if r["kind"] == "interpolation" and r["alpha"] == 0.5)
    assert soup["kind"] == "soup" and soup["id"] == f"{trained['id']}/soup" and soup["parent"] == trained["id"]
    # The row's figures follow from its per-item scores and the base's (forgetting in nats/token, gain in EM).
    items, base_items = soup["items"], base["items"]
    nats = sum(items["general_nats"]) / sum(items["general_tokens"])
    assert soup["general_nats_per_token"] == pytest.approx(nats, rel=1e-12)
    assert soup["forgetting"] == pytest.approx(
        nats - sum(base_items["general_nats"]) / sum(base_items["general_tokens"]), rel=1e-9)
    assert soup["gain"] == pytest.approx(sum(items["domain_correct"]) / len(items["domain_correct"])
                                         - sum(base_items["domain_correct"]) / len(base_items["domain_correct"]))
    # The uniform average is WiSE-FT at alpha 1/2: the same model up to rounding of the last bit.
    assert soup["general_nats_per_token"] == pytest.approx(wise["general_nats_per_token"], rel=1e-5)
    assert items["general_nats"] == pytest.approx(wise["items"]["general_nats"], rel=1e-5)
    assert items["domain_correct"] == wise["items"]["domain_correct"]
    assert soup["general_nats_per_token"] != trained["general_nats_per_token"]


def test_a_stage_of_ones_own_adds_its_row_and_changes_no_other(one_model: StudyConfig) -> None:
    root = run_study(one_model, print_fn=lambda _: None)
    before = rows_of(root)
    assert [r["kind"] for r in before] == ["base", "trained", "interpolation"]
    lines: list[str] = []
    run_study(one_model, print_fn=lines.append, stages=[*STAGES, SoupStage()])
    # Only the new stage's cell ran; every other cell was read back.
    assert [line for line in lines if "(running)" in line] and \
        all("soup" in line for line in lines if "(running)" in line)
    check_soup(rows_of(root), before)
    assert "sft soup" in (root / "report.md").read_text()  # the report lists every row, of any kind


def test_a_stage_of_ones_own_runs_its_cells_on_workers(one_model: StudyConfig) -> None:
    root = run_study(one_model, print_fn=lambda _: None)
    before = rows_of(root)
    run_study(one_model, print_fn=lambda _: None, stages=[*STAGES, SoupStage()], executor=LocalExecutor(workers=2))
    log = (root / "logs" / "eval__sft__lr=0.01__seed=0__soup.log").read_text()
    assert "start soup_task" in log and "[cell] evaluate soup of sft (running)" in log  # it ran in a worker
    check_soup(rows_of(root), before)


def test_stages_declare_their_cells_in_the_graph(one_model: StudyConfig) -> None:
    ctx, _ = prepare_context(one_model, lambda _: None)
    graph = plan_cells(ctx, [*STAGES, SoupStage()])
    soup = graph.tasks["eval/sft/lr=0.01/seed=0/soup"]
    assert list(graph.tasks)[-1] == soup.id and soup.deps == ("train/sft/lr=0.01/seed=0", "samples/kl-estimate")
    assert [t.id for t in graph][:3] == ["samples/kl-estimate", "eval/base", "train/sft/lr=0.01/seed=0"]
    with pytest.raises(ValueError, match="two stages are named 'soup'"):
        plan_cells(ctx, [*STAGES, SoupStage(), SoupStage()])


def test_the_study_library_never_parses_command_lines() -> None:
    import ast

    import forgetless.study

    package = Path(forgetless.study.__file__).parent
    parsing = [str(path.relative_to(package)) for path in sorted(package.rglob("*.py")) if path.name != "cli.py"
               and any(isinstance(node, (ast.Import, ast.ImportFrom)) and "argparse" in
                       [alias.name for alias in node.names] + [getattr(node, "module", None)]
                       for node in ast.walk(ast.parse(path.read_text())))]
    assert parsing == []  # only the `study` command's own module parses flags


def test_trust_remote_code_is_the_studys_and_reaches_every_load(study_yaml: Path,  # noqa: F811
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from forgetless.config import ConfigError
    from forgetless.study.running import context

    values = yaml.safe_load(study_yaml.read_text())
    cfg = load_study(study_yaml)
    assert cfg.trust_remote_code is False  # off unless the user turns it on
    assert cfg.train_config(cfg.methods[0], 1e-3, 0, "out").trust_remote_code is False
    values["trust_remote_code"] = True
    study_yaml.write_text(yaml.safe_dump(values))
    cfg = load_study(study_yaml)
    assert cfg.train_config(cfg.methods[0], 1e-3, 0, "out").trust_remote_code is True  # training loads with it
    seen: list[bool] = []
    monkeypatch.setattr(context, "load_causal_lm", lambda path, dtype, trust: seen.append(trust))
    ctx, _ = prepare_context(cfg, lambda _: None)
    ctx.load_model(ctx.base_path)  # every evaluation loads through the context
    assert seen == [True]
    values["training"] = {**values.get("training", {}), "trust_remote_code": True}  # one setting, not per run
    study_yaml.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match="trust_remote_code"):
        load_study(study_yaml)
