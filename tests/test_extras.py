"""A missing optional package is one line naming the feature and the install command, exit 2, never a traceback
(issue 31): each extra's absence is simulated by hiding its package from imports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from forgetless.cli import main
from forgetless.extras import OPTIONAL, MissingExtra, missing_extra_message
from tests.test_cli_errors import _one_line


@pytest.mark.parametrize("package", list(OPTIONAL))
def test_every_optional_package_is_named_with_its_install_command(package: str) -> None:
    feature, command = OPTIONAL[package]
    message = missing_extra_message(ModuleNotFoundError(f"No module named '{package}'", name=f"{package}.sub"))
    assert message == f"{feature} needs the package {package}, which is not installed: {command}"
    assert missing_extra_message(MissingExtra(package)) == message
    assert missing_extra_message(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None


def hide(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Make ``import PACKAGE`` fail as if it were not installed (and forget modules that imported it)."""
    for name in list(sys.modules):
        if name.split(".")[0] in packages or name in ("forgetless.evaluation.lmeval", "forgetless.testbed.probes"):
            monkeypatch.delitem(sys.modules, name)
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)  # import raises ImportError(name=package)


def test_probes_without_their_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    hide(monkeypatch, "countryinfo", "us", "periodictable")
    assert main(["probes", "--output", str(tmp_path / "p")]) == 2
    line = _one_line(capsys)
    assert "the general-ability probes needs the package" in line and "pip install countryinfo" in line
    assert not (tmp_path / "p").exists()


def test_lm_eval_tasks_without_lm_eval(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from forgetless.evaluation.report import EvalSettings  # noqa: F401  (imported before lm_eval is hidden)

    hide(monkeypatch, "lm_eval")
    with pytest.raises(MissingExtra, match=r"lm-eval tasks .* pip install 'forgetless\[lmeval\]'"):
        import forgetless.evaluation.lmeval  # noqa: F401


def test_ray_executor_without_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    from forgetless.study.running.executors import ExecutorError, make_executor

    hide(monkeypatch, "ray")
    with pytest.raises(ExecutorError, match=r"--executor ray needs Ray: pip install 'forgetless\[ray\]'"):
        make_executor("ray")


def test_a_study_that_needs_lm_eval_says_so_before_any_cell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            tiny_model_dir: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from tests.conftest import write_jsonl

    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "Q\n", "completion": " Answer: 1"}])
    general = write_jsonl(tmp_path / "g.jsonl", [{"text": "Some general text."}])
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({
        "output": str(tmp_path / "out"), "base_model": str(tiny_model_dir),
        "data": {"train": str(data), "test": str(data),
                 "general": {"text": str(general),
                             "lm_eval": {"tasks": ["forgetless_probes"], "include_path": "probes"}}},
        "methods": [{"name": "sft", "learning_rates": [1e-3]}]}))
    hide(monkeypatch, "lm_eval")
    for flag in ("--check", "--dry-run"):
        assert main(["study", str(config), flag]) == 2
        assert "lm-eval tasks (the lm-eval adapter) needs the package lm_eval" in _one_line(capsys)
    assert not (tmp_path / "out").exists()
