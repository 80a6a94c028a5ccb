"""General-ability probes: deterministic, well-formed files that a model stating the answer scores on, and lm-eval
tasks that score them item by item as forgetless does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgetless.cli import main
from forgetless.data.records import read_records
from forgetless.evaluation.answer_extraction import parse_extraction
from forgetless.evaluation.domain import domain_accuracy
from forgetless.testbed.probes import GROUP, MAX_NEW_TOKENS, PROBES, write_probes
from tests.fitting import fit_continuations
from tests.test_cli_errors import _one_line

pytest.importorskip("countryinfo", reason="a dependency of forgetless: pip install countryinfo")


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_probes(tmp_path_factory.mktemp("probes"))


def _rows(probes: Path, name: str) -> list[dict]:
    return [r.fields for r in read_records(probes / f"{name}.jsonl")]


def test_files_are_deterministic(probes: Path, tmp_path: Path) -> None:
    again = write_probes(tmp_path / "again")
    for name in PROBES:
        assert (again / f"{name}.jsonl").read_bytes() == (probes / f"{name}.jsonl").read_bytes()
        # The YAMLs differ only in where the data file is.
        yaml_name = f"forgetless_probe_{name}.yaml"
        assert (again / yaml_name).read_text().replace(str(again), "DIR") == \
            (probes / yaml_name).read_text().replace(str(probes), "DIR")


def test_files_are_well_formed(probes: Path) -> None:
    sizes = {}
    for name, (_, extractor) in PROBES.items():
        rows = _rows(probes, name)
        sizes[name] = len(rows)
        assert all(set(r) == {"prompt", "answer", "answer_extraction"} for r in rows)
        assert all(r["answer_extraction"] == extractor for r in rows)
        assert all(r["prompt"] == r["prompt"].strip() and r["answer"] == r["answer"].strip() and r["answer"]
                   for r in rows)
        assert len({r["prompt"] for r in rows}) == len(rows), name
        # A model that states the answer as a continuation scores on every item.
        rule = parse_extraction(extractor)
        assert all(rule.matches(f" {r['answer']}.\n\nThe next", r["answer"]) for r in rows), name
    assert 300 <= sum(sizes.values()) <= 1000 and sizes["us_state_capitals"] == 50 and sizes["element_symbols"] == 118
    capitals = {r["prompt"]: r["answer"] for r in _rows(probes, "country_capitals")}
    assert capitals["The capital of Germany is"] == "Berlin" and capitals["The capital of France is"] == "Paris"
    assert capitals["The capital of the United Kingdom is"] == "London"
    states = {r["prompt"]: r["answer"] for r in _rows(probes, "us_state_capitals")}
    assert states["The capital of the state of Texas is"] == "Austin"
    symbols = {r["prompt"]: r["answer"] for r in _rows(probes, "element_symbols")}
    assert symbols["The chemical symbol of gold is"] == "Au"
    for row in _rows(probes, "arithmetic"):
        a, op, b, _ = row["prompt"].split()
        assert int(row["answer"]) == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op] >= 0


def test_a_real_models_continuation_scores(probes: Path) -> None:
    """SmolLM2-135M-Instruct's continuation of a capital prompt, and near misses."""
    rule = parse_extraction("gold_prefix")
    assert rule.matches(" Berlin.", "Berlin") and rule.matches(" Paris.\n\nThe capital of", "Paris")
    assert rule.matches(" Washington, D.C., which", "Washington D.C.")
    assert not rule.matches(" Munich.", "Berlin") and not rule.matches(" the city of Berlin.", "Berlin")
    assert parse_extraction("first_number").matches(" 12\n\n7 + 6 = 13", "12")


def test_lm_eval_loads_the_tasks_and_scores_items_as_forgetless(tokenizer, probes: Path) -> None:  # noqa: ANN001
    """lm-eval's per-item scores of every probe task (and the group) are forgetless's own, on a tiny model fitted to
    answer some of the first items right and others wrong."""
    pytest.importorskip("lm_eval", reason="optional extra: pip install 'forgetless[lmeval]'")
    from forgetless.evaluation.lmeval_items import task_items

    prompts, targets = [], []
    for name in PROBES:
        rows = _rows(probes, name)[:3]
        prompts += [r["prompt"] for r in rows]
        targets += [f" {rows[0]['answer']}.\n\nThe", f" {rows[1]['answer']}ian", f" no idea {rows[2]['answer']}"]
    model = fit_continuations(tokenizer, prompts, targets, steps=200)
    tasks = [f"forgetless_probe_{name}" for name in PROBES]
    items = task_items(model, tokenizer, tasks, include_path=str(probes), limit=3, batch_size=16)
    # lm-eval refuses a group together with its own tasks in one run.
    group = task_items(model, tokenizer, [GROUP], include_path=str(probes), limit=3, batch_size=16)[GROUP]
    pooled = []
    for name, task in zip(PROBES, tasks):
        ours = domain_accuracy(model, tokenizer, probes / f"{name}.jsonl", MAX_NEW_TOKENS, limit=3, progress=False)
        correct = [float(p["correct"]) for p in ours["predictions"]]
        assert items[task].metric == "exact_match" and items[task].scores == correct, name
        assert correct[0] == 1.0, (name, ours["predictions"][0])  # the fit took: the stated answer scores
        pooled += correct
    assert group.scores == pooled


def test_cli_writes_the_probes(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main(["probes", "--output", str(tmp_path / "p"), "--probes", "arithmetic", "us_state_capitals"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["items"] == {"arithmetic": 100, "us_state_capitals": 50}
    assert sorted(p.name for p in (tmp_path / "p").glob("*.jsonl")) == ["arithmetic.jsonl", "us_state_capitals.jsonl"]
    assert (tmp_path / "p" / "forgetless_probe_arithmetic.yaml").exists()
    assert (tmp_path / "p" / f"{GROUP}.yaml").exists()


def test_cli_refuses_an_unknown_probe_in_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main(["probes", "--output", str(tmp_path / "p"), "--probes", "capitals"]) == 2
    assert "probes: unknown ['capitals']; expected some of ['country_capitals'" in _one_line(capsys)
    assert not (tmp_path / "p").exists()


def test_study_writes_the_probes_for_include_path_probes(tmp_path: Path) -> None:
    from forgetless.study.config import LmEvalConfig
    from forgetless.study.running.runner import lm_eval_settings

    class Cfg:  # only what lm_eval_settings reads
        class data:  # noqa: N801
            general_lm_eval = LmEvalConfig(tasks=[GROUP], include_path="probes")

    settings = lm_eval_settings(Cfg, tmp_path)  # type: ignore[arg-type]
    assert settings["include_path"] == str(tmp_path / "probe-tasks")
    assert (tmp_path / "probe-tasks" / f"{GROUP}.yaml").exists()
