"""The ``forgetless`` command. Each subcommand parses its arguments and calls the library.

Subcommands are listed once, in ``build_parser``. Each builds its flags from the fields
of a schema (``train`` from ``TrainConfig``, so flags and YAML keys cannot drift apart).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field

from forgetless.config import ConfigError, TrainConfig, build_config, load_yaml
from forgetless.data.errors import DataError
from forgetless.extras import missing_extra_message
from forgetless.schema_flags import add_schema_flags, schema_command


def _merged_config(schema: type, args: argparse.Namespace) -> Any:
    """YAML values (``--config``), overridden by flags given on the command line."""
    values: dict[str, Any] = load_yaml(args.config) if args.config else {}
    source = args.config or "command line"
    for name in schema.model_fields:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return build_config(schema, values, source)


def cmd_train(args: argparse.Namespace) -> int:
    """Fine-tune a causal LM (plain SFT with --method nll)."""
    from forgetless.training.run import train_sweep

    from forgetless.testbed.specs import resolve_specs

    cfg = resolve_specs(_merged_config(TrainConfig, args))
    for output in train_sweep(cfg):
        resolved = json.loads((output / "forgetless.json").read_text())["resolved"]
        print(f"model written to {output} ({resolved.get('save_dtype', 'fp32')}, "
              f"trained in {resolved.get('precision')})")
    return 0


class TestbedBuildArgs(BaseModel):
    """Which testbed ``forgetless testbed build`` builds."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    preset: str = Field("tiny", description="tiny (<= 5 min on 2 cores) or small (<= 30 min)")
    force: bool = Field(False, description="rebuild even if cached")


class TestbedPathArgs(BaseModel):
    """Which testbed ``forgetless testbed path`` locates."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    preset: str = Field("tiny", description="tiny or small")


def cmd_testbed_build(args: TestbedBuildArgs) -> int:
    """Build the embedded testbed (cached; instant when already built)."""
    from forgetless.testbed.build import build_testbed

    testbed = build_testbed(args.preset, force=args.force)
    metrics = testbed.manifest()["metrics"]
    print(json.dumps({"root": str(testbed.root), **metrics}, indent=2))
    return 0


def cmd_testbed_path(args: TestbedPathArgs) -> int:
    """Print where a preset's testbed is (or would be) cached."""
    from forgetless.testbed.build import testbed_dir
    from forgetless.testbed.presets import get_preset

    print(testbed_dir(get_preset(args.preset)))
    return 0


