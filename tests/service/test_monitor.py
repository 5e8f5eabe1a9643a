"""The live monitor inside the service: ingest, outcomes, incidents, Alertmanager,
silences, and a restart in the middle of an outage (real Alertmanager on 9093)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from fastapi.testclient import TestClient

from tapshield.money import format_fen
from tapshield.service.app import create_app
from tapshield.service.config import ServiceSettings
from tapshield.service.keys import create_key
from tapshield.service.runtime import ServiceRuntime

from ..monitor.synth import Fault, events
from .conftest import settings_for

AM_URL = os.environ.get("TAPSHIELD_TEST_ALERTMANAGER_URL", "http://127.0.0.1:9093")


def wire(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Canonical events as the event contract's JSON (epoch ms, decimal yuan)."""
    out = []
    for r in frame.iter_rows(named=True):
        d = {k: v for k, v in r.items() if v is not None and k != "amount_fen"}
        d["ts"] = int(r["ts"].timestamp() * 1000)
        d["amount"] = format_fen(int(r["amount_fen"]))
        out.append(d)
    return out


@pytest.fixture(scope="module")
def outage() -> pl.DataFrame:
    """40 minutes at 25 events/s; QR fails in Guangdong from minute 15 to 25."""
    return events(2400, rate=25, faults=(
        Fault(900, 1500, {"channel": "qr", "region": "CN-GD"}, "technical", 0.8),), seed=13)


def keys(tmp: Path) -> tuple[dict[str, str], dict[str, str]]:
    g = create_key(tmp / "keys.json", "gateway", name="gw")[1]
    o = create_key(tmp / "keys.json", "operator", name="ops")[1]
    return ({"Authorization": f"Bearer {g}"}, {"Authorization": f"Bearer {o}"})


def caught_up(rt: ServiceRuntime, timeout: float = 120.0) -> None:
    w = rt.watch
    assert w is not None and w.wait_leader(60.0), "no monitor leader"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if w.position >= rt.inbox.position():
            time.sleep(3 * rt.settings.monitor_poll_interval_s)
            for n in w.notifiers:
                n.flush(10.0)
            return
        time.sleep(0.1)
    pytest.fail("the monitor did not catch up with the inbox")


def post(client: TestClient, gw: dict[str, str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = {"accepted": 0, "rejected": 0}
    for i in range(0, len(rows), 5000):
        r = client.post("/v1/events", headers=gw, json=rows[i:i + 5000])
        assert r.status_code == 200, r.text
        for k in out:
            out[k] += r.json()[k]
    return out


def am_alerts(instance: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{AM_URL}/api/v2/alerts", params={"filter": f'instance="{instance}"'},
                  timeout=5)
    r.raise_for_status()
    got: list[dict[str, Any]] = r.json()
    return got


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceSettings]:
    """On SQLite (file lock) and on the real PostgreSQL (advisory lock, own schema)."""
    ns = f"t-{uuid.uuid4().hex[:10]}"
    url = (f"sqlite:///{tmp_path / 'svc.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_schema_url")))
    yield settings_for(url, tmp_path, alertmanager=[AM_URL],
                       redis_namespace=ns, monitor_poll_interval_s=0.1,
                       heartbeat_interval_s=60.0, public_url="http://tapshield.test:8080")


def test_events_ingest_rejects_row_by_row(tmp_path: Path) -> None:
    s = settings_for(f"sqlite:///{tmp_path / 'svc.db'}", tmp_path)
    gw, ops = keys(tmp_path)
    rows = wire(events(20, rate=5, seed=3))
    bad = dict(rows[1], amount="12.345")
    rows_sent = [rows[0], bad, {"nonsense": 1}, rows[0], *rows[2:]]
    with TestClient(create_app(s)) as c:
        r = c.post("/v1/events", headers=gw, json=rows_sent)
        assert r.status_code == 200
        doc = r.json()
        assert doc["accepted"] == len(rows) - 1
        got = {(e["row"], e["column"]) for e in doc["rejects"]}
        assert (2, "amount") in got and (3, "nonsense") in got and (4, "event_id") in got
        assert "12.345" not in r.text  # values are not echoed back
        # NDJSON, and a resend of the same events: each counted once
        nd = "\n".join(json.dumps(x) for x in rows[2:5])
        r = c.post("/v1/events", headers={**gw, "Content-Type": "application/x-ndjson"},
                   content=nd)
        assert r.json()["accepted"] == 0
        assert {e["rule"] for e in r.json()["rejects"]} == {"duplicate_event_id"}
        assert c.post("/v1/events", headers=ops, json=rows[:1]).status_code == 403
        r = c.post("/v1/events", headers=gw, content=b"{")  # an NDJSON line that is not JSON
        assert r.json()["rejects"] == [{"row": 1, "column": "*", "rule": "json_object"}]
        assert c.post("/v1/events", headers=gw, content=b"[\xff]").status_code == 422


