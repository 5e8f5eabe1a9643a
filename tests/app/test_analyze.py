"""The analyse use case: one pass over the events, each output written once, a
report whose charts are drawn from the real timeline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tapshield.events.read as read_module
from tapshield.app.analyze import AnalyzeOptions, analyse_file
from tapshield.app.impact import ImpactOptions, value_impact
from tapshield.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A small real run's inputs: events, changes and a loan book of its merchants."""
    d = tmp_path_factory.mktemp("sim")
    r = runner.invoke(app, ["simulate", "nfc-regional-outage", "--scale", "0.05", "--format",
                            "csv", "--no-labels", "--out", str(d)])
    assert r.exit_code == 0, r.output
    events = next(d.glob("events.*"))
    book = d / "book.csv"
    r = runner.invoke(app, ["portfolio", "--events", str(events), "--out", str(book),
                            "--seed", "3", "--borrower-share", "0.5"])
    assert r.exit_code == 0, r.output
    return events, next(d.glob("changes.*")), book


def charts(html: str) -> list[str]:
    """The report's drawn charts: SVGs with at least one plotted line."""
    svgs = re.findall(r'<svg class="chart".*?</svg>', html, flags=re.S)
    return [s for s in svgs if re.search(r'<path d="M[0-9.]+,[0-9.]+ L', s)]


def test_analyze_with_a_portfolio_reads_once_writes_once_and_draws(
    simulated: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, changes, book = simulated
    passes: list[str] = []
    real_iter = read_module.EventReader.__iter__

    def counting_iter(self: read_module.EventReader):  # type: ignore[no-untyped-def]
        passes.append(self.path.name)
        return real_iter(self)

    writes: list[str] = []
    real_write = Path.write_text

    def counting_write(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        writes.append(self.name)
        return real_write(self, *args, **kwargs)

    import tapshield.app.outputs as app_outputs
    import tapshield.pipeline.outputs as pipeline_outputs

    real_atomic = pipeline_outputs.write_text_atomic

    def counting_atomic(path: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        writes.append(path.name)
        return real_atomic(path, *args, **kwargs)

    monkeypatch.setattr(read_module.EventReader, "__iter__", counting_iter)
    monkeypatch.setattr(Path, "write_text", counting_write)
    # outputs are written through a temporary name (tapshield.fileio); count those too
    monkeypatch.setattr(pipeline_outputs, "write_text_atomic", counting_atomic)
    monkeypatch.setattr(app_outputs, "write_text_atomic", counting_atomic)
    out = tmp_path / "out"
    outcome = analyse_file(AnalyzeOptions(events, out, changes=changes, portfolio=book,
                                          db=f"sqlite:///{tmp_path / 'runs.db'}"))
    monkeypatch.undo()

    assert passes == [events.name]  # the impact valuation did not read the file again
    assert writes.count("report.html") == 1
    assert writes.count("summary.json") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input"]["rows"] == outcome.input.rows > 0
    assert summary["impact"] == outcome.result.summary["impact"]
    html = (out / "report.html").read_text()
    assert "Financing impact" in html and 'href="impact.html"' in html
    assert len(charts(html)) == 3, "the report draws rates, traffic and latency"
    assert outcome.paths["html"] == out / "impact.html"

    # the one-pass valuation is the valuation of the same incidents from the file
    again = value_impact(ImpactOptions(events, out / "incidents.json", tmp_path / "again",
                                       portfolio=book))
    assert again.events.rows == outcome.input.rows
    one = json.loads((out / "impact.json").read_text())
    two = json.loads((tmp_path / "again" / "impact.json").read_text())
    for d in (one, two):
        d.pop("generated_at")
        d["inputs"]["events"].pop("path")
    assert one == two


def test_the_cli_prints_what_the_use_case_returns(
    simulated: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    events, changes, _ = simulated
    r = runner.invoke(app, ["analyze", str(events), "--changes", str(changes), "--out",
                            str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "events analysed" in r.output and "report:" in r.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "impact" not in summary and summary["input"]["rejected"] == 0


@pytest.mark.slow
def test_the_demo_report_shows_its_charts(tmp_path: Path) -> None:
    r = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "report.html").read_text()
    assert len(charts(html)) == 3
    assert "Financing impact" in html
    assert json.loads((tmp_path / "summary.json").read_text())["impact"]["incidents"] >= 1


def test_blocked_fraud_is_in_the_digest_and_not_in_the_incident_list(
    simulated: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """The risk engine's ordinary work: every level-4 risk-decline notice of the run
    is in fraud_digest.json, none is an incident, and the other incidents are the
    ones the book opened when every notice was an incident."""
    import polars as pl

    from tapshield.events.codes import risk_decline_expr
    from tapshield.events.read import EventReader
    from tapshield.pipeline import PipelineConfig, analyze_frames
    from tapshield.respond.digest import DigestPolicy
    from tapshield.respond.incidents import IncidentPolicy

    events, changes, _ = simulated
    out = tmp_path / "out"
    outcome = analyse_file(AnalyzeOptions(events, out, changes=changes,
                                          db=f"sqlite:///{tmp_path / 'runs.db'}"))
    digest = json.loads((out / "fraud_digest.json").read_text())
    assert digest["schema_version"] == "1.0"
    incidents = json.loads((out / "incidents.json").read_text())
    assert not [i for i in incidents if i.get("signal") == "risk_decline" and i["level"] == 4
                and "digest" not in i]
    hours = digest["hours"]
    frames = list(EventReader(events))
    blocked = sum(f.filter(risk_decline_expr().fill_null(False)).height for f in frames)
    assert sum(h["blocked_attempts"] for h in hours) == blocked > 0
    assert sum(h["attempts"] for h in hours) == outcome.input.accepted
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fraud_digest"]["blocked_attempts"] == blocked
    assert "Blocked fraud (hourly digest)" in (out / "report.html").read_text()

    # the same events with every notice an incident (the behaviour before)
    from tapshield.events.changes import read_changes

    before = analyze_frames(
        iter(frames), changes=read_changes(changes).valid,
        config=PipelineConfig(incidents=IncidentPolicy(digest=DigestPolicy(enabled=False))))
    notices = [i for i in before.incidents if i.extra.get("signal") == "risk_decline"]
    waves = [n for h in hours for n in h["notices"]]
    assert len(notices) == len(waves) > 0
    assert sorted(i.extra["alert_id"] for i in notices) == sorted(w["alert_id"] for w in waves)
    others = [i for i in before.incidents if i.extra.get("signal") != "risk_decline"]
    assert [(i.start, i.level, i.scope, i.cause, i.failed_payments) for i in others] == [
        (i.start, i.level, i.scope, i.cause, i.failed_payments)
        for i in outcome.result.incidents if i.extra.get("signal") != "risk_decline"]
    assert pl.DataFrame(hours)["hour"].is_sorted()
