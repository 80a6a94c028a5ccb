"""SLERP (``--rule slerp``): hand-computed values on tiny tensors, its lerp fallback, and an
end-to-end merge of two saved checkpoints through ``forgetless merge``.

Formula and source: ``forgetless.merging.slerp`` (Shoemake 1985, as mergekit 0.1.5 applies it);
agreement with mergekit's own output: ``bench/slerp_agreement.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import forgetless.merging.slerp as slerp_module
from forgetless.cli import main
from forgetless.merging.checkpoint import Checkpoint
from forgetless.merging.slerp import DOT_THRESHOLD, Slerp, cosine, slerp, slerp_weights
from tests.test_cli_errors import _one_line

F32 = torch.float32


def vec(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F32)


def test_orthogonal_unit_vectors_at_half_give_the_normalised_bisector() -> None:
    # Ω = π/2, sin Ω = 1: both weights are sin(π/4) = √½, so θ = √½ (1, 0) + √½ (0, 1), of norm 1.
    merged, spherical = slerp(0.5, vec(1, 0), vec(0, 1))
    assert spherical
    assert torch.equal(merged, vec(math.sqrt(0.5), math.sqrt(0.5)))


def test_orthogonal_vectors_of_norm_two_keep_their_norm() -> None:
    # The unnormalised inputs are combined: 2 · √½ on each axis, norm 2 (lerp would give norm √2).
    merged, _ = slerp(0.5, vec(2, 0), vec(0, 2))
    assert torch.equal(merged, vec(2 * math.sqrt(0.5), 2 * math.sqrt(0.5)))


def test_a_quarter_of_the_way_along_a_sixty_degree_arc() -> None:
    # a at 0°, b at 60°: Ω = π/3; t = 0.25 lands at 15° on the unit circle.
    b = vec(0.5, math.sqrt(3) / 2)
    merged, spherical = slerp(0.25, vec(1, 0), b)
    assert spherical
    angle = math.pi / 12
    # weights sin(0.75 Ω)/sin Ω and sin(0.25 Ω)/sin Ω, by hand: sin 45° / sin 60° and sin 15° / sin 60°
    assert slerp_weights(0.25, 0.5)[:2] == pytest.approx((math.sqrt(0.5) / (math.sqrt(3) / 2),
                                                          math.sin(angle) / (math.sqrt(3) / 2)), rel=1e-15)
    torch.testing.assert_close(merged, vec(math.cos(angle), math.sin(angle)), rtol=0, atol=2e-7)


def test_t_zero_and_one_return_the_inputs_bit_for_bit() -> None:
    a = vec(-0.0, 1e-45, -3.5, 7.25)  # −0.0 and a subnormal: 1·x + 0·y would not keep them
    b = vec(0.5, -0.0, 2.0, 1e-30)
    for t, expected in ((0.0, a), (1.0, b)):
        merged, spherical = slerp(t, a, b)
        assert not spherical and merged is expected


@pytest.mark.parametrize("scale", [3.0, -2.0], ids=["colinear", "antipodal"])
def test_colinear_inputs_fall_back_to_lerp(scale: float) -> None:
    a = vec(1.0, -2.0, 0.5)
    b = a * scale
    merged, spherical = slerp(0.3, a, b)
    assert not spherical
    expected = a * 0.7  # the engine's linear sum, step by step
    expected.add_(b, alpha=0.3)
    assert torch.equal(merged, expected)


def test_the_threshold_separates_the_branches() -> None:
    # cos Ω = 0.9994 is just inside mergekit's 0.9995: spherical; 0.9996 just outside: lerp.
    for d, spherical in ((DOT_THRESHOLD - 1e-4, True), (DOT_THRESHOLD + 1e-4, False)):
        b = torch.tensor([d, math.sqrt(1 - d * d)], dtype=torch.float64)
        assert cosine(torch.tensor([1.0, 0.0], dtype=torch.float64), b) == pytest.approx(d, abs=1e-15)
        assert slerp(0.5, torch.tensor([1.0, 0.0], dtype=torch.float64), b)[1] is spherical


def test_a_zero_tensor_is_not_normalised() -> None:
    # mergekit leaves a vector of norm ≤ 1e-8 as it is: d = 0, Ω = π/2, so θ = sin(tπ/2) b.
    merged, spherical = slerp(0.5, vec(0, 0), vec(3, 4))
    assert spherical
    assert torch.equal(merged, vec(3, 4) * math.sqrt(0.5))


def test_cosine_is_the_same_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    a, b = torch.randn(7, 5), torch.randn(7, 5)
    whole = float((a.double().flatten() @ b.double().flatten()) / (a.double().norm() * b.double().norm()))
    assert cosine(a, b) == pytest.approx(whole, rel=1e-12)
    monkeypatch.setattr(slerp_module, "CHUNK", 3)  # 35 elements in 12 chunks, the last one short
    assert cosine(a, b) == pytest.approx(whole, rel=1e-12)


def test_the_rule_refuses_what_it_cannot_merge() -> None:
    with pytest.raises(ValueError, match="slerp takes exactly 2 models"):
        Slerp(0.5).coefficients([Path("a"), Path("b"), Path("c")])
    with pytest.raises(ValueError, match=r"t=1.5: expected a number in \[0, 1\]"):
        Slerp(1.5).coefficients([Path("a"), Path("b")])
    assert Slerp(0.25).coefficients([Path("a"), Path("b")]).values == [0.75, 0.25]


# --- end to end ---------------------------------------------------------------------------
def float_tensors(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = Checkpoint(path)
    return {n: t for n in checkpoint.tensors if (t := checkpoint.read(n)).is_floating_point()}


def reference_slerp(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The module docstring's formula written again in float64, independently of the code under test."""
    x, y = a.double().flatten(), b.double().flatten()
    d = min(1.0, max(-1.0, float((x / x.norm()) @ (y / y.norm()))))
    if abs(d) > 0.9995:
        return ((1 - t) * a.double() + t * b.double()).to(a.dtype)
    omega = math.acos(d)
    merged = (math.sin((1 - t) * omega) * a.double() + math.sin(t * omega) * b.double()) / math.sin(omega)
    return merged.to(a.dtype)


