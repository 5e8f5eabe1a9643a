"""A full disk (issue 12, class 9): exit 2, one line, nothing that looks complete.

The disk really fills: the command runs in a subprocess whose file size limit
(``RLIMIT_FSIZE``) is below what it must write, so the kernel refuses the
write with ``EFBIG`` exactly as a full disk refuses it with ``ENOSPC``
(Python ignores ``SIGXFSZ``, so the write fails instead of killing the
process); as root, a 256 KiB tmpfs gives the real ``ENOSPC``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tapshield.cli import app

EARLIER = {"summary.json": json.dumps({"status": "complete", "rows_read": 1, "rows_accepted": 1,
                                       "rows_rejected": 0}) + "\n",
           "incidents.json": "[]\n"}
"""An earlier complete run's outputs: a failed run must leave them as they were."""


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sim")
    r = CliRunner().invoke(app, ["simulate", "nfc-regional-outage", "--scale", "0.05",
                                 "--format", "csv", "--no-labels", "--out", str(d)])
    assert r.exit_code == 0, r.output
    return d / "events.csv"


def _limit(size: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply


def _run(args: list[str], limit: int | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("TAPSHIELD_DB_URL", None)
    return subprocess.run([sys.executable, "-m", "tapshield", *args], env=env,
                          capture_output=True, text=True, timeout=600,
                          preexec_fn=_limit(limit) if limit is not None else None)


def _one_line_exit_2(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error:"), lines
    for w in words:
        assert w in lines[0], (w, lines[0])


def _earlier_run(folder: Path) -> None:
    folder.mkdir()
    for name, text in EARLIER.items():
        (folder / name).write_text(text)


def _as_it_was(folder: Path) -> None:
    """The earlier outputs, unchanged, and nothing else but the database."""
    outputs = {p.name: p.read_text() for p in folder.iterdir()
               if p.is_file() and not p.name.startswith("tapshield.db")}
    assert outputs == EARLIER
    assert not [p for p in folder.iterdir() if p.is_dir()], "a staging folder was left"


def test_analyze_whose_database_fills_the_disk_exits_2_and_keeps_the_earlier_run(
    events: Path, tmp_path: Path
) -> None:
    """The SQLite file grows past the limit midway through the run (a traceback and
    exit 1 before: the database error was not turned into the one-line kind)."""
    out = tmp_path / "out"
    _earlier_run(out)
    done = _run(["analyze", str(events), "--out", str(out), "--chunk-rows", "1500"],
                limit=150_000)
    _one_line_exit_2(done, "database", "disk I/O error")
    _as_it_was(out)


def test_analyze_whose_outputs_fill_the_disk_exits_2_and_keeps_the_earlier_run(
    events: Path, tmp_path: Path, pg_url: str
) -> None:
    """The database is elsewhere (PostgreSQL): report.html is what does not fit."""
    out = tmp_path / "out"
    _earlier_run(out)
    done = _run(["analyze", str(events), "--out", str(out), "--db", pg_url], limit=100_000)
    _one_line_exit_2(done, str(out), "cannot write the outputs", "File too large")
    _as_it_was(out)


def test_validate_whose_outputs_fill_the_disk_exits_2_and_writes_nothing(
    events: Path, tmp_path: Path
) -> None:
    accepted, rejects = tmp_path / "accepted.csv", tmp_path / "rejects.csv"
    done = _run(["validate", str(events), "--out", str(accepted), "--rejects", str(rejects)],
                limit=100_000)
    _one_line_exit_2(done, "File too large")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a partial output was left"


def test_analyze_on_a_really_full_filesystem_exits_2(events: Path, tmp_path: Path) -> None:
    """ENOSPC from a real filesystem (a 256 KiB tmpfs; needs root to mount it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the RLIMIT_FSIZE tests above run)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        out = disk / "out"
        _earlier_run(out)
        done = _run(["analyze", str(events), "--out", str(out), "--chunk-rows", "1500"])
        assert done.returncode == 2, done.stderr
        _one_line_exit_2(done)
        assert "No space left on device" in done.stderr or "disk is full" in done.stderr
        _as_it_was(out)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
