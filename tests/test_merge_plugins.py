"""Merge rules are plug-ins: a toy rule added the documented way (one class with its parameter
model, one registry entry) runs through ``forgetless merge`` with its own flag and YAML key,
and a bad or misplaced parameter is refused in one line that names the flag and the rule."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from pydantic import Field

from forgetless.cli import main
from forgetless.merging.base import Coefficients, MergeRule, RuleContext, RuleParams
from forgetless.merging.checkpoint import Checkpoint
from forgetless.merging.cocktail import Cocktail
from forgetless.merging.config import merge_schema
from forgetless.merging.registry import RULES, build_rule
from tests.test_cli_errors import _one_line


# --- what a rule's file holds -------------------------------------------------------------
class FirstParams(RuleParams):
    """``--rule toy``: one required share."""

    share: float = Field(gt=0, le=1, description="Coefficient of the first model; the others split the rest equally.")


@dataclass
class First(MergeRule):
    """θ = s θ_0 + Σ_{k>0} (1 − s)/(K − 1) θ_k."""

    share: float
    name = "toy"
    params_model = FirstParams

    def coefficients(self, models: list[Path]) -> Coefficients:
        rest = (1.0 - self.share) / (len(models) - 1)
        return Coefficients([self.share] + [rest] * (len(models) - 1), {"rest": rest})


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry line, ``"toy": First,``, for the length of one test."""
    monkeypatch.setitem(RULES, "toy", First)


def _float_tensors(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = Checkpoint(path)
    return {name: checkpoint.read(name) for name in checkpoint.tensors if checkpoint.read(name).is_floating_point()}


def refused(argv: list[str], output: Path, match: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``forgetless merge`` exits 2 with one line containing ``match`` and writes nothing."""
    assert main(["merge", *argv, "--output", str(output)]) == 2
    assert match in _one_line(capsys)
    assert not output.exists()
    assert not list(output.parent.glob(f".{output.name}.tmp-*"))


def test_a_registered_rule_merges_from_its_flag(toy, saved_models: list[Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "toy"
    assert main(["merge", "--rule", "toy", "--share", "0.5", "--models", *map(str, saved_models),
                 "--output", str(out)]) == 0
    inputs = [_float_tensors(path) for path in saved_models]
    merged = _float_tensors(out)
    assert merged.keys() == inputs[0].keys()
    for name, tensor in merged.items():  # by hand: 0.5, and 0.25 for each of the two others
        torch.testing.assert_close(tensor, 0.5 * inputs[0][name] + 0.25 * inputs[1][name] + 0.25 * inputs[2][name])
    record = json.loads((out / "forgetless-merge.json").read_text())
    assert record["rule"] == "toy" and record["params"] == {"share": 0.5} and record["rest"] == 0.25
    assert record["coefficients"] == [0.5, 0.25, 0.25]
    assert "toy coefficients:" in capsys.readouterr().out


def test_a_registered_rule_takes_its_yaml_key_and_documents_its_flag(toy, saved_models: list[Path],
                                                                    tmp_path: Path, capsys) -> None:
    config = tmp_path / "merge.yaml"
    config.write_text(f"rule: toy\nshare: 0.75\nmodels: [{saved_models[0]}, {saved_models[1]}]\n"
                      f"output: {tmp_path / 'out'}\n")
    assert main(["merge", "--config", str(config)]) == 0
    record = json.loads((tmp_path / "out" / "forgetless-merge.json").read_text())
    assert record["coefficients"] == [0.75, 0.25]
    with pytest.raises(SystemExit):
        main(["merge", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--share SHARE (rule: toy, required) Coefficient of the first model;" in help_text
    assert "toy" in help_text.split("--rule {")[1].split("}")[0]


def test_bad_and_misplaced_parameters_name_the_flag_and_the_rule(toy, saved_models: list[Path],
                                                                 tmp_path: Path, capsys) -> None:
    models = ["--models", str(saved_models[0]), str(saved_models[1])]
    out = tmp_path / "out"
    refused(["--rule", "toy", "--share", "1.5", *models], out,
            "toy: --share (key 'share'): Input should be less than or equal to 1", capsys)
    refused(["--rule", "toy", *models], out, "toy needs --share (key 'share'): Coefficient of the first model", capsys)
    refused(["--rule", "toy", "--share", "0.5", "--lambdas", "1", *models], out,
            "rule toy does not take --lambdas (key 'lambdas'; a parameter of task_arithmetic); its parameters: --share",
            capsys)
    refused(["--rule", "average", "--share", "0.5", *models], out,
            "rule average does not take --share (key 'share'; a parameter of toy); its parameters: --weights", capsys)
    assert list(tmp_path.iterdir()) == []


def test_an_unregistered_rule_is_not_a_choice(saved_models: list[Path], tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["merge", "--rule", "toy", "--models", str(saved_models[0]), str(saved_models[1]),
              "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "argument --rule: invalid choice: 'toy'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_parameter_shared_by_two_rules_needs_one_type(monkeypatch: pytest.MonkeyPatch) -> None:
    class TextAlphaParams(RuleParams):
        alpha: str = Field(description="Not a number, unlike interpolate's and cocktail's alpha.")

    class TextAlpha(First):
        params_model = TextAlphaParams

    monkeypatch.setitem(RULES, "text_alpha", TextAlpha)
    with pytest.raises(TypeError, match="take parameter 'alpha' with different types"):
        merge_schema(RULES)


def test_the_library_builds_the_same_rule_as_the_constructor(tmp_path: Path) -> None:
    # The study's LM-Cocktail mix goes through build_rule; it must be the rule it built by hand before.
    params = {"examples": str(tmp_path / "x.jsonl"), "finetuned": 1, "temperature": 2.0, "alpha": 0.0,
              "num_examples": 3, "candidates": "all", "cocktail_loss": "lm-cocktail"}
    built = build_rule("cocktail", params, RuleContext([]))
    assert built == Cocktail(examples=tmp_path / "x.jsonl", finetuned=1, temperature=2.0, alpha=0.0, num_examples=3,
                             candidates="all", loss="lm-cocktail")
    assert build_rule("cocktail", {}, RuleContext([])) == Cocktail()  # the parameter model's defaults are the rule's
