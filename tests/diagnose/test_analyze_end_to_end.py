"""Through the whole pipeline: ``tapshield analyze`` fills cause, scope, confidence, evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tapshield.cli import app
from tapshield.incident import read_incidents
from tapshield.simulate import simulate

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scenario", ["nfc-regional-outage", "gateway-canary"])
def test_analyze_diagnoses_the_simulated_fault(tmp_path: Path, scenario: str) -> None:
    sim = simulate(scenario, tmp_path / "sim", labels=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["analyze", str(sim.events_path), "--changes",
                                      str(sim.changes_path), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    incidents = read_incidents(out / "incidents.json")
    truth = json.loads(sim.truth_path.read_text())
    fault = next(f for f in truth["faults"] if f["must_page"])
    key = lambda c: sorted(c.items())  # noqa: E731
    match = [i for i in incidents if i.cause == fault["cause"]
             and sorted(i.scope, key=key) == sorted(fault["scope"], key=key)]
    assert match, [(i.cause, i.scope) for i in incidents if i.level <= 3]
    inc = match[0]
    assert 0.5 <= inc.confidence <= 1.0
    assert len(inc.evidence) >= 3
    for i in incidents:  # every incident carries a diagnosis
        assert i.evidence and i.cause in ("interface", "network", "risk_control",
                                          "fraud_attack", "release", "unknown")
