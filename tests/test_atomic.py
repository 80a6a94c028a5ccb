"""Atomic files: a reader sees the old file or the new one, never half of one, and no temporary file stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgetless.atomic import atomic_file, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half of the n")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "frontier.png"
    with atomic_file(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".frontier.png.tmp-")
        tmp.write_bytes(b"\x89PNG")
    assert target.read_bytes() == b"\x89PNG"
    assert sorted(p.name for p in target.parent.iterdir()) == ["frontier.png"]
