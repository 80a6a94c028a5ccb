"""Flags generated from schemas: positionals, choices, exclusive groups, switches; no subcommand writes its own."""

from __future__ import annotations

import argparse
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from forgetless.cli import build_parser
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


# Flags that are not fields of a schema: the YAML a schema is read from, and theory's output directory.
_NOT_FIELDS = {"train": {"config"}, "merge": {"config"}, "theory overadaptation": {"output"},
               "theory tilting": {"output"}}


def test_every_subcommand_takes_its_flags_from_a_schema() -> None:
    commands = _subparsers(build_parser())
    assert {"train", "eval", "generate", "kl-estimate", "study", "report", "testbed build", "testbed path",
            "merge", "theory tilting", "convert-gguf"} <= set(commands)
    for name, parser in commands.items():
        dests = {a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction)}
        assert dests - _NOT_FIELDS.get(name, set()) == set(_schema_of(name).model_fields), name


def _schema_of(command: str) -> type[BaseModel]:
    from forgetless.cli import ProbesArgs, TestbedBuildArgs, TestbedPathArgs
    from forgetless.config import TrainConfig
    from forgetless.evaluation.config import EvalArgs
    from forgetless.gguf.cli import ConvertGgufArgs
    from forgetless.merging.config import merge_schema
    from forgetless.merging.registry import RULES
    from forgetless.replay.config import GenerateArgs, KLEstimateArgs
    from forgetless.study.cli import ReportArgs, StudyArgs
    from forgetless.study.tuning.cli import TuneArgs
    from forgetless.theory.overadaptation import OveradaptationParams
    from forgetless.theory.tilting import TiltingParams

    return {"train": TrainConfig, "eval": EvalArgs, "generate": GenerateArgs, "kl-estimate": KLEstimateArgs,
             "study": StudyArgs, "report": ReportArgs, "testbed build": TestbedBuildArgs,
             "testbed path": TestbedPathArgs, "merge": merge_schema(RULES), "theory overadaptation": OveradaptationParams,
             "theory tilting": TiltingParams, "convert-gguf": ConvertGgufArgs, "probes": ProbesArgs,
            "tune": TuneArgs}[command]
