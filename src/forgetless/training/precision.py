"""Pick the training precision for the hardware at hand.

``auto`` means bf16 on GPUs that support it (fp16 on older ones) and **fp32 on
every CPU**, decided from ``bench/precision.py`` on the project's two CPU kinds:

- 2-core AMD EPYC without native bf16: a bf16 matmul ran at 0.9 GFLOP/s against
  126 GFLOP/s in fp32, and bf16 autocast made a tiny Llama train 25x slower.
- 2-core Intel Xeon with AVX512-BF16 and AMX (2026-11-29, torch 2.13.0+cpu,
  transformers 5.24.0, one torch thread, the tiny testbed on gcs_cot at batch 8,
  the machine shared with other jobs): interleaved rounds put a bf16 step at 0.79x
  an fp32 step (294 vs 373 ms), yet a 300-step run took 151 s in bf16 against 107 s
  in fp32; exact match 12.0% vs 15.5% (n = 200, within noise of each other), held-out
  general loss 10.76 vs 12.54 nats/token. No dependable speed-up on models this small,
  and numbers that differ from the same run on the AMD machine.

Picking bf16 on the CPUs that have it (the earlier rule) made the same command
give different results on different machines (the quick study's SFT: 26.0% exact
match on the Intel machine, 40.5% on the AMD one) and broke fp32-exact tests there.
``precision: bf16`` still runs autocast on any CPU for whoever wants it.
"""

from __future__ import annotations

import torch


def resolve_precision(precision: str) -> str:
    """Map ``auto`` to ``bf16``, ``fp16`` or ``fp32`` for the current device; pass others through."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"