def test_merge_two_checkpoints_through_the_cli(saved_models: list[Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "slerp"
    first, second = saved_models[:2]
    assert main(["merge", "--rule", "slerp", "--t", "0.3", "--models", str(first), str(second),
                 "--output", str(out)]) == 0
    a, b, merged = float_tensors(first), float_tensors(second), float_tensors(out)
    assert merged.keys() == a.keys()
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, reference_slerp(0.3, a[name], b[name]), rtol=1e-6, atol=1e-7)
    record = json.loads((out / "forgetless-merge.json").read_text())
    assert record["rule"] == "slerp" and record["params"] == {"t": 0.3}
    assert record["coefficients"] == [0.7, 0.3] and record["combined"].startswith("per tensor by rule slerp")
    # The two seeds' random matrices are far from colinear; the norms' weights start as ones in both models.
    norms = sorted(n for n in a if n.endswith("norm.weight"))
    assert norms and record["lerp_fallback_tensors"] == norms
    assert record["slerp_tensors"] == len(a) - len(norms)
    printed = capsys.readouterr().out
    assert "slerp coefficients (its linear counterpart" in printed
    assert f"per tensor: slerp_tensors {len(a) - len(norms)}, lerp_fallback_tensors {len(norms)}" in printed


def test_t_zero_and_one_through_the_cli_return_an_input(saved_models: list[Path], tmp_path: Path) -> None:
    first, second = saved_models[:2]
    for t, source in (("0", first), ("1", second)):
        out = tmp_path / f"t{t}"
        assert main(["merge", "--rule", "slerp", "--t", t, "--models", str(first), str(second),
                     "--output", str(out)]) == 0
        expected, merged = float_tensors(source), float_tensors(out)
        assert all(torch.equal(merged[n], expected[n]) for n in expected)


def test_colinear_checkpoints_merge_exactly_as_interpolate(saved_models: list[Path], tmp_path: Path) -> None:
    """Every tensor of 2.5 · θ is colinear with θ: slerp's fallback writes interpolate's bytes."""
    base = saved_models[0]
    scaled = tmp_path / "scaled"
    scaled.mkdir()
    checkpoint = Checkpoint(base)
    save_file({n: checkpoint.read(n) * 2.5 if checkpoint.read(n).is_floating_point() else checkpoint.read(n)
               for n in checkpoint.tensors}, str(scaled / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (base / name).is_file():
            (scaled / name).write_bytes((base / name).read_bytes())
    common = ["--models", str(base), str(scaled), "--output"]
    assert main(["merge", "--rule", "slerp", "--t", "0.4", *common, str(tmp_path / "s")]) == 0
    assert main(["merge", "--rule", "interpolate", "--alpha", "0.4", *common, str(tmp_path / "i")]) == 0
    weights = sorted(p.name for p in (tmp_path / "s").glob("*.safetensors"))
    assert weights == ["model.safetensors"]
    assert (tmp_path / "s" / weights[0]).read_bytes() == (tmp_path / "i" / weights[0]).read_bytes()
    record = json.loads((tmp_path / "s" / "forgetless-merge.json").read_text())
    assert record["slerp_tensors"] == 0 and len(record["lerp_fallback_tensors"]) == len(float_tensors(base))


@pytest.mark.parametrize(("argv", "match"), [
    (["--t", "1.5"], "slerp: --t (key 't'): Input should be less than or equal to 1"),
    ([], "slerp needs --t (key 't')"),
    (["--t", "0.5", "--alpha", "0.5"], "rule slerp does not take --alpha"),
])
def test_cli_refusals_name_the_flag(saved_models: list[Path], tmp_path: Path, capsys, argv: list[str],
                                    match: str) -> None:
    out = tmp_path / "x"
    assert main(["merge", "--rule", "slerp", *argv, "--models", str(saved_models[0]), str(saved_models[1]),
                 "--output", str(out)]) == 2
    assert match in _one_line(capsys)
    assert not out.exists()


def test_three_models_are_refused_through_the_cli(saved_models: list[Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "x"
    assert main(["merge", "--rule", "slerp", "--t", "0.5", "--models", *map(str, saved_models),
                 "--output", str(out)]) == 2
    assert "slerp takes exactly 2 models" in _one_line(capsys)
    assert not out.exists()
