"""``testbed:`` specs, resolved once, at the entry points: the CLI and the study.

- ``testbed:PRESET`` (or ``testbed:PRESET@DTYPE``, a copy of the base in that dtype):
  the built testbed's base model directory;
- ``testbed:PRESET/relative/path`` (``testbed:tiny/tasks/gcs_cot/train.jsonl``): a file of
  the built testbed (the data of a testbed is the same whatever its base's dtype).

The testbed is built on first use. Everything below the entry points (training,
replay, evaluation, merging, ``forgetless.models``) receives plain paths, so the
ground floor never imports the testbed; a spec that slips through unresolved is
refused by ``forgetless.models.check_resolved``.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import BaseModel

PREFIX = "testbed:"


def resolve_spec(spec: str) -> str:
    """The path a ``testbed:`` spec names (building the testbed if needed); any other string unchanged.

    Raises:
        ValueError: an unknown preset, or an unknown dtype after ``@``.
    """
    if not spec.startswith(PREFIX):
        return spec
    # imported here: the CLI resolves specs at start-up; building needs the training stack
    from forgetless.testbed.build import build_testbed
    from forgetless.testbed.variants import testbed_model

    preset, slash, rest = spec.removeprefix(PREFIX).partition("/")
    if not slash:
        return str(testbed_model(spec))
    return str(build_testbed(preset.partition("@")[0]).root / rest)


def resolve_specs(value: Any) -> Any:
    """``value`` with every ``testbed:`` string in it resolved: a string, a list, tuple or dict of them, an
    ``argparse.Namespace`` or a pydantic model (fields resolved recursively; a copy, validated again)."""
    if isinstance(value, str):
        return resolve_spec(value)
    if isinstance(value, list | tuple):
        return type(value)(resolve_specs(v) for v in value)
    if isinstance(value, dict):
        return {k: resolve_specs(v) for k, v in value.items()}
    if isinstance(value, argparse.Namespace):
        return argparse.Namespace(**{k: resolve_specs(v) for k, v in vars(value).items()})
    if isinstance(value, BaseModel):
        fields = {name: resolve_specs(getattr(value, name)) for name in type(value).model_fields}
        return type(value).model_validate({**value.model_dump(), **{k: _dump(v) for k, v in fields.items()}})
    return value


def _dump(value: Any) -> Any:
    """Nested pydantic models as dicts, so ``model_validate`` builds them again."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    return value