@pytest.mark.alertmanager
def test_restart_mid_outage_keeps_the_incident_and_does_not_page_again(
        settings: ServiceSettings, tmp_path: Path, outage: pl.DataFrame) -> None:
    gw, ops = keys(tmp_path)
    httpx.get(f"{AM_URL}/api/v2/status", timeout=5).raise_for_status()
    rows = wire(outage)
    cut = next(i for i, r in enumerate(rows) if r["ts"] >= int(
        (outage["ts"][0].timestamp() + 1200) * 1000))  # 5 minutes into the outage
    with TestClient(create_app(settings)) as c:
        rt: ServiceRuntime = c.app.state.runtime  # type: ignore[attr-defined]
        assert post(c, gw, rows[:cut])["accepted"] == cut
        caught_up(rt)
        open_ = c.get("/v1/incidents", headers=ops, params={"status": "open"}).json()
        assert open_["total"] >= 1, c.get("/v1/alerts", headers=ops).json()
        inc = open_["items"][0]["incident"]
        assert inc["id"].startswith("LIVE-")
        assert {"channel": "qr", "region": "CN-GD"} in inc["scope"] or any(
            s.get("channel") == "qr" for s in inc["scope"])
        alerts = c.get("/v1/alerts", headers=ops, params={"incident_id": inc["id"]}).json()
        paged = [a for a in alerts["items"] if a["notify"] and a["state"] == "firing"]
        assert len(paged) == 1
        alert_id = paged[0]["alert_id"]
        # Alertmanager holds the wave with its diagnosis, and the heartbeat
        am = am_alerts(settings.redis_namespace)
        wave = [a for a in am if a["labels"].get("alert_id") == alert_id]
        assert wave, am
        lab, ann = wave[0]["labels"], wave[0]["annotations"]
        assert lab["severity"] in ("critical", "warning") and lab["level"] in "123"
        for k in ("cause", "confidence", "scope", "evidence", "failed_payments",
                  "lost_amount", "runbook_url"):
            assert k in ann, ann
        assert wave[0]["generatorURL"] == f"http://tapshield.test:8080/v1/incidents/{inc['id']}"
        assert any(a["labels"]["alertname"] == "TapshieldWatchdog" for a in am)
        pages_before = rt.watch.pages if rt.watch else 0
    # SIGTERM-equivalent: the lifespan ended, the monitor checkpointed

    t0 = time.perf_counter()
    with TestClient(create_app(settings)) as c:
        rt = c.app.state.runtime  # type: ignore[attr-defined]
        assert rt.watch is not None and rt.watch.wait_leader(60.0)
        ready_s = time.perf_counter() - t0
        assert rt.watch.restored, "the monitor did not resume from its checkpoint"
        still = c.get(f"/v1/incidents/{inc['id']}", headers=ops).json()
        assert still["status"] == "open"
        assert post(c, gw, rows[cut:])["accepted"] == len(rows) - cut
        caught_up(rt)
        alerts = c.get("/v1/alerts", headers=ops, params={"alert_id": alert_id}).json()
        states = [a["state"] for a in alerts["items"]]
        assert [a for a in alerts["items"] if a["notify"] and a["state"] == "firing"
                ] == paged, "paged again after the restart"
        assert "resolved" in states
        assert rt.watch.pages == pages_before
        done = c.get(f"/v1/incidents/{inc['id']}", headers=ops).json()
        assert done["status"] == "closed"
        # no second incident for the same wave
        assert c.get("/v1/incidents", headers=ops).json()["total"] == open_["total"]
        gone = [a for a in am_alerts(settings.redis_namespace)
                if a["labels"].get("alert_id") == alert_id]
        assert not gone, gone
    print(f"time to ready after restart: {ready_s:.2f} s")


