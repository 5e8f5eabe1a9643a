"""Outputs that never mislead (issue 12, classes 3, 5, 6, 8): no input destroyed,
no stale file beside a new run's, nothing new after an input error, every
rejected row somewhere, every run's records kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tapshield.app.outputs import OutputDir
from tapshield.cli import app
from tapshield.storage import Store
from tests.app.test_fuzz_commands import _write
from tests.events.helpers import GOOD

runner = CliRunner()


@pytest.fixture()
def events(examples: Path) -> Path:
    return examples / "events-rfc3339.csv"


def test_validate_refuses_to_overwrite_its_input_or_another_output(tmp_path: Path,
                                                                   events: Path) -> None:
    mine = tmp_path / "in.csv"
    mine.write_bytes(events.read_bytes())
    before = mine.read_bytes()
    res = runner.invoke(app, ["validate", str(mine), "--rejects", str(mine)])
    assert res.exit_code == 2 and "would overwrite the input" in " ".join(res.output.split())
    assert mine.read_bytes() == before
    link = tmp_path / "link.csv"
    link.symlink_to(mine)
    res = runner.invoke(app, ["validate", str(mine), "--out", str(link)])
    assert res.exit_code == 2 and mine.read_bytes() == before
    res = runner.invoke(app, ["validate", str(mine), "--out", str(tmp_path / "x.csv"),
                              "--rejects", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "would overwrite --out" in " ".join(res.output.split())
    assert not (tmp_path / "x.csv").exists()


def test_validate_changes_with_out_is_refused_not_claimed(tmp_path: Path,
                                                          examples: Path) -> None:
    res = runner.invoke(app, ["validate", "--changes", str(examples / "changes.csv"),
                              "--out", str(tmp_path / "acc.csv")])
    assert res.exit_code == 2 and "--changes" in res.output
    assert not (tmp_path / "acc.csv").exists()


def test_validate_leaves_no_stale_rejects_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    _write([dict(GOOD, event_id="e1"), dict(GOOD, event_id="e2", amount="x")], "csv", path)
    rejects = tmp_path / "r.csv"
    assert runner.invoke(app, ["validate", str(path), "--rejects", str(rejects)]).exit_code == 1
    assert rejects.exists()
    _write([dict(GOOD, event_id="e1")], "csv", path)
    assert runner.invoke(app, ["validate", str(path), "--rejects", str(rejects)]).exit_code == 0
    assert not rejects.exists(), "an earlier run's rejects beside a clean run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv"]


def _analyze(events: Path, out: Path, *extra: str) -> int:
    res = runner.invoke(app, ["analyze", str(events), "--out", str(out), *extra])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code


def test_a_clean_rerun_removes_the_earlier_runs_rejects(tmp_path: Path, events: Path) -> None:
    bad = tmp_path / "bad.csv"
    rows = [dict(GOOD, event_id=f"e{i}") for i in range(3)]
    _write([*rows, dict(GOOD, event_id="x", amount="oops")], "csv", bad)
    out = tmp_path / "out"
    assert _analyze(bad, out) == 1
    assert (out / "rejects.csv").exists()
    assert _analyze(events, out) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "rejects.csv" not in names
    assert not [n for n in names if n.startswith(".tapshield-partial")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["rows_rejected"] == 0


def test_an_input_error_leaves_nothing_new(tmp_path: Path, events: Path) -> None:
    out = tmp_path / "out"
    assert _analyze(events, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix != ".db"
              and p.is_file() and not p.name.endswith(".lock")}
    broken = tmp_path / "broken.csv"
    broken.write_text("event_id,ts\ne1,2026-11-11T20:00:00+08:00\n")
    assert _analyze(broken, out) == 2
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix != ".db"
             and p.is_file() and not p.name.endswith(".lock")}
    assert after == before
    assert not [p for p in out.iterdir() if p.is_dir()]
    fresh = tmp_path / "fresh"
    assert _analyze(broken, fresh) == 2
    assert not (fresh / "summary.json").exists()
    assert not (fresh / "incidents.json").exists()


def test_two_analyses_into_one_folder_keep_both_runs(tmp_path: Path) -> None:
    from typer.testing import CliRunner as Runner

    d = tmp_path / "sim"
    r = Runner().invoke(app, ["simulate", "nfc-regional-outage", "--scale", "0.05",
                              "--format", "csv", "--no-labels", "--out", str(d)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    assert _analyze(d / "events.csv", out) == 0
    assert _analyze(d / "events.csv", out) == 0
    store = Store(f"sqlite:///{out / 'tapshield.db'}")
    try:
        from sqlalchemy import text

        with store.engine.connect() as conn:
            runs = [r.id for r in conn.execute(text("select id from runs order by started_at"))]
        assert len(runs) == 2
        first, second = (store.incidents(r) for r in runs)
        assert first and [i.id for i in first] == [i.id for i in second]
    finally:
        store.close()


def test_analyze_portfolio_writes_and_reports_rejected_borrowers(tmp_path: Path,
                                                                 events: Path) -> None:
    book = tmp_path / "book.csv"
    r = runner.invoke(app, ["portfolio", "--events", str(events), "--out", str(book),
                            "--seed", "3"])
    assert r.exit_code == 0, r.output
    lines = book.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("borrower_id")] = ""
    book.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    out = tmp_path / "out"
    res = runner.invoke(app, ["analyze", str(events), "--out", str(out), "--portfolio",
                              str(book)], env={"COLUMNS": "200"})
    assert res.exit_code == 1, res.output
    assert (out / "portfolio.rejects.csv").exists()
    assert "portfolio.rejects.csv" in "".join(res.output.split())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["impact"]["portfolio_rejected"] >= 1


def test_staging_folders_of_dead_runs_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / ".tapshield-partial-999999999"
    dead.mkdir()
    (dead / "incidents.json").write_text("[]")
    folder = OutputDir(tmp_path)
    assert not dead.exists() and folder.staging.exists()
    folder.abandon()
    assert not folder.staging.exists()


def test_impact_writes_its_completion_marker_and_never_removes_its_input(
    tmp_path: Path, events: Path
) -> None:
    """``impact`` has ``summary.json`` like ``analyze`` (status, row counts, the files
    it wrote); valuing an analysis's ``incidents.json`` into that analysis's folder
    replaces the analysis's outputs but keeps the input it reads."""
    out = tmp_path / "out"
    r = runner.invoke(app, ["analyze", str(events), "--out", str(out)])
    assert r.exit_code == 0, r.output
    incidents = (out / "incidents.json").read_bytes()
    book = tmp_path / "book.csv"
    r = runner.invoke(app, ["portfolio", "--events", str(events), "--out", str(book),
                            "--seed", "3"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["impact", "--events", str(events), "--incidents",
                            str(out / "incidents.json"), "--portfolio", str(book),
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "incidents.json").read_bytes() == incidents  # the input, kept
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"] == "impact" and summary["status"] == "complete"
    assert summary["rows_read"] == summary["rows_accepted"] + summary["rows_rejected"] > 0
    assert summary["portfolio_rejected"] == 0
    written = set(summary["outputs"])
    assert {"impact.json", "impact.html", "impact_merchants.csv", "summary.json"} <= written
    left = {p.name for p in out.iterdir() if p.is_file() and not p.name.startswith("tapshield")}
    # the analysis's alerts and report went (stale beside an impact); its incidents stayed
    assert left == written | {"incidents.json"}, left
    assert not [p for p in out.iterdir() if p.is_dir()]


class _FailsAtTheEnd:
    """A sink that fails once the analysis has written everything (into staging)."""

    def alerts(self, events: object) -> None:
        return None

    def incidents(self, incidents: object) -> None:
        return None

    def close(self, result: object) -> None:
        raise RuntimeError("the database went away")


_DRILL = """\
name: small-nfc
description: A short NFC outage, for the drill's output tests.
why: small and quick.
start: "2026-11-24T10:00:00+08:00"
duration: 1h
seed: 5
scale: 0.05
faults:
  - id: nfc-short
    kind: interface
    channel: nfc
    regions: [CN-GD]
    start: "+30m"
    duration: 15m
    ramp_up: 1m
    failure_rate: 0.8
"""


def test_a_drill_stages_its_analysis_and_drops_an_old_scorecard_first(tmp_path: Path) -> None:
    """A drill that fails midway leaves the earlier analysis as it was (not half of a
    new one) and no scorecard (the drill folder's completion marker) beside it."""
    from tapshield.app.drill import run_drill
    from tapshield.simulate import load_scenario

    scenario = tmp_path / "small.yaml"
    scenario.write_text(_DRILL)
    out = tmp_path / "drill"
    (out / "analysis").mkdir(parents=True)
    earlier = {"summary.json": '{"status": "complete"}\n', "alerts.jsonl": "{}\n"}
    for name, text in earlier.items():
        (out / "analysis" / name).write_text(text)
    (out / "scorecard.json").write_text('{"status": "complete"}\n')
    with pytest.raises(RuntimeError, match="went away"):
        run_drill(load_scenario(scenario), out, failover=False, guard=False,
                  sinks=[_FailsAtTheEnd()])
    assert not (out / "scorecard.json").exists()
    assert {p.name: p.read_text() for p in (out / "analysis").iterdir()} == earlier
    run_drill(load_scenario(scenario), out, failover=False, guard=False)
    assert json.loads((out / "scorecard.json").read_text())["status"] == "complete"
    names = {p.name for p in (out / "analysis").iterdir()}
    assert names == {"summary.json", "alerts.jsonl", "incidents.json", "report.html",
                     "fraud_digest.json"}
    assert not [p for p in (out / "analysis").iterdir() if p.is_dir()]
    assert json.loads((out / "analysis" / "summary.json").read_text())["events"] > 0


def test_a_killed_validates_temporary_output_is_removed_by_the_next(tmp_path: Path) -> None:
    from tapshield.app.outputs import StagedFile

    dead = tmp_path / ".tapshield-partial-999999999-accepted.csv"
    dead.write_text("half of it")
    other = tmp_path / ".tapshield-partial-999999999-rejects.csv"  # another output's
    other.write_text("x")
    staged = StagedFile(tmp_path / "accepted.csv")
    assert not dead.exists() and other.exists()
    staged.temp.write_text("all of it")
    assert staged.commit() and (tmp_path / "accepted.csv").read_text() == "all of it"
