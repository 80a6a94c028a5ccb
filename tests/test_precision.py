"""`precision: auto` resolves as documented on every kind of machine (CPU flags and GPUs faked)."""

from __future__ import annotations

import pytest
import torch

from forgetless import machine
from forgetless.training import precision

INTEL_FLAGS = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile\n"
AMD_FLAGS = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx2 fma\n"


def _fake_machine(monkeypatch: pytest.MonkeyPatch, cpuinfo: str, cuda: bool = False, cuda_bf16: bool = False) -> None:
    monkeypatch.setattr(machine, "_cpuinfo", lambda: cpuinfo)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)


@pytest.mark.parametrize("cpuinfo, native", [(INTEL_FLAGS, True), (AMD_FLAGS, False)], ids=["intel-amx", "amd-epyc"])
def test_auto_is_fp32_on_every_cpu(monkeypatch: pytest.MonkeyPatch, cpuinfo: str, native: bool) -> None:
    _fake_machine(monkeypatch, cpuinfo)
    assert machine.cpu_has_native_bf16() is native
    assert precision.resolve_precision("auto") == "fp32"


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_gpus(monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: str) -> None:
    _fake_machine(monkeypatch, AMD_FLAGS, cuda=True, cuda_bf16=bf16)
    assert precision.resolve_precision("auto") == expected


@pytest.mark.parametrize("explicit", ["fp32", "bf16", "fp16"])
def test_explicit_precision_is_kept(monkeypatch: pytest.MonkeyPatch, explicit: str) -> None:
    _fake_machine(monkeypatch, INTEL_FLAGS)
    assert precision.resolve_precision(explicit) == explicit


def test_machine_stamp_names_the_cpu_and_its_bf16_support(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_machine(monkeypatch, INTEL_FLAGS)
    stamp = machine.machine_stamp()
    assert stamp["cpu"] == "Intel(R) Xeon(R) Processor"
    assert stamp["cpu_native_bf16"] == ["avx512_bf16", "amx_bf16"]
    assert stamp["torch"] == torch.__version__ and stamp["cores"] >= 1
    assert "Intel(R) Xeon(R) Processor" in stamp["summary"] and "native bf16 (avx512_bf16, amx_bf16)" in stamp["summary"]
    _fake_machine(monkeypatch, AMD_FLAGS)
    assert "no native bf16" in machine.machine_stamp()["summary"]
