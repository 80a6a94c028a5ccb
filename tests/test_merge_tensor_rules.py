"""The per-tensor hook of merge rules (``TensorRule.combine_tensor``): what the engine hands a
rule, what it checks in the answer, and that ``forgetless --help`` still starts without torch
now that ``MergeError`` lives in ``merging/errors.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import forgetless
from forgetless.merging import MergeError, merge_checkpoints
from forgetless.merging.base import Coefficients, TensorRule
from forgetless.merging.checkpoint import Checkpoint
from forgetless.merging.checkpoint import MergeError as MergeErrorFromCheckpoint


@dataclass
class Largest(TensorRule):
    """θ = max_k θ_k elementwise (no list of coefficients can say that); records what it was given."""

    name = "largest"
    seen: list[tuple[str, list[torch.dtype], int]] = field(default_factory=list)

    def coefficients(self, models: list[Path]) -> Coefficients:
        return Coefficients([1.0 / len(models)] * len(models))

    def combine_tensor(self, name: str, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        self.seen.append((name, [t.dtype for t in tensors], len(tensors)))
        return torch.stack(list(tensors)).amax(dim=0)

    def tensor_summary(self) -> dict[str, int]:
        return {"tensors_seen": len(self.seen)}


@dataclass
class Broken(TensorRule):
    """Returns a wrong shape (``mode="shape"``) or NaN (``mode="nan"``) for one tensor."""

    mode: str
    name = "broken"

    def coefficients(self, models: list[Path]) -> Coefficients:
        return Coefficients([0.5, 0.5])

    def combine_tensor(self, name: str, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        if name != "model.norm.weight":
            return tensors[0]
        return tensors[0].reshape(-1, 1) if self.mode == "shape" else tensors[0] * float("nan")


def test_a_tensor_rule_combines_each_float_tensor_once(saved_models: list[Path], tmp_path: Path) -> None:
    rule = Largest()
    out = merge_checkpoints(saved_models, rule.coefficients(saved_models).values, tmp_path / "max",
                            tensor_rule=rule, progress=False)
    inputs = [Checkpoint(p) for p in saved_models]
    merged = Checkpoint(out)
    floats = [n for n, info in inputs[0].tensors.items() if info.dtype == "F32"]
    assert sorted(name for name, _, _ in rule.seen) == sorted(floats)  # each once, nothing else
    assert all(dtypes == [torch.float32] * 3 and k == 3 for _, dtypes, k in rule.seen)
    for name in floats:
        expected = torch.maximum(torch.maximum(inputs[0].read(name), inputs[1].read(name)), inputs[2].read(name))
        assert torch.equal(merged.read(name), expected)
    record = json.loads((out / "forgetless-merge.json").read_text())
    assert record["combined"].startswith("per tensor by rule largest") and record["tensors_seen"] == len(floats)


def test_bf16_inputs_reach_the_rule_widened_and_the_output_is_rounded_once(
        tiny_bf16_model_dir: Path, saved_models: list[Path], tmp_path: Path) -> None:
    rule = Largest()
    models = [tiny_bf16_model_dir, saved_models[1]]  # bf16 first: the output takes its dtype
    out = merge_checkpoints(models, [0.5, 0.5], tmp_path / "mixed", tensor_rule=rule, progress=False)
    assert {d for _, dtypes, _ in rule.seen for d in dtypes} == {torch.float32}
    a, b, merged = Checkpoint(models[0]), Checkpoint(models[1]), Checkpoint(out)
    name = "model.layers.0.mlp.up_proj.weight"
    assert merged.read(name).dtype == torch.bfloat16
    expected = torch.maximum(a.read(name).float(), b.read(name)).to(torch.bfloat16)
    assert torch.equal(merged.read(name), expected)


@pytest.mark.parametrize(("mode", "match"), [
    ("shape", r"rule broken returned shape \(32, 1\) for tensor model.norm.weight of shape \(32,\)"),
    ("nan", "rule broken made non-finite values in tensor model.norm.weight from finite inputs"),
])
def test_a_bad_answer_is_refused_and_nothing_written(saved_models: list[Path], tmp_path: Path, mode: str,
                                                     match: str) -> None:
    with pytest.raises(MergeError, match=match):
        merge_checkpoints(saved_models[:2], [0.5, 0.5], tmp_path / "out", tensor_rule=Broken(mode), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_merge_error_moved_but_importable_where_it_was() -> None:
    assert MergeErrorFromCheckpoint is MergeError
    assert MergeError.__module__ == "forgetless.merging.errors"


def test_help_starts_without_torch() -> None:
    """`forgetless --help` and `forgetless merge --help` build every rule's flags without importing torch."""
    code = ("import sys\nfrom forgetless.cli import main\nfor argv in (['--help'], ['merge', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(Path(forgetless.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert "(rule: slerp, required) Interpolation fraction" in out  # the rule's flag is listed
    assert out.strip().splitlines()[-1] == "LOADED []"
