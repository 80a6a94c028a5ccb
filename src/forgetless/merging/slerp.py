"""SLERP: spherical linear interpolation of two models, tensor by tensor (docs/methods.md#slerp).

Source: Shoemake, "Animating rotation with quaternion curves", SIGGRAPH 1985 (the formula);
applied to model weights as mergekit does (Goddard et al., arXiv 2403.13257;
``mergekit/merge_methods/slerp.py``, version 0.1.5, whose semantics this follows). For each
float tensor, with a = θ_0 (the first model, t = 0) and b = θ_1 (the second, t = 1), flattened:

    â = a / ‖a‖,  b̂ = b / ‖b‖     (a vector of norm ≤ 1e-8 is left as it is)
    d = clamp(â · b̂, −1, 1)
    |d| > 0.9995:  θ_t = (1 − t) a + t b                                   (nearly colinear: lerp)
    otherwise:     Ω = arccos d,  θ_t = sin((1 − t) Ω) / sin Ω · a + sin(t Ω) / sin Ω · b

The normalised copies only measure the angle; the result combines the unnormalised tensors, as
mergekit's does (for inputs of equal norm it lies on the great-circle arc between them). Differences
from mergekit: the sums behind d are taken in float64 and the angle and sines in Python floats
(mergekit: float32 tensors, whose arccos near 1 loses precision: bench/slerp_agreement.py
measures both against float64 throughout); t = 0 and t = 1 return the input
itself (bit for bit, −0.0 and all), and the lerp branch is computed as the engine's linear sum,
so it equals ``--rule interpolate --alpha t`` byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from forgetless.merging.base import Coefficients, RuleParams, TensorRule
from forgetless.merging.errors import MergeError

if TYPE_CHECKING:  # the registry imports this module for `forgetless --help`, which needs no torch
    import torch

DOT_THRESHOLD = 0.9995  # mergekit's: above it (in |cos Ω|) the arc is too flat for sin Ω to divide by
NORM_EPS = 1e-8  # mergekit's: a vector this short is not normalised (its direction is noise)
CHUNK = 1 << 20  # elements per float64 chunk: the sums' scratch stays 8 MiB whatever the tensor's size


class CosineSums:
    """Running float64 sums ‖a‖², ‖b‖² and a · b of two same-shape tensors fed a slice at a time.

    The sums are taken over chunks of ``CHUNK`` elements of the flattened tensors, counted from
    the first element (a slice's last partial chunk waits for the next slice), so feeding a tensor
    in slices of rows gives exactly the sums of feeding it whole: the engine's streamed SLERP of
    an embedding matrix is byte-identical to the whole-tensor one, and its scratch stays 8 MiB.
    """

    def __init__(self) -> None:
        self.aa = self.bb = self.ab = 0.0
        self._rest: tuple[torch.Tensor, torch.Tensor] | None = None  # < CHUNK elements not yet summed

    def _sum(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.double(), y.double()
        self.aa, self.bb, self.ab = self.aa + float(x.dot(x)), self.bb + float(y.dot(y)), self.ab + float(x.dot(y))

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Feed the next slice: ``a`` and ``b`` of any one shape, float, following the previous slice."""
        import torch

        flat_a, flat_b = a.reshape(-1), b.reshape(-1)
        if self._rest is not None:
            flat_a, flat_b = torch.cat([self._rest[0], flat_a]), torch.cat([self._rest[1], flat_b])
        full = flat_a.numel() // CHUNK * CHUNK
        for start in range(0, full, CHUNK):
            self._sum(flat_a[start:start + CHUNK], flat_b[start:start + CHUNK])
        # A copy, so the remainder does not keep the whole slice alive.
        self._rest = (flat_a[full:].clone(), flat_b[full:].clone()) if full < flat_a.numel() else None

    def cosine(self) -> float:
        """d = clamp(â · b̂, −1, 1) of everything fed (mergekit's normalised dot product)."""
        if self._rest is not None:
            self._sum(*self._rest)
            self._rest = None
        norm_a, norm_b = math.sqrt(self.aa), math.sqrt(self.bb)
        # mergekit normalises a vector only when its norm exceeds eps (otherwise divides by 1).
        norm_a = norm_a if norm_a > NORM_EPS else 1.0
        norm_b = norm_b if norm_b > NORM_EPS else 1.0
        return min(1.0, max(-1.0, self.ab / (norm_a * norm_b)))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """d = clamp(â · b̂, −1, 1), mergekit's normalised dot product of two same-shape tensors.

    Sums of squares and products are taken in float64 over chunks of ``CHUNK`` elements
    (``CosineSums``), so the scratch memory is bounded and nothing overflows (float32 squares can).

    Args:
        a: any shape ``S``, float.
        b: shape ``S``, float.
    """
    sums = CosineSums()
    sums.add(a, b)
    return sums.cosine()


def slerp_weights(t: float, d: float) -> tuple[float, float, bool]:
    """(c_a, c_b, spherical): θ_t = c_a a + c_b b for interpolation fraction ``t`` and cosine ``d``.

    ``spherical`` is False where |d| > ``DOT_THRESHOLD`` and the weights are lerp's (1 − t, t).
    """
    if abs(d) > DOT_THRESHOLD:
        return 1.0 - t, t, False
    omega = math.acos(d)
    sin_omega = math.sin(omega)
    return math.sin((1.0 - t) * omega) / sin_omega, math.sin(t * omega) / sin_omega, True


def slerp(t: float, a: torch.Tensor, b: torch.Tensor, d: float | None = None) -> tuple[torch.Tensor, bool]:
    """Spherical interpolation of two tensors (the module docstring's formula).

    Args:
        t: fraction in [0, 1]; 0 returns ``a`` itself, 1 returns ``b`` itself.
        a: shape ``S``, float32 or float64 (or a slice of rows of the tensors ``d`` was measured on).
        b: shape ``S``, the same dtype.
        d: the cosine of the whole tensors (``cosine``, ``CosineSums``); None: ``cosine(a, b)``.

    Returns:
        (θ_t of shape ``S`` in the inputs' dtype, whether the spherical branch was taken).
    """
    if t == 0.0:
        return a, False
    if t == 1.0:
        return b, False
    c_a, c_b, spherical = slerp_weights(t, cosine(a, b) if d is None else d)
    # The engine's linear sum (engine.combine): one rounding per step, as --rule interpolate does.
    merged = a * c_a
    merged.add_(b, alpha=c_b)
    return merged, spherical


class SlerpParams(RuleParams):
    """``--rule slerp``: t is required, as in mergekit (no value of it is a neutral default)."""

    t: float = Field(ge=0, le=1, description="Interpolation fraction along the arc between the two models "
                                             "(0 = the first, 1 = the second).")


@dataclass
class Slerp(TensorRule):
    """Two models: each float tensor is the spherical interpolation at ``t`` (Shoemake 1985, as mergekit)."""

    t: float
    name = "slerp"
    params_model = SlerpParams
    # Which branch each tensor took, by name (a rerun overwrites, never accumulates).
    _branches: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def coefficients(self, models: list[Path]) -> Coefficients:
        """(1 − t, t): lerp, the rule's linear counterpart and its branch for nearly colinear tensors."""
        if len(models) != 2:
            raise MergeError(f"slerp takes exactly 2 models (t = 0 is the first, t = 1 the second), got {len(models)}")
        if not (math.isfinite(self.t) and 0 <= self.t <= 1):
            raise MergeError(f"t={self.t}: expected a number in [0, 1] (0 = the first model, 1 = the second)")
        return Coefficients([1.0 - self.t, self.t], {"dot_threshold": DOT_THRESHOLD})

    # The angle is the whole tensor's, measured in a first streamed pass (tensor_statistics); each slice
    # of rows is then the same linear combination of the two models' rows.
    row_separable = True

    def combine_tensor(self, name: str, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """θ_t of one tensor; ``tensors`` are the two models' copies, shape ``S``, float32 or float64."""
        return self.combine_slice(name, tensors, self.tensor_statistics(name, [tensors]))

    def tensor_statistics(self, name: str, slices: Iterable[Sequence[torch.Tensor]]) -> float | None:
        """The cosine of the two models' copies of the whole tensor (None at t = 0 or 1, where none is needed,
        and then nothing is read)."""
        if self.t in (0.0, 1.0):
            return None
        sums = CosineSums()
        for a, b in slices:
            sums.add(a, b)
        return sums.cosine()

    def combine_slice(self, name: str, tensors: Sequence[torch.Tensor], statistics: float | None) -> torch.Tensor:
        """θ_t of a slice of rows, given the whole tensor's cosine ``statistics``."""
        merged, spherical = slerp(self.t, tensors[0], tensors[1], statistics)
        self._branches[name] = "slerp" if spherical else ("endpoint" if self.t in (0.0, 1.0) else "lerp")
        return merged

    def tensor_summary(self) -> dict[str, Any]:
        """How many tensors took the spherical branch, and which fell back to lerp (nearly colinear)."""
        lerp = sorted(n for n, branch in self._branches.items() if branch == "lerp")
        return {"slerp_tensors": sum(branch == "slerp" for branch in self._branches.values()),
                "lerp_fallback_tensors": lerp}
