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

    monkeypatch.setattr(read_module.EventReader, "__iter__", counting_iter)
    monkeypatch.setattr(Path, "write_text", counting_write)
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
