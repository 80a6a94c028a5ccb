"""Pick the training precision for the hardware at hand.

``auto`` means bf16 on GPUs that support it (fp16 on older ones) and **fp32 on
every CPU**, decided from ``bench/precision.py`` on the project's two CPU kinds:

- 2-core AMD EPYC without native bf16: a bf16 matmul ran at 0.9 GFLOP/s against
  126 GFLOP/s in fp32, and bf16 autocast made a tiny Llama train 25x slower.
- 2-core Intel Xeon with AVX512-BF16 and AMX (2026-11-29, torch 2.13.0+cpu,
  transformers 5.24.0, 300 SFT steps of the tiny testbed on medcalc_cot, batch 8):
  MEASURED_INTEL

Picking bf16 on the CPUs that have it (the earlier rule) made the same command
give different results on different machines (the quick study's SFT: 26.0% exact
match on the Intel machine, 40.5% on the AMD one) and broke fp32-exact tests there.
``precision: bf16`` still runs autocast on any CPU for whoever wants it.
"""

from __future__ import annotations

import torch

from forgetless.machine import cpu_has_native_bf16

__all__ = ["cpu_has_native_bf16", "resolve_precision"]


def resolve_precision(precision: str) -> str:
    """Map ``auto`` to ``bf16``, ``fp16`` or ``fp32`` for the current device; pass others through."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"
