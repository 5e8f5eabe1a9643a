"""The one atomic small-file write: the target is whole, private when asked, and
untouched when the write fails."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tapshield.fileio import write_text_atomic


def test_replaces_whole_and_private(tmp_path: Path) -> None:
    target = tmp_path / "keys.json"
    target.write_text("old\n", encoding="utf-8")
    write_text_atomic(target, "新的\n", mode=0o600)
    assert target.read_text(encoding="utf-8") == "新的\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_failure_leaves_target_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_text("kept\n", encoding="utf-8")

    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, "\udcff lone surrogate cannot be UTF-8")
    assert target.read_text(encoding="utf-8") == "kept\n"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_missing_folder_raises_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_text_atomic(tmp_path / "absent" / "f", "x")
    assert list(tmp_path.iterdir()) == []
