"""Environment and file problems (issue 12, class 9): one line on stderr, exit 2,
never a traceback, whatever the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tapshield.cli import app

runner = CliRunner()


def _one_line_exit_2(res: Result, *needles: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    text = " ".join(res.output.split())
    for needle in needles:
        assert needle in text, (needle, res.output)


@pytest.fixture()
def events(examples: Path) -> Path:
    return examples / "events-rfc3339.csv"


def test_an_output_directory_that_is_a_file(events: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    res = runner.invoke(app, ["analyze", str(events), "--out", str(tmp_path / "afile")])
    _one_line_exit_2(res, "afile")


@pytest.mark.parametrize("url, needle", [
    ("notaurl", "not usable"),
    ("postgresql://nobody:secret@127.0.0.1:1/x", "cannot be used"),
    ("nosuchdialect://x/y", "not usable"),
])
def test_a_database_url_that_cannot_be_used(events: Path, tmp_path: Path, url: str,
                                            needle: str) -> None:
    res = runner.invoke(app, ["analyze", str(events), "--out", str(tmp_path / "o"),
                              "--db", url])
    _one_line_exit_2(res, needle)
    assert "secret" not in res.output


def test_a_tapshield_db_that_is_not_a_database(events: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "tapshield.db").write_bytes(b"not a database at all, just words " * 20)
    res = runner.invoke(app, ["analyze", str(events), "--out", str(out)])
    _one_line_exit_2(res, "not a database")


BAD_INCIDENTS = {
    "invalid.json": b'[{"id": "x"',
    "latin1.json": '[{"id": "caf\u00e9"}]'.encode("latin-1"),
    "schema.json": b'[{"id": "x"}]',
    "backwards.json": json.dumps([{
        "id": "INC-1", "start": "2026-11-11T20:00:00+08:00", "end": "2026-11-11T19:00:00+08:00",
        "detected_at": "2026-11-11T20:00:40+08:00", "level": 2, "scope": [],
        "cause": "interface", "confidence": 0.9, "evidence": [], "failed_attempts": 0,
        "failed_payments": 0, "affected_users": 0, "affected_merchants": 0,
        "lost_amount": "0.00"}]).encode(),
}


@pytest.mark.parametrize("name", sorted(BAD_INCIDENTS))
def test_bad_incidents_files_for_impact_and_drill(events: Path, tmp_path: Path,
                                                  name: str) -> None:
    path = tmp_path / name
    path.write_bytes(BAD_INCIDENTS[name])
    res = runner.invoke(app, ["impact", "--events", str(events), "--incidents", str(path),
                              "--out", str(tmp_path / "o")])
    _one_line_exit_2(res, name)
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"scenario": "x", "start": "2026-11-11T20:00:00+08:00",
                                 "end": "2026-11-11T21:00:00+08:00", "faults": []}))
    res = runner.invoke(app, ["drill", "--truth", str(truth), "--incidents", str(path)])
    _one_line_exit_2(res, name)


@pytest.mark.parametrize("missing", ["start", "cause"])
def test_a_truth_file_without_start_or_cause(tmp_path: Path, missing: str) -> None:
    fault = {"id": "f1", "cause": "interface", "must_page": True,
             "start": "2026-11-11T20:00:00+08:00", "end": "2026-11-11T20:30:00+08:00"}
    doc = {"scenario": "x", "start": "2026-11-11T20:00:00+08:00",
           "end": "2026-11-11T21:00:00+08:00", "faults": [fault]}
    if missing == "start":
        del doc["start"]
    else:
        del fault["cause"]
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(doc))
    empty = tmp_path / "incidents.json"
    empty.write_text("[]")
    res = runner.invoke(app, ["drill", "--truth", str(truth), "--incidents", str(empty)])
    _one_line_exit_2(res, "truth.json", missing)


def test_a_missing_path_with_markup_in_its_name(tmp_path: Path) -> None:
    res = runner.invoke(app, ["validate", str(tmp_path / "missing[/x][bold]1[/bold].csv")])
    _one_line_exit_2(res, "missing[/x][bold]1[/bold].csv")
