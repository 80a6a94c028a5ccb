"""``testbed:PRESET@DTYPE``: the testbed's base model stored in another dtype.

Real checkpoints ship in bf16 (Qwen2.5, Llama 3, Gemma, Mistral) while the testbed
base is pretrained and saved in fp32, so ``testbed:tiny@bf16`` gives the bf16 path
(train, merge, sweep, study) a base to run on. The copy is derived once from the
built base, next to it (``base-bf16/``), written atomically and then reused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from forgetless.atomic import atomic_dir
from forgetless.dtypes import SHORT_NAMES, parse_dtype
from forgetless.models import load_causal_lm
from forgetless.testbed.build import build_testbed

# Files ``save_pretrained`` writes itself; every other file of the base (the tokenizer) is copied.
_WRITTEN = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json")


def parse_testbed_spec(spec: str) -> tuple[str, str | None]:
    """``testbed:tiny@bf16`` -> ``("tiny", "bf16")``; ``testbed:tiny`` -> ``("tiny", None)``.

    Raises:
        ValueError: a dtype after ``@`` that is not fp32, bf16 or fp16.
    """
    preset, marked, dtype = spec.removeprefix("testbed:").partition("@")
    if marked and dtype not in SHORT_NAMES:
        raise ValueError(f"{spec}: unknown dtype {dtype!r} after '@'; expected one of {', '.join(SHORT_NAMES)}")
    return preset, (dtype if marked else None)


def cast_copy(source: Path, target: Path, dtype: torch.dtype) -> Path:
    """``source``'s model and tokenizer saved with float weights in ``dtype`` at ``target`` (once).

    The directory appears only when complete (``atomic_dir``), so an existing one is
    reused as it is.
    """

    if (target / "config.json").is_file():
        return target
    with atomic_dir(target, overwrite=True) as tmp:
        model = load_causal_lm(source, dtype)
        model.save_pretrained(str(tmp), safe_serialization=True)
        for file in source.iterdir():
            if file.is_file() and file.name not in _WRITTEN and not file.name.endswith(".safetensors"):
                shutil.copy2(file, tmp / file.name)
    return target


def testbed_model(spec: str) -> Path:
    """The base model directory of ``testbed:PRESET`` or ``testbed:PRESET@DTYPE`` (building what is missing)."""
    preset, dtype = parse_testbed_spec(spec)
    base = build_testbed(preset).base_model_dir
    if dtype is None:
        return base
    return cast_copy(base, base.with_name(f"{base.name}-{dtype}"), parse_dtype(dtype))
