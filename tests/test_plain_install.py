"""A plain install runs the shipped configs (issue 31): opt in with ``pytest -m slow tests/test_plain_install.py``.

The package is installed without extras into a fresh virtual environment (torch held at its pin, as
``scripts/setup.sh`` holds it, so no CUDA wheels are pulled), then every config under ``configs/`` is
checked (``--check`` names any missing package before a cell runs) and the two whose base is cheap to
get (``quick.yaml``: the tiny testbed; ``real.yaml``: the 93 MB SmolLM2 wheel) are dry-run. ``full.yaml``
and ``real_gpu.yaml`` are checked, not dry-run: the first needs the small testbed, hours to build on a
CPU; the second is the real study at GPU size, whose dry run ``real.yaml``'s covers on a CPU. Needs the
package index (the dependencies) and several minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml"))
DRY_RUN = ("quick.yaml", "real.yaml")


def _run(args: list[str], timeout: int, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("plain") / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], 300).returncode == 0
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    torch_pin = f"torch=={__import__('torch').__version__.split('+')[0]}"
    installed = _run([*pip, torch_pin], 1800)
    assert installed.returncode == 0, installed.stderr[-2000:]
    installed = _run([*pip, str(ROOT)], 1800)  # the package itself, no extras, not editable
    assert installed.returncode == 0, installed.stderr[-2000:]
    return venv


# A `forgetless train` config (no `methods`): validated as train validates it, data and output from the flags.
VALIDATE_TRAIN = ("import sys, yaml; from forgetless.config import build_config; "
                  "from forgetless.training.config import TrainConfig; "
                  "build_config(TrainConfig, {'data': 'd.jsonl', 'output': 'out', "
                  "**yaml.safe_load(open(sys.argv[1]))}, sys.argv[1])")


def test_every_shipped_config_checks_in_a_plain_install(plain_venv: Path, tmp_path: Path) -> None:
    for config in CONFIGS:
        if "methods" in yaml.safe_load(config.read_text()):  # a study: its own check names a missing package
            command = [str(plain_venv / "bin" / "forgetless"), "study", str(config), "--check"]
        else:
            command = [str(plain_venv / "bin" / "python"), "-c", VALIDATE_TRAIN, str(config)]
        done = _run(command, 300, cwd=tmp_path)
        assert done.returncode == 0, f"{config.name}: {done.stderr}"
        assert "missing" not in done.stdout + done.stderr and "Traceback" not in done.stderr, config.name


@pytest.mark.parametrize("name", DRY_RUN)
def test_the_cheap_configs_dry_run_in_a_plain_install(name: str, plain_venv: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = _run([str(plain_venv / "bin" / "forgetless"), "study", str(ROOT / "configs" / name), "--dry-run",
                 "--output", str(tmp_path / "study")], 3600, cwd=tmp_path, env=env)
    assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
    assert "estimated time" in done.stdout and "Traceback" not in done.stderr
