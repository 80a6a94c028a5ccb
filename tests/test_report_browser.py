"""report.html renders in headless Chromium (Debian's ``chromium``): no console errors, frontier visible."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from forgetless.study.reporting.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed (scripts/setup.sh installs it)"
)


def _row(row_id: str, kind: str, forgetting: float, gain: float, **extra: object) -> dict:
    return {"id": row_id, "label": row_id, "kind": kind, "general_nats_per_token": 4.8 + forgetting,
            "general_bits_per_byte": 1.7, "domain_accuracy": 0.02 + gain, "domain_n": 200,
            "forgetting": forgetting, "forgetting_ci": [forgetting - 0.05, forgetting + 0.05],
            "gain": gain, "gain_ci": [gain - 0.05, gain + 0.05], **extra}


def _study(tmp_path: Path) -> tuple[Path, SimpleNamespace]:
    rows = [_row("base", "base", 0.0, 0.0), _row("sft", "trained", 1.2, 0.40, learning_rate=2e-3, plain_sft=True),
            _row("talr", "trained", 0.6, 0.35, learning_rate=2e-3)]
    rows += [_row(f"sft a={a}", "interpolation", 1.2 * a * a, 0.4 * a + 0.1 * a * (1 - a), alpha=a, parent="sft")
             for a in (0.25, 0.5, 0.75)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = SimpleNamespace(name="browser", base_model="testbed:tiny", budget=0.5,
                          data=SimpleNamespace(train="train.jsonl", general="general.jsonl"))
    return tmp_path, cfg


@needs_chromium
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    root, cfg = _study(tmp_path)
    page = write_report(root, cfg)
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0", "--window-size=1000,1400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.is_file(), run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not errors, errors
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # The frontier draws its points in matplotlib's tab10 colours; a blank or missing
    # image would leave the page black-on-white text only.
    plotted = int((np.abs(pixels - np.array([31, 119, 180])) < 40).all(axis=-1).sum())
    assert plotted > 200, f"only {plotted} plot-coloured pixels in the screenshot"