class ProbesArgs(BaseModel):
    """Where ``forgetless probes`` writes the general-ability probes, and which."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    output: str = Field(description="directory for the probe JSONL files and their lm-eval task YAMLs")
    probes: list[str] | None = Field(None, description="only these probes (default: all; docs/probes.md)")


def cmd_probes(args: ProbesArgs) -> int:
    """Write general-ability probes (capitals, element symbols, arithmetic) as task files and lm-eval YAMLs."""
    from forgetless.testbed.probes import PROBES, write_probes

    out = write_probes(args.output, args.probes)
    names = args.probes or list(PROBES)
    counts = {name: len((out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()) for name in names}
    print(json.dumps({"output": str(out), "items": counts, "lm_eval_group": "forgetless_probes"}, indent=2))
    return 0


def _train_epilog() -> str:
    """The parameters of every method and regularizer, for ``forgetless train --help``."""
    # Imported only when the help is printed: the registries import torch, which the
    # command's start-up does not pay for.
    from forgetless.objectives import OBJECTIVES
    from forgetless.params import params_help
    from forgetless.regularizers import REGULARIZERS

    methods = {name: cls.params_model for name, cls in OBJECTIVES.items()}
    regularizers = {name: cls.params_model for name, cls in REGULARIZERS.items()}
    return (params_help("method parameters (--method-params '{\"tau\": 0.5}', or method_params: in --config):", methods)
            + "\n\n" + params_help("regularizer parameters (--regularizers '{\"l2sp\": {\"weight\": 0.001}}', "
                                    "or regularizers: in --config):", regularizers))


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that reads ``-1e-3`` and ``-.5e2`` as numbers, not as flags, takes no abbreviated flag,
    and reports an error in one line.

    argparse's own test for a negative number (``-1``, ``-0.5``) misses scientific
    notation, so ``--alpha -1e-3`` failed with "expected one argument". Subparsers
    inherit the class. ``epilog_factory`` builds the epilog when the help is printed
    (so what it imports is paid for only then).
    """

    def __init__(self, *args: Any, epilog_factory: Callable[[], str] | None = None, **kwargs: Any) -> None:
        # No abbreviations: `--lr 1e-4` was read as --lr-scheduler 1e-4, a scheduler named "1e-4".
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^-inf$")
        self._epilog_factory = epilog_factory

    def error(self, message: str) -> NoReturn:
        """One line and exit 2: argparse's own error prints the whole usage block above the message, which buried
        it (``forgetless train`` has 45 flags); the line says where the usage is instead."""
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the arguments)\n")

    def format_help(self) -> str:
        """The help, with the epilog built now when it is built on demand."""
        if self._epilog_factory is not None:
            self.epilog = self._epilog_factory()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``forgetless`` command."""
    parser = _Parser(prog="forgetless", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help=cmd_train.__doc__, description=cmd_train.__doc__, epilog_factory=_train_epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--config", help="YAML file with TrainConfig keys; flags override it")
    add_schema_flags(train, TrainConfig, {"model", "data", "output"})
    train.set_defaults(func=cmd_train)

    testbed = sub.add_parser("testbed", help="The embedded testbed: tokenizer, base model, domain tasks")
    testbed_sub = testbed.add_subparsers(dest="testbed_command", required=True)
    build = testbed_sub.add_parser("build", help=cmd_testbed_build.__doc__)
    add_schema_flags(build, TestbedBuildArgs, show_defaults=True, standalone=True)
    build.set_defaults(func=schema_command(TestbedBuildArgs, cmd_testbed_build))
    path = testbed_sub.add_parser("path", help=cmd_testbed_path.__doc__)
    add_schema_flags(path, TestbedPathArgs, show_defaults=True, standalone=True)
    path.set_defaults(func=schema_command(TestbedPathArgs, cmd_testbed_path))
    probes = sub.add_parser("probes", help=cmd_probes.__doc__, description=cmd_probes.__doc__)
    add_schema_flags(probes, ProbesArgs, show_defaults=True, standalone=True)
    probes.set_defaults(func=schema_command(ProbesArgs, cmd_probes))

    from forgetless.evaluation.cli import add_eval_parser

    add_eval_parser(sub)

    from forgetless.theory.cli import add_theory_parser

    add_theory_parser(sub)
    from forgetless.replay.cli import add_generate_parser

    add_generate_parser(sub)
    from forgetless.study.cli import add_study_parser

    add_study_parser(sub)
    from forgetless.study.tuning.cli import add_tune_parser

    add_tune_parser(sub)
    from forgetless.merging.cli import add_merge_parser

    add_merge_parser(sub)
    from forgetless.gguf.cli import add_convert_gguf_parser

    add_convert_gguf_parser(sub)
    return parser


def error_message(err: BaseException) -> str | None:
    """The one-line message for an error caused by the user's input or files, or None for a bug.

    Bad values, data and configs (``ValueError`` and its kin: ``ConfigError``,
    ``DataError``, ``MergeError``, ``ModelLoadError``) say what is wrong themselves. A file
    that cannot be written or read (``PermissionError``, ``NotADirectoryError``, a full disk)
    is named with the system's reason. A truncated safetensors file and a refused pickle
    are reported without the libraries' advice (torch's suggests ``weights_only=False``,
    which would run the file's code).
    """
    import pickle

    if isinstance(err, UnicodeDecodeError):
        return f"a file is not valid UTF-8 ({err.reason} at byte offset {err.start})"
    if isinstance(err, pickle.UnpicklingError):
        return ("refused to unpickle a file holding more than plain tensors: forgetless never runs code from a "
                "checkpoint; use safetensors weights")
    if isinstance(err, (ConfigError, DataError, FileExistsError, ValueError)):
        return str(err)
    missing = missing_extra_message(err)
    if missing is not None:
        return missing
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    if type(err).__name__ == "SafetensorError":  # not imported here: safetensors is heavy at start-up
        return f"a safetensors file is truncated or corrupt ({err})"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``forgetless`` console script (exit 2 and one line on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command not in ("testbed", "convert-gguf"):  # their arguments are preset names and files, not specs
            from forgetless.testbed.specs import resolve_specs

            # testbed:, gguf: and real: specs on the command line become paths here, once (a --config
            # file's are resolved by the command that reads it).
            args = resolve_specs(args)
        return args.func(args)
    except KeyboardInterrupt:
        _close_progress_bars()
        # Outputs are written under a temporary name and renamed at the end: nothing half-written is left.
        print("forgetless: interrupted (nothing half-written was left)", file=sys.stderr)
        return 130
    except Exception as err:
        message = error_message(err)
        if message is None:
            raise
        _close_progress_bars()
        print(f"forgetless: error: {message}", file=sys.stderr)
        return 2


def _close_progress_bars() -> None:
    """Close progress bars an error interrupted, so the error starts a line of its own (a bar ends without one)."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is not None:
        for bar in list(getattr(tqdm_module.tqdm, "_instances", [])):
            bar.close()


if __name__ == "__main__":
    sys.exit(main())
