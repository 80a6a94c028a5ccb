"""One load policy: safetensors only, through ``forgetless.models``, at every entry point (issue 18)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from forgetless.cli import main
from forgetless.models import ModelLoadError, load_causal_lm
from tests.conftest import write_jsonl


class _Exploit:
    """Unpickling this runs ``touch MARKER``: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def _bin_only(source: Path, target: Path, payload: object) -> Path:
    """``source`` (config + tokenizer) with its safetensors replaced by a pickled ``pytorch_model.bin``."""
    shutil.copytree(source, target)
    (target / "model.safetensors").unlink()
    with open(target / "pytorch_model.bin", "wb") as handle:
        pickle.dump(payload, handle)
    return target


@pytest.fixture
def bin_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model's real weights, but pickled (``pytorch_model.bin``) and nothing else."""
    from safetensors.torch import load_file

    path = _bin_only(tiny_model_dir, tmp_path / "bin-model", None)
    torch.save(load_file(str(tiny_model_dir / "model.safetensors")), path / "pytorch_model.bin")
    return path


@pytest.fixture
def exploit_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return _bin_only(tiny_model_dir, tmp_path / "exploit-model", _Exploit(tmp_path / "PWNED"))


def _refused(capsys: pytest.CaptureFixture[str], path: Path, file: str = "pytorch_model.bin") -> None:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "weights_only" not in err
    lines = [line for line in err.splitlines() if line.startswith("forgetless: error:")]
    assert len(lines) == 1, err
    assert f"{path}: holds only pickled weights ({file})" in lines[0] and "convert it once" in lines[0]


def test_the_loader_refuses_pickled_weights_with_the_conversion(bin_model: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"holds only pickled weights \(pytorch_model.bin\).*convert it once"):
        load_causal_lm(bin_model, torch.float32)  # the study's loader (context.load_study_model) is this call


def test_train_refuses_pickled_weights(bin_model: Path, pc_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["train", "--model", str(bin_model), "--data", str(pc_data), "--output", str(out)]) == 2
    _refused(capsys, bin_model)
    assert not out.exists() and not (tmp_path / "out.work").exists()


def test_train_and_generate_never_unpickle_a_malicious_checkpoint(
    exploit_model: Path, pc_data: Path, tmp_path: Path, capsys
) -> None:
    assert main(["train", "--model", str(exploit_model), "--data", str(pc_data), "--output", str(tmp_path / "o")]) == 2
    _refused(capsys, exploit_model)
    assert main(["generate", "--model", str(exploit_model), "--output", str(tmp_path / "g.jsonl"),
                 "--num-samples", "1"]) == 2
    _refused(capsys, exploit_model)
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "g.jsonl").exists()


def test_generate_refuses_pickled_weights(bin_model: Path, tmp_path: Path, capsys) -> None:
    assert main(["generate", "--model", str(bin_model), "--output", str(tmp_path / "g.jsonl"), "--num-samples", "1"]) == 2
    _refused(capsys, bin_model)


def test_eval_refuses_pickled_weights(bin_model: Path, tmp_path: Path, capsys) -> None:
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": "the quick brown fox"}] * 2)
    assert main(["eval", "--model", str(bin_model), "--general", str(general), "--no-progress"]) == 2
    _refused(capsys, bin_model)


def test_merge_sweep_refuses_pickled_weights(bin_model: Path, tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": "the quick brown fox"}] * 2)
    assert main(["merge", "--models", str(tiny_model_dir), str(bin_model), "--sweep", "--alphas", "0.5",
                 "--general", str(general)]) == 2
    _refused(capsys, bin_model)


def test_a_lora_base_with_pickled_weights_is_refused(bin_model: Path, tiny_model_dir: Path, tmp_path: Path,
                                                     capsys) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    peft_model.save_pretrained(adapter)
    out = tmp_path / "merged"
    assert main(["merge", "--models", str(tiny_model_dir), str(adapter), "--rule", "average",
                 "--adapter-base", str(bin_model), "--output", str(out)]) == 2
    _refused(capsys, bin_model)
    assert not out.exists()


def test_a_pickled_adapter_is_refused(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    peft_model.save_pretrained(adapter, safe_serialization=False)
    assert (adapter / "adapter_model.bin").is_file()
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": "the quick brown fox"}] * 2)
    assert main(["eval", "--model", str(adapter), "--general", str(general), "--no-progress"]) == 2
    _refused(capsys, adapter, "adapter_model.bin")
