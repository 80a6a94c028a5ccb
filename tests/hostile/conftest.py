"""The user's folder each hostile case runs against."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.harness import World, make_world


@pytest.fixture
def world(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A fresh user folder; the working directory is its parent, so a relative output lands beside it."""
    monkeypatch.chdir(tmp_path)
    return make_world(tmp_path / "P", tiny_model_dir)
