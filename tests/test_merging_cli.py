"""``forgetless merge`` end to end on tiny models: flags, YAML, sweep and budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from forgetless.cli import main
from forgetless.merging.checkpoint import Checkpoint
from tests.conftest import TEXT, write_jsonl


@pytest.fixture
def models(saved_models: list[Path]) -> list[Path]:
    return saved_models


def tensor(path: Path, name: str = "model.norm.weight") -> torch.Tensor:
    return Checkpoint(path).read(name)


def test_merge_from_flags_and_yaml(models, tmp_path, capsys):
    out = tmp_path / "interp"
    assert main(["merge", "--models", str(models[0]), str(models[1]), "--alpha", "0.25", "--output", str(out)]) == 0
    name = "model.layers.1.mlp.down_proj.weight"
    torch.testing.assert_close(tensor(out, name), 0.75 * tensor(models[0], name) + 0.25 * tensor(models[1], name))
    config = tmp_path / "merge.yaml"
    config.write_text(f"rule: average\nmodels: [{models[0]}, {models[1]}, {models[2]}]\noutput: {tmp_path / 'soup'}\n")
    assert main(["merge", "--config", str(config)]) == 0
    record = json.loads((tmp_path / "soup" / "forgetless-merge.json").read_text())
    assert record["rule"] == "average" and record["coefficients"] == pytest.approx([1 / 3] * 3)
    assert "merged model written to" in capsys.readouterr().out


def test_merge_refusals_exit_2_with_message(models, tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["merge", "--models", str(models[0]), str(models[1]), "--alpha", "2", "--output", str(out)]) == 2
    assert "alpha=2.0: expected a number in [0, 1]" in capsys.readouterr().err
    assert main(["merge", "--models", str(models[0]), str(models[1]), "--rule", "task_arithmetic",
                 "--output", str(out)]) == 2
    assert "task_arithmetic needs --lambdas" in capsys.readouterr().err
    assert not out.exists()


def test_budget_prints_curve_and_writes_the_chosen_alpha(models, tmp_path, capsys):
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": t} for t in TEXT[:4]])
    domain = write_jsonl(tmp_path / "val.jsonl", [{"prompt": "Sum 1 and 2.\n", "completion": " Answer: 3"}])
    out = tmp_path / "chosen"
    code = main(["merge", "--models", str(models[0]), str(models[1]), "--alphas", "1", "--general",
                 str(general), "--domain", str(domain), "--budget", "1000", "--output", str(out), "--curve",
                 str(tmp_path / "curve.json")])
    assert code == 0
    printed = capsys.readouterr().out
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert [p["alpha"] for p in curve["curve"]] == [0.0, 1.0]  # alpha 0 added: the reference
    chosen = curve["chosen"]["alpha"]
    assert f"alpha={chosen:g} meets the budget of 1000 nats/token" in printed
    record = json.loads((out / "forgetless-merge.json").read_text())
    assert record["params"] == {"alpha": chosen}
    # A budget no point meets (the base itself forgets 0): said plainly, nothing written.
    code = main(["merge", "--models", str(models[0]), str(models[1]), "--alphas", "1", "--general", str(general),
                 "--domain", str(domain), "--budget", "-50", "--output", str(tmp_path / "none")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "no alpha meets the budget of -50 nats/token" in printed
    assert not (tmp_path / "none").exists()


def test_sweep_of_weights_and_of_output_ensemble_agree_at_the_ends(models, tmp_path, capsys):
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": t} for t in TEXT[:4]])
    curves = {}
    for mode in ("--no-ensemble", "--ensemble"):
        curve = tmp_path / f"curve{mode}.json"
        assert main(["merge", "--sweep", mode, "--models", str(models[0]), str(models[1]), "--alphas", "0", "1",
                     "--general", str(general), "--curve", str(curve)]) == 0
        curves[mode] = json.loads(curve.read_text())["curve"]
    for weights_point, ensemble_point in zip(curves["--no-ensemble"], curves["--ensemble"]):
        assert weights_point["general_nats"] == pytest.approx(ensemble_point["general_nats"], rel=1e-5)
    assert curves["--ensemble"][0]["general_nats"] != pytest.approx(curves["--ensemble"][1]["general_nats"])
    assert "output ensemble of" in capsys.readouterr().out
    assert not any(p.is_dir() for p in tmp_path.iterdir())  # a sweep writes no model


def test_greedy_soup_from_the_command_line(models, tmp_path, capsys):
    validation = write_jsonl(tmp_path / "val.jsonl", [{"text": t} for t in TEXT[:3]])
    out = tmp_path / "greedy"
    assert main(["merge", "--rule", "greedy_soup", "--models", *map(str, models), "--validation", str(validation),
                 "--output", str(out)]) == 0
    record = json.loads((out / "forgetless-merge.json").read_text())
    kept = [c for c in record["coefficients"] if c > 0]
    assert kept and all(c == pytest.approx(1 / len(kept)) for c in kept)
    assert len(record["individual_scores"]) == 3 and len(record["trials"]) == 2


@pytest.mark.parametrize("rule", ["cocktail", "greedy_soup"])
def test_trust_remote_code_reaches_every_model_a_rule_loads(rule, models, tmp_path, monkeypatch):
    """One switch: with --trust-remote-code every load the rule makes allows it, without it none does."""
    import forgetless.models as loading

    seen: list[bool] = []
    real = loading._from_pretrained

    def spy(auto_class, path, dtype, trust_remote_code, **kwargs):
        seen.append(trust_remote_code)
        return real(auto_class, path, dtype, False, **kwargs)  # the fixture models have no code to run

    monkeypatch.setattr(loading, "_from_pretrained", spy)
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in TEXT[:3]])
    extra = ["--examples", str(data)] if rule == "cocktail" else ["--validation", str(data)]
    for flag, expected in (("--trust-remote-code", True), ("--no-trust-remote-code", False)):
        seen.clear()
        assert main(["merge", "--rule", rule, "--models", *map(str, models), *extra, flag,
                     "--output", str(tmp_path / f"{rule}{expected}")]) == 0
        assert seen and set(seen) == {expected}, (flag, seen)
