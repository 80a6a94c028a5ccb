"""Where a figure was measured: CPU model, cores, bf16 support, GPUs, library versions.

Every figure forgetless writes (a study's ``summary.json`` and report, the
benchmarks) carries this stamp, because the same run differs between machines:
on a 2-core AMD EPYC without native bf16 and on an Intel Xeon with AMX, the same
code gave different step times, and (before ``precision: auto`` was made
machine-independent on CPUs) different results.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return ""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_bf16_flags() -> list[str]:
    """The native-bf16 instruction sets the CPU advertises: ``avx512_bf16``, ``amx_bf16`` (Linux)."""
    flags = set()
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]


def cpu_has_native_bf16() -> bool:
    """True if the CPU advertises AVX512-BF16 or AMX-BF16."""
    return bool(cpu_bf16_flags())


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's share), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_stamp() -> dict[str, Any]:
    """A JSON-ready description of this machine and the library versions, with a one-line ``summary``."""
    import torch
    import transformers

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    bf16 = cpu_bf16_flags()
    stamp: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "cpu_native_bf16": bf16,
        "gpus": gpus,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    hardware = f"{len(gpus)}x {gpus[0]}" if gpus else f"{stamp['cpu']}, {stamp['cores']} cores"
    native = f"native bf16 ({', '.join(bf16)})" if bf16 else "no native bf16"
    stamp["summary"] = (f"{hardware}, {native}, torch {stamp['torch']}, transformers {stamp['transformers']}, "
                        f"{stamp['torch_threads']} torch threads")
    return stamp