def test_runtime_silence_suppresses_new_waves(tmp_path: Path, outage: pl.DataFrame) -> None:
    s = settings_for(f"sqlite:///{tmp_path / 'svc.db'}", tmp_path, monitor_poll_interval_s=0.1)
    gw, ops = keys(tmp_path)
    rows = wire(outage)
    with TestClient(create_app(s)) as c:
        rt: ServiceRuntime = c.app.state.runtime  # type: ignore[attr-defined]
        now = datetime.now(UTC)
        r = c.post("/v1/silences", headers=ops, json={
            "matchers": [{"name": "region", "value": "CN-G.", "is_regex": True}],
            "ends_at": (now + timedelta(hours=1)).isoformat(), "comment": "planned work"})
        assert r.status_code == 201
        post(c, gw, rows[: len(rows) * 3 // 5])
        caught_up(rt)
        alerts = c.get("/v1/alerts", headers=ops).json()["items"]
        gd = [a for a in alerts if a["slice"].get("region") == "CN-GD"]
        assert gd and all(a["state"] == "suppressed" and not a["notify"] for a in gd)
        assert "planned work" in gd[0]["figures"]["suppressed_by"]
        # the leader's monitor metrics are on /metrics, and still pass promtool
        text = c.get("/metrics").text
        assert "tapshield_event_time_seconds" in text and "tapshield_open_alerts" in text
        assert "tapshield_latency_seconds_bucket" in text
        promtool = shutil.which("promtool")
        assert promtool is not None, "promtool not installed (scripts/services)"
        out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             text=True)
        assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), (
            out.stdout + out.stderr)


def test_impact_values_a_portfolio_against_stored_incidents(tmp_path: Path,
                                                          outage: pl.DataFrame) -> None:
    from tapshield.impact.portfolio import write_portfolio
    from tapshield.simulate.portfolio import generate_portfolio
    from tapshield.storage import Store

    from .test_api import incident

    s = settings_for(f"sqlite:///{tmp_path / 'svc.db'}", tmp_path, monitor_enabled=False)
    gw, ops = keys(tmp_path)
    credit = {"Authorization": f"Bearer {create_key(tmp_path / 'keys.json', 'credit')[1]}"}
    t0 = outage["ts"][0]
    inc = incident(start=t0 + timedelta(seconds=900), end=t0 + timedelta(seconds=1500),
                   detected_at=t0 + timedelta(seconds=960),
                   scope=[{"channel": "qr", "region": "CN-GD"}])
    store = Store(s.database_url or "")
    store.save_incidents(store.start_run("analyze"), [inc])
    store.close()
    book = tmp_path / "book.csv"
    write_portfolio(generate_portfolio(outage, seed=4, borrower_share=0.5), book)
    with TestClient(create_app(s)) as c:
        post(c, gw, wire(outage))
        r = c.post("/v1/impact", headers={**credit, "Content-Type": "text/csv"},
                   content=book.read_bytes())
        assert r.status_code == 200, r.text
        doc = r.json()
        assert [i["id"] for i in doc["incidents"]] == [inc.id]
        assert doc["summary"] and doc["portfolio_rejects"] == []
        assert c.post("/v1/impact", headers={**ops, "Content-Type": "text/csv"},
                      content=book.read_bytes()).status_code == 403
        bad = c.post("/v1/impact", headers={**credit, "Content-Type": "text/csv"},
                     content=b"\xff\xfe")
        assert bad.status_code == 422
        assert c.post("/v1/impact", headers={**credit, "Content-Type": "text/csv"},
                      params={"incident_id": "nope"}, content=book.read_bytes()
                      ).status_code == 404
