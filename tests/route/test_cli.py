"""``tapshield reroute`` end to end on a library scenario."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tapshield.cli import app


def test_reroute_prints_what_tapshield_would_have_saved(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "reroute", "nfc-regional-outage", "--around-faults", "--scale", "0.25",
        "--policies", "tapshield,hyperswitch", "--out", str(tmp_path)],
        env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "tapshield would have saved" in result.output
    data = json.loads((tmp_path / "results.json").read_text())
    res = data["results"]
    assert set(res) == {"no_failover", "tapshield", "hyperswitch"}
    assert res["tapshield"]["failed"] < res["no_failover"]["failed"]
    assert res["tapshield"]["saved"] == res["no_failover"]["failed"] - res["tapshield"]["failed"]
    assert res["tapshield"]["double_authorisations"] == 0
    for r in res.values():
        assert r["approved"] + r["declined"] + r["failed"] == data["taps"]


def test_reroute_rejects_an_unknown_policy() -> None:
    result = CliRunner().invoke(app, ["reroute", "demo-day", "--policies", "magic"])
    assert result.exit_code == 2
    assert "unknown policy magic" in result.output


def test_reroute_rejects_an_unknown_scenario() -> None:
    result = CliRunner().invoke(app, ["reroute", "no-such-scenario"])
    assert result.exit_code == 2
