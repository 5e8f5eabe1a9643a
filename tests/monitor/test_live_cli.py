"""``tapshield live`` end to end: JSONL on stdin, alerts out, pushed to Alertmanager."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tapshield.cli import app
from tapshield.events.write import to_wire

from .synth import Fault, events

AM_URL = os.environ.get("TAPSHIELD_TEST_ALERTMANAGER_URL", "http://127.0.0.1:9093")


def _jsonl(frame: object) -> str:
    wire = to_wire(frame)  # type: ignore[arg-type]
    return "\n".join(json.dumps(r) for r in wire.iter_rows(named=True)) + "\n"


@pytest.mark.alertmanager
def test_live_from_stdin_writes_alerts_and_pushes_to_alertmanager(tmp_path: Path) -> None:
    if os.environ.get("TAPSHIELD_SKIP_ALERTMANAGER"):
        pytest.skip("Alertmanager tests skipped on purpose (TAPSHIELD_SKIP_ALERTMANAGER is set)")
    try:
        httpx.get(f"{AM_URL}/api/v2/status", timeout=5).raise_for_status()
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Alertmanager not reachable at {AM_URL}: {exc}")
    fault = Fault(900, 1500, {"channel": "qr"}, "technical", 0.8)
    frame = events(1400, rate=15, faults=(fault,), seed=33)
    text = _jsonl(frame) + "this is not json\n"
    res = CliRunner().invoke(app, ["live", "--port", "0", "--no-diagnose", "--quiet",
                                   "--alertmanager", AM_URL, "--out", str(tmp_path),
                                   "--lateness", "0"], input=text)
    assert res.exit_code == 1, res.output  # one line rejected
    assert "1 rejected" in res.output
    assert "alertmanager: 1 sent, 0 failed" in res.output
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    firing = [x for x in lines if x["state"] == "firing"]
    assert firing and firing[0]["signal"] == "technical"
    assert firing[0]["ts"].endswith("+08:00")
    aid = firing[0]["alert_id"]
    got = httpx.get(f"{AM_URL}/api/v2/alerts", params={"filter": f'alert_id="{aid}"'}).json()
    assert got and got[0]["labels"]["alert_id"] == aid
    assert json.loads((tmp_path / "incidents.json").read_text())


def test_live_rejects_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("detector: {bucket: never}\n")
    res = CliRunner().invoke(app, ["live", "--port", "0", "--config", str(bad)], input="")
    assert res.exit_code == 2
    assert "detector.bucket" in res.output
