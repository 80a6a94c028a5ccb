"""``forgetless testbed build|path`` (the embedded testbed) and ``forgetless probes`` (general-ability probe files)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from forgetless.schema_flags import Command, add_command


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


def add_testbed_parsers(subparsers: Any) -> None:
    """Register ``testbed build``, ``testbed path`` and ``probes`` on the ``forgetless`` command."""
    testbed = subparsers.add_parser("testbed", help="The embedded testbed: tokenizer, base model, domain tasks")
    testbed_sub = testbed.add_subparsers(dest="testbed_command", required=True)
    # Their arguments are preset names, not model or data specs: nothing to resolve.
    add_command(testbed_sub, "build", Command(TestbedBuildArgs, cmd_testbed_build, resolve_specs=False),
                show_defaults=True, description=None)
    add_command(testbed_sub, "path", Command(TestbedPathArgs, cmd_testbed_path, resolve_specs=False),
                show_defaults=True, description=None)
    add_command(subparsers, "probes", Command(ProbesArgs, cmd_probes), show_defaults=True, help=cmd_probes.__doc__)
