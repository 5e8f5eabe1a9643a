"""`tapshield simulate` end to end: its output passes `tapshield validate` untouched."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tapshield.cli import app
from tapshield.simulate import Scenario

from .conftest import write_scenario

runner = CliRunner()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, small_traffic: Path) -> Scenario:
    return write_scenario(
        tmp_path_factory.mktemp("cli"),
        small_traffic,
        name="cli",
        duration="40m",
        scale=1.0,
        faults=[
            {"kind": "network", "region": "CN-GD", "start": "+10m", "duration": "10m"},
            {"kind": "maintenance", "channel": "wallet", "start": "+25m", "duration": "10m"},
        ],
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl.gz", "parquet"])
def test_simulate_output_passes_validate(tmp_path: Path, scenario: Scenario, fmt: str) -> None:
    out = tmp_path / "out"
    assert scenario.source is not None
    res = runner.invoke(
        app, ["simulate", "--scenario", str(scenario.source), "--out", str(out), "--format", fmt]
    )
    assert res.exit_code == 0, res.output
    events = out / f"events.{fmt}"
    truth = json.loads((out / "truth.json").read_text())
    assert [f["cause"] for f in truth["faults"]] == ["network", "maintenance"]
    assert truth["faults"][0]["start"].endswith("+08:00")
    res = runner.invoke(app, ["validate", str(events), "--rejects", str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.output
    assert "rejected   0" in res.output.replace("│", " ") or " 0 " in res.output
    assert not (tmp_path / "r.csv").exists()
    res = runner.invoke(
        app,
        ["validate", "--changes", str(out / "changes.csv"), "--rejects", str(tmp_path / "rc.csv")],
    )
    assert res.exit_code == 0, res.output
    assert truth["events"] == pl.read_parquet(out / "labels.parquet").height


def test_simulate_list_and_errors(tmp_path: Path) -> None:
    res = runner.invoke(app, ["simulate", "--list"])
    assert res.exit_code == 0 and "demo-day" in res.output and "quiet-week" in res.output
    res = runner.invoke(app, ["simulate", "no-such-scenario"])
    assert res.exit_code == 2 and "unknown scenario" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text('name: b\nstart: "2026-11-24T08:00:00+08:00"\nduration: 1h\nscale: -1\n')
    res = runner.invoke(app, ["simulate", str(bad)])
    assert res.exit_code == 2 and "line 4: scale" in res.output
    res = runner.invoke(app, ["simulate", "demo-day", "--format", "xlsx"])
    assert res.exit_code == 2


def test_live_mode_writes_paced_jsonl(tmp_path: Path, scenario: Scenario) -> None:
    assert scenario.source is not None
    res = runner.invoke(
        app,
        [
            "simulate",
            str(scenario.source),
            "--live",
            "--speed",
            "0",
            "--batch-seconds",
            "30",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) > 1000
    assert json.loads(lines[0])["ts"].endswith("+08:00")
    res = runner.invoke(
        app, ["validate", str(tmp_path / "events.jsonl"), "--rejects", str(tmp_path / "r.csv")]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "changes.csv").exists()


def test_prefetch_writes_the_same_files(tmp_path: Path, scenario: Scenario) -> None:
    assert scenario.source is not None
    outs = []
    for flag in ([], ["--prefetch"]):
        out = tmp_path / ("pre" if flag else "plain")
        res = runner.invoke(app, ["simulate", str(scenario.source), "--out", str(out), *flag])
        assert res.exit_code == 0, res.output
        outs.append(out)
    assert pl.read_parquet(outs[0] / "events.parquet").equals(
        pl.read_parquet(outs[1] / "events.parquet"))
    assert (outs[0] / "truth.json").read_text() == (outs[1] / "truth.json").read_text()
