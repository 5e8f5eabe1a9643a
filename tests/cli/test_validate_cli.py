"""`tapshield validate` as a user runs it: exit codes, messages, rejects file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tapshield.cli import app
from tests.events.helpers import rows

runner = CliRunner()


def test_examples_validate_clean(examples: Path, tmp_path: Path) -> None:
    for name in ("events-rfc3339.csv", "events-epoch-ms.csv"):
        res = runner.invoke(app, ["validate", str(examples / name),
                                  "--rejects", str(tmp_path / "r.csv")])
        assert res.exit_code == 0, res.output
        assert "rejected" in res.output
    res = runner.invoke(app, ["validate", "--changes", str(examples / "changes.csv")])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "r.csv").exists(), "no rejects, no rejects file"


def test_bad_rows_are_named_and_written_with_reasons(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    rows({}, {"outcome": "maybe"}, {"amount": "1.005"}, {}).write_csv(src)
    out = tmp_path / "clean.parquet"
    res = runner.invoke(app, ["validate", str(src), "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert "row 2, column 'outcome': rule outcome_enum (value 'maybe')" in res.output
    assert "row 3, column 'amount': rule amount_format (value '1.005')" in res.output
    rejects = pl.read_csv(tmp_path / "in.csv.rejects.csv", infer_schema=False)
    assert rejects["row"].to_list() == ["2", "3"]
    assert rejects["outcome"].to_list() == ["maybe", "approved"]
    assert pl.read_parquet(out).height == 2, "good rows go on"
    res = runner.invoke(app, ["validate", str(src), "--max-rejects", "2",
                              "--rejects", str(tmp_path / "r2.csv")])
    assert res.exit_code == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("event_id,ts\ne1,2026-11-11T20:00:00+08:00\n", "missing required columns"),
        ("", "empty file"),
    ],
)
def test_file_level_errors_are_one_line_exit_2(tmp_path: Path, content: str, message: str) -> None:
    src = tmp_path / "x.csv"
    src.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "tapshield", "validate", str(src)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    res = runner.invoke(app, ["validate", str(tmp_path / "nope.csv")])
    assert res.exit_code == 2
    weird = tmp_path / "x.xlsx"
    weird.write_text("a")
    res = runner.invoke(app, ["validate", str(weird)])
    assert res.exit_code == 2
