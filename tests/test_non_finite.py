"""A broken model is never reported as a success (issue 34, class 2): non-finite settings are refused up front, a run
whose loss goes non-finite stops with the step, and a checkpoint with NaN or missing tensors is refused by name."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from forgetless.cli import main
from forgetless.models import ModelLoadError, check_finite_weights, load_causal_lm
from tests.conftest import make_model
from tests.test_cli_errors import _one_line

FLAGS = {
    "learning rate": (["--learning-rate", "inf"], "key 'learning_rate': Input should be a finite number"),
    "weight decay": (["--weight-decay", "nan"], "key 'weight_decay': Input should be a finite number"),
    "lora alpha": (["--lora", "--lora-alpha", "inf"], "key 'lora_alpha': Input should be a finite number"),
    "l2sp weight": (["--regularizers", '{"l2sp": {"weight": Infinity}}'], "regularizer l2sp: weight must be"),
    "talr tau": (["--method", "talr", "--method-params", '{"tau": NaN}'], "method talr: tau must be"),
}


@pytest.mark.parametrize("case", list(FLAGS))
def test_non_finite_settings_are_refused_before_any_work(case: str, tiny_model_dir: Path, pc_data: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags, expected = FLAGS[case]
    out = tmp_path / "out"
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(pc_data), "--output", str(out), *flags]) == 2
    assert expected in _one_line(capsys)
    assert not out.exists()


def test_merge_weights_must_be_finite(saved_models: list[Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["merge", "--models", str(saved_models[0]), str(saved_models[1]), "--alpha", "nan",
                 "--output", str(tmp_path / "m")]) == 2
    assert "key 'alpha': Input should be a finite number" in _one_line(capsys)


def test_a_diverging_run_stops_at_its_step_and_writes_no_model(tiny_model_dir: Path, pc_data: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(pc_data), "--output", str(out),
                 "--learning-rate", "1e10", "--max-steps", "6", "--batch-size", "4"]) == 2
    line = _one_line(capsys)
    assert "the training loss is nan; training diverged; lower --learning-rate (now 1e+10)" in line
    assert line.startswith("forgetless: error: step ") and int(line.split("step ")[1].split(":")[0]) < 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]  # no model, no work folder


def _broken_copy(source: Path, target: Path, change: str) -> tuple[Path, str]:
    """A copy of ``source`` whose first MLP weight holds a NaN (``nan``) or is missing (``missing``)."""
    shutil.copytree(source, target)
    weights = load_file(str(target / "model.safetensors"))
    name = "model.layers.0.mlp.up_proj.weight"
    if change == "nan":
        weights[name][3, 5] = float("nan")
    else:
        del weights[name]
    save_file(weights, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target, name


@pytest.mark.parametrize("change", ["nan", "missing"])
def test_a_checkpoint_with_a_nan_or_a_missing_tensor_is_refused_by_name(change: str, tiny_model_dir: Path,
                                                                         pc_data: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    broken, name = _broken_copy(tiny_model_dir, tmp_path / "broken", change)
    expected = (f"tensor {name} holds 1 non-finite value(s)" if change == "nan"
                else f"the weights lack 1 tensor(s) of the LlamaForCausalLM architecture ({name})")
    with pytest.raises(ModelLoadError, match=re.escape(expected)):
        load_causal_lm(broken)
    assert main(["train", "--model", str(broken), "--data", str(pc_data), "--output", str(tmp_path / "o")]) == 2
    assert expected in _one_line(capsys) and not (tmp_path / "o").exists()
    assert main(["eval", "--model", str(broken), "--domain", str(pc_data), "--no-cloze"]) == 2
    assert expected in _one_line(capsys)


def test_check_finite_weights_names_the_first_bad_tensor(tokenizer) -> None:  # noqa: ANN001
    model = make_model(tokenizer)
    check_finite_weights(model, "fine")  # a healthy model passes
    with torch.no_grad():
        model.model.layers[1].self_attn.q_proj.weight[0, :2] = torch.tensor([float("inf"), float("-inf")])
    with pytest.raises(ValueError, match=r"^here: tensor model.layers.1.self_attn.q_proj.weight holds 2 non-finite "
                                         r"value\(s\) \(NaN or inf\) of 1024; fix it$"):
        check_finite_weights(model, "here", "fix it", ValueError)


DEGENERATE = {
    "eval --limit -1": (["eval", "--model", "M", "--domain", "D", "--limit", "-1"],
                        "--limit: Input should be greater than 0"),
    "eval --max-new-tokens 0": (["eval", "--model", "M", "--domain", "D", "--max-new-tokens", "0"],
                                "--max-new-tokens: Input should be greater than 0"),
    "eval --resamples 0": (["eval", "--model", "M", "--domain", "D", "--resamples", "0"],
                           "--resamples: Input should be greater than 0"),
    "eval --general-limit 0": (["eval", "--model", "M", "--general", "D", "--general-limit", "0"],
                               "--general-limit: Input should be greater than 0"),
    "eval --confidence 1": (["eval", "--model", "M", "--domain", "D", "--confidence", "1"],
                            "--confidence: Input should be less than 1"),
    "generate --num-samples 0": (["generate", "--model", "M", "--output", "o.jsonl", "--num-samples", "0"],
                                 "--num-samples: Input should be greater than 0"),
    "generate --temperature nan": (["generate", "--model", "M", "--output", "o.jsonl", "--temperature", "nan"],
                                   "--temperature: Input should be a finite number"),
    "generate --batch-size 0": (["generate", "--model", "M", "--output", "o.jsonl", "--batch-size", "0"],
                                "--batch-size: Input should be greater than 0"),
    "kl-estimate --limit 0": (["kl-estimate", "--model", "M", "--samples", "S", "--limit", "0"],
                              "--limit: Input should be greater than 0"),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
def test_a_measurement_of_nothing_is_refused_naming_the_flag(case: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    argv, expected = DEGENERATE[case]
    assert main([str(tmp_path / a) if a in ("M", "D", "S", "o.jsonl") else a for a in argv]) == 2
    assert expected in _one_line(capsys)
    assert list(tmp_path.iterdir()) == []
