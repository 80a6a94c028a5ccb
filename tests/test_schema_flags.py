"""Flags generated from schemas: positionals, choices, exclusive groups, switches; no subcommand writes its own."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from forgetless.cli import build_parser, main
from forgetless.schema_flags import add_schema_flags, schema_from_flags


class _Args(BaseModel):
    source: str = Field(description="the input")
    target: str = Field(description="where to write")
    mode: Literal["fast", "slow"] = Field("fast", description="how")
    prompts: str | None = Field(None, description="prompt file")
    corpus: str | None = Field(None, description="corpus file")
    limit: int | None = Field(None, description="at most this many")
    sizes: list[int] = Field(default_factory=list, description="sizes")
    quiet: bool = Field(False, description="say less")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="x")
    add_schema_flags(parser, _Args, show_defaults=True, standalone=True, positional={"source"},
                     exclusive=[("prompts", "corpus")])
    return parser


def test_a_standalone_schema_becomes_positionals_required_flags_choices_and_switches() -> None:
    args = schema_from_flags(_Args, _parser().parse_args(["in.txt", "--target", "o", "--quiet", "--sizes", "1", "2"]))
    assert args == _Args(source="in.txt", target="o", quiet=True, sizes=[1, 2])
    defaults = schema_from_flags(_Args, _parser().parse_args(["in", "--target", "o"]))
    assert defaults.mode == "fast" and defaults.limit is None  # the schema's defaults
    help_text = _parser().format_help()
    assert "--mode {fast,slow}" in help_text and "how (default: fast)" in help_text
    assert "(default: None)" not in help_text and "--no-quiet" not in help_text


@pytest.mark.parametrize("argv, message", [
    (["in"], "the following arguments are required: --target"),
    ([], "the following arguments are required: source, --target"),
    (["in", "--target", "o", "--mode", "medium"], "argument --mode: invalid choice: 'medium'"),
    (["in", "--target", "o", "--prompts", "p", "--corpus", "c"],
     "argument --corpus: not allowed with argument --prompts"),
])
def test_refused_command_lines(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        _parser().parse_args(argv)
    assert done.value.code == 2 and message in capsys.readouterr().err


def test_a_bad_value_is_named_by_its_flag() -> None:
    class Bounded(BaseModel):
        window_size: int = Field(8, gt=1, description="tokens")

    parser = argparse.ArgumentParser()
    add_schema_flags(parser, Bounded)
    with pytest.raises(ValueError, match="^--window-size: Input should be greater than 1$"):
        schema_from_flags(Bounded, parser.parse_args(["--window-size", "1"]))


def _subparsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_subparsers(sub, f"{prefix}{name} ") or {f"{prefix}{name}": sub})
    return found


# Every subcommand reads an optional --config YAML of its schema's keys, but study, report and tune, whose own
# argument (a field named config) is the study's YAML.
_OWN_CONFIG = {"study", "report", "tune"}


def test_every_subcommand_takes_its_flags_from_a_schema() -> None:
    commands = _subparsers(build_parser())
    assert {"train", "eval", "generate", "kl-estimate", "study", "report", "testbed build", "testbed path",
            "merge", "theory tilting", "convert-gguf"} <= set(commands)
    for name, parser in commands.items():
        dests = {a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction)}
        assert "config" in dests, name
        extra = set() if name in _OWN_CONFIG else {"config"}
        assert dests - extra == set(_schema_of(name).model_fields), name


def _schema_of(command: str) -> type[BaseModel]:
    from forgetless.evaluation.config import EvalArgs
    from forgetless.gguf.cli import ConvertGgufArgs
    from forgetless.merging.config import merge_schema
    from forgetless.merging.registry import RULES
    from forgetless.replay.config import GenerateArgs, KLEstimateArgs
    from forgetless.study.cli import ReportArgs, StudyArgs
    from forgetless.study.tuning.cli import TuneArgs
    from forgetless.testbed.cli import ProbesArgs, TestbedBuildArgs, TestbedPathArgs
    from forgetless.theory.cli import OveradaptationArgs, TiltingArgs
    from forgetless.training.config import TrainConfig

    return {"train": TrainConfig, "eval": EvalArgs, "generate": GenerateArgs, "kl-estimate": KLEstimateArgs,
             "study": StudyArgs, "report": ReportArgs, "testbed build": TestbedBuildArgs,
             "testbed path": TestbedPathArgs, "merge": merge_schema(RULES), "theory overadaptation": OveradaptationArgs,
             "theory tilting": TiltingArgs, "convert-gguf": ConvertGgufArgs, "probes": ProbesArgs,
             "tune": TuneArgs}[command]


def test_a_config_file_under_the_flags_of_any_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # theory tilting was flags only: its keys now come from a file too, the flags over them, one validation
    config = tmp_path / "t.yaml"
    config.write_text("taus: [4, 8]\ndomain_draws: 2\nreward: log-ratio\n")
    assert main(["theory", "tilting", "--config", str(config), "--domain-draws", "3", "--output", str(tmp_path)]) == 0
    params = json.loads((tmp_path / "tilting.json").read_text())["params"]
    assert params["taus"] == [4.0, 8.0] and params["reward"] == "log-ratio" and params["domain_draws"] == 3
    assert "output" not in params  # the command's own setting, not the simulation's
    config.write_text("domain_draws: 0\n")
    assert main(["theory", "tilting", "--config", str(config)]) == 2
    assert f"{config}: key 'domain_draws': Input should be greater than" in capsys.readouterr().err


def test_a_required_field_may_come_from_the_file_and_is_refused_when_in_neither(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "k.yaml"
    config.write_text(f"samples: {tmp_path / 'missing.jsonl'}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["kl-estimate", "--model", "m"])
    assert exit_info.value.code == 2
    assert "forgetless kl-estimate: error: the following arguments are required: --samples" in capsys.readouterr().err
    # with --config the file gives --samples: the command goes on, to the missing base record
    assert main(["kl-estimate", "--model", str(tmp_path / "m"), "--config", str(config)]) == 2
    assert "--base is required" in capsys.readouterr().err
