"""The study's LM-Cocktail stage on the tiny fixtures: the paper's form, one row per alpha of the WiSE-FT grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from forgetless.config import ConfigError
from forgetless.merging.checkpoint import Checkpoint
from forgetless.study.config import load_study
from forgetless.study.running.runner import run_study
from tests.conftest import write_jsonl
from tests.test_study import study_yaml  # noqa: F401  (the fixture)

MEASURED = ("general_nats_per_token", "domain_accuracy", "forgetting", "gain")


def rows_of(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]


def with_cocktail(study_yaml: Path, tmp_path: Path, peers: bool) -> Path:
    values = yaml.safe_load(study_yaml.read_text())
    values["sweeps"]["interpolation"] = [0.25, 0.5]
    cocktail: dict = {"method": "sft", "num_examples": 3}
    if peers:
        peer = write_jsonl(tmp_path / "peer.jsonl", [{"prompt": f"Sort {a} {b}.\n", "completion": f" {min(a, b)} {max(a, b)}"}
                                                    for a in range(4) for b in range(4)])
        cocktail["peers"] = [{"name": "sorting", "data": str(peer), "learning_rate": 1e-2}]
    values["cocktail"] = cocktail
    values["methods"][0]["learning_rates"] = [1e-2]
    study_yaml.write_text(yaml.safe_dump(values))
    return study_yaml


def test_cocktail_sweeps_the_wise_ft_grid_in_the_papers_form(study_yaml: Path, tmp_path: Path) -> None:  # noqa: F811
    root = run_study(load_study(with_cocktail(study_yaml, tmp_path, peers=True)), print_fn=lambda _: None)
    rows = rows_of(root)
    ft = next(r for r in rows if r["kind"] == "trained")
    cocktail = sorted((r for r in rows if r["kind"] == "cocktail"), key=lambda r: r["alpha"])
    # One row per alpha of the WiSE-FT grid, plus alpha 0: the mix of base and peer without the fine-tuned model.
    assert [r["alpha"] for r in cocktail] == [0.0, 0.25, 0.5]
    assert all(r["parent"] == ft["id"] for r in cocktail)
    for row in cocktail:
        assert set(row["weights"]) == {"base", "sorting"}  # the fine-tuned model is outside the softmax
        assert sum(row["weights"].values()) == pytest.approx(1.0)
        a, w = row["alpha"], row["weights"]
        assert row["coefficients"] == pytest.approx({"base": (1 - a) * w["base"], ft["id"]: a,
                                                     "sorting": (1 - a) * w["sorting"]}, rel=1e-12)
    # The written mix is sum_i w_i theta_i of base and peer, the fine-tuned model's coefficient exactly 0.
    mix = next(p for p in (root / "cells").glob("cocktail-*/mix"))
    record = json.loads((mix / "forgetless-merge.json").read_text())
    w = cocktail[0]["weights"]
    assert record["coefficients"] == pytest.approx([w["base"], 0.0, w["sorting"]], rel=1e-12)
    assert record["coefficients"][1] == 0.0
    assert Checkpoint(mix).tensors.keys() == Checkpoint(ft["path"]).tensors.keys()
    # The report: the cocktail's alpha table beside WiSE-FT's, and the headline shows alpha 0.5 only.
    report = (root / "report.md").read_text()
    section = report.split("## LM-Cocktail")[1].split("\n## ")[0]
    assert "| alpha | cocktail domain EM | cocktail forgetting | WiSE-FT domain EM | WiSE-FT forgetting |" in section
    assert [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")][1:] == \
        ["0", "0.25", "0.5", "1"]
    headline = report.split("## Trade-off table")[1].split("\n## ")[0]
    assert "a=0.5" in headline and "a=0.25" not in headline
    assert (root / "alpha_curves.png").stat().st_size > 0 and (root / "frontier.png").stat().st_size > 0


def test_without_peers_the_cocktail_curve_is_wise_ft(study_yaml: Path, tmp_path: Path) -> None:  # noqa: F811
    root = run_study(load_study(with_cocktail(study_yaml, tmp_path, peers=False)), print_fn=lambda _: None)
    rows = rows_of(root)
    cocktail = {r["alpha"]: r for r in rows if r["kind"] == "cocktail"}
    wise = {r["alpha"]: r for r in rows if r["kind"] == "interpolation"}
    assert sorted(cocktail) == sorted(wise) == [0.25, 0.5]  # no alpha 0 row: the mix would be the base
    for alpha, row in cocktail.items():
        assert row["weights"] == {"base": 1.0} and row["losses"] == {}
        for key in MEASURED:
            assert row[key] == wise[alpha][key]  # alpha (1 - alpha) base + alpha ft: WiSE-FT's own cell


def test_cocktail_alpha_in_the_config_is_refused_with_the_reason(study_yaml: Path) -> None:  # noqa: F811
    values = yaml.safe_load(study_yaml.read_text())
    values["cocktail"] = {"alpha": 0.5}
    study_yaml.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match="sweeps LM-Cocktail's alpha over sweeps.interpolation"):
        load_study(study_yaml)


def test_candidates_all_puts_the_finetuned_model_in_the_softmax_too(study_yaml: Path, tmp_path: Path) -> None:  # noqa: F811
    path = with_cocktail(study_yaml, tmp_path, peers=True)
    values = yaml.safe_load(path.read_text())
    values["cocktail"]["candidates"] = "all"
    path.write_text(yaml.safe_dump(values))
    rows = rows_of(run_study(load_study(path), print_fn=lambda _: None))
    ft = next(r for r in rows if r["kind"] == "trained")
    for row in (r for r in rows if r["kind"] == "cocktail"):
        a, w = row["alpha"], row["weights"]
        assert set(w) == {"base", ft["id"], "sorting"} and sum(w.values()) == pytest.approx(1.0)
        assert row["coefficients"][ft["id"]] == pytest.approx(a + (1 - a) * w[ft["id"]], rel=1e-12)
