"""The HTTP API in process (FastAPI's TestClient runs the real app and its lifespan)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tapshield.incident import Incident
from tapshield.service.app import create_app
from tapshield.service.config import DecisionRule, DecisionSettings, LimitSettings, RateLimit
from tapshield.service.keys import create_key
from tapshield.service.logs import JsonFormatter
from tapshield.storage import Store

from .conftest import settings_for

ROLES = ("gateway", "operator", "risk", "credit", "read-only")
BOTH = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite unless a test asks for both backends (BOTH): the HTTP layer is the
    same on both; the queries that differ run on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'svc.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


def body(**kw: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"payment_id": uuid.uuid4().hex, "attempt_id": uuid.uuid4().hex,
                         "user_id": "user-secret-42", "device_id": "d1", "merchant_id": "m1",
                         "amount": "128.50", "region": "CN-GD"}
    b.update(kw)
    return b


def incident(**kw: Any) -> Incident:
    base = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    data: dict[str, Any] = {
        "id": f"INC-{uuid.uuid4().hex[:10]}", "start": base,
        "detected_at": base + timedelta(seconds=50), "level": 1,
        "scope": [{"channel": "nfc", "region": "CN-GD"}], "cause": "interface",
        "confidence": 0.82, "evidence": ["91/96 on nfc in CN-GD"], "failed_attempts": 90,
        "failed_payments": 60, "affected_users": 55, "affected_merchants": 20,
        "lost_fen": 794712}
    data.update(kw)
    return Incident(**data)


class Api:
    def __init__(self, client: TestClient, keys: dict[str, str], url: str) -> None:
        self.c = client
        self.keys = keys
        self.url = url

    def __call__(self, method: str, path: str, role: str | None = "gateway",
                 **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}))
        if role is not None:
            headers["Authorization"] = f"Bearer {self.keys[role]}"
        return self.c.request(method, path, headers=headers, **kw)


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    rules = DecisionSettings(rules=[
        DecisionRule(name="big_ticket", decision="step_up", reason="amount of 5,000 or more",
                     amount_at_least="5000.00")])
    limits = LimitSettings(max_body_bytes=4096, rate_limits={
        "credit": RateLimit(per_second=0.5, burst=2)})
    st = settings_for(db_url, tmp_path, decision=rules, limits=limits)
    keys = {r: create_key(st.keys_file, r)[1] for r in ROLES}
    keys["partner"] = create_key(st.keys_file, "partner", partner={"channel": "qr"})[1]
    store = Store(db_url)
    run = store.start_run("analyze", "test")
    store.save_incidents(run, [incident(id="INC-NFC"), incident(
        id="INC-QR", level=3, scope=[{"channel": "qr"}], end=datetime(2026, 11, 24, 4, 0,
                                                                      tzinfo=UTC))])
    store.append_alerts(run, [{"alert_id": "al-1", "incident_id": "INC-NFC",
                               "ts": "2026-11-24T11:00:50.000+08:00", "state": "firing",
                               "level": 1}])
    store.close()
    with TestClient(create_app(st)) as client:
        yield Api(client, keys, db_url)


def test_access_is_by_role(api: Api) -> None:
    r = api("POST", "/v1/authorize", role=None, json=body())
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["code"] == "missing_key"
    r = api("POST", "/v1/authorize", role=None, json=body(),
            headers={"Authorization": "Bearer tsk_0000000000_nope"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_key"
    for role in ("operator", "risk", "credit", "partner", "read-only"):
        assert api("POST", "/v1/authorize", role=role, json=body()).status_code == 403
    assert api("POST", "/v1/silences", role="gateway", json={}).status_code == 403
    assert api("GET", "/v1/alerts", role="partner").status_code == 403
    for role in ("gateway", "operator", "risk", "credit", "read-only"):
        assert api("GET", "/v1/channels/health", role=role).status_code == 200, role


BAD = [({"amount": "12.345"}, "amount"), ({"amount": "1e3"}, "amount"),
       ({"amount": -1}, "amount"), ({"amount": True}, "amount"),
       ({"region": "guangdong"}, "region"), ({"user_id": "u" * 129}, "user_id"),
       ({"user_id": "用" * 43}, "user_id"), ({"channels": ["n f c"]}, "channels"),
       ({"surprise": 1}, "surprise")]


def test_bad_requests_get_422_naming_the_field(api: Api) -> None:
    for change, field in BAD:
        r = api("POST", "/v1/authorize", json=body(**change))
        assert r.status_code == 422, change
        assert any(field in e["loc"] for e in r.json()["detail"]), (change, r.json())
        assert all("input" not in e for e in r.json()["detail"])  # nothing echoed back
    b = body()
    del b["user_id"]
    r = api("POST", "/v1/authorize", json=b)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "user_id"]


def test_garbage_never_gets_a_500(api: Api) -> None:
    for content in (b"{", b"[]", b"null", b"\xff\xfe", b'{"amount": NaN}'):
        r = api("POST", "/v1/authorize", content=content,
                headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (content, r.status_code)
    r = api("POST", "/v1/attempts/x/result", json={"outcome": "approved", "response_code": "05"})
    assert r.status_code == 422 and "approval code" in r.text
    r = api("POST", "/v1/attempts/x/result", json={"outcome": "failed", "latency_ms": -1})
    assert r.status_code == 422
    assert api("GET", "/v1/nowhere").status_code == 404
    assert api("GET", "/v1/incidents?since=2026-11-24T00:00:00", role="operator"
               ).status_code == 422  # a time without its zone is ambiguous


@BOTH
def test_authorize_decides_routes_and_replays(api: Api) -> None:
    b = body()
    r = api("POST", "/v1/authorize", json=b)
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    ans = r.json()
    assert ans["decision"] == "approve" and ans["channel"] == "nfc" and ans["deadline_ms"] > 0
    again = api("POST", "/v1/authorize", json=b)
    assert again.content == r.content and again.headers["idempotent-replayed"] == "true"
    big = api("POST", "/v1/authorize", json=body(amount=5000)).json()
    assert big["decision"] == "step_up" and big["channel"] == "nfc"
    assert big["reasons"] == ["big_ticket: amount of 5,000 or more"]
    r = api("POST", "/v1/authorize", json=body(payment_id=b["payment_id"]))
    assert r.status_code == 409 and r.json()["code"] == "attempt_pending"
    res = api("POST", f"/v1/attempts/{b['attempt_id']}/result",
              json={"outcome": "approved", "response_code": "00", "latency_ms": 240})
    assert res.status_code == 200 and res.json()["tap_status"] == "approved"
    assert api("POST", "/v1/attempts/nope/result", json={"outcome": "failed"}).status_code == 404


def test_a_dead_channel_is_eliminated_probed_and_readmitted(api: Api) -> None:
    for _ in range(6):
        b = body(region="CN-GX")
        api("POST", "/v1/authorize", json=b)
        api("POST", f"/v1/attempts/{b['attempt_id']}/result",
            json={"outcome": "failed", "response_code": "91", "latency_ms": 90})
    health = api("GET", "/v1/channels/health").json()
    gx = {(k["channel"], k["region"]): k for k in health["keys"]}
    assert gx[("nfc", "CN-GX")]["state"] == "eliminated"
    assert gx[("nfc", "CN-GX")]["eliminated_since"] is not None
    assert api("POST", "/v1/authorize", json=body(region="CN-GX")).json()["channel"] == "qr"
    rt = api.c.app.state.runtime  # type: ignore[attr-defined]
    import time

    later = time.time() + 2.0
    probes = rt.router.due_probes(later)
    assert ("nfc", "CN-GX") in {(p.channel, p.region) for p in probes}
    r = api("POST", "/v1/probes/results",
            json={"results": [{"channel": "nfc", "region": "CN-GX", "ok": True}] * 12})
    assert r.json() == {"accepted": 12}
    health = api("GET", "/v1/channels/health").json()
    assert {(k["channel"], k["region"]): k["state"] for k in health["keys"]}[
        ("nfc", "CN-GX")] == "trial"
    assert api("GET", "/v1/probes/due").status_code == 200


def test_limits(api: Api) -> None:
    r = api("POST", "/v1/authorize", content=b"{" + b" " * 5000 + b"}",
            headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    r = api("POST", "/v1/authorize", content=chunks(),
            headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    codes = [api("GET", "/v1/incidents", role="credit").status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[-1] == 429
    r = api("GET", "/v1/incidents", role="credit")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_request_ids_and_logs_without_personal_data(api: Api,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    api.c.app.state.runtime.settings = api.c.app.state.runtime.settings  # type: ignore
    with caplog.at_level(logging.INFO, logger="tapshield.service.http"):
        r = api("POST", "/v1/authorize", json=body(), headers={"X-Request-ID": "gw-123.4"})
        bad = api("POST", "/v1/authorize", json=body(), headers={"X-Request-ID": "no spaces!"})
    assert r.headers["x-request-id"] == "gw-123.4"
    rid = bad.headers["x-request-id"]
    assert rid != "no spaces!" and len(rid) >= 13 and rid.isalnum()


def test_json_log_lines_carry_no_personal_data(db_url: str, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    st = settings_for(db_url, tmp_path).model_copy(update={"log_requests": True})
    key = create_key(st.keys_file, "gateway")[1]
    b = body()
    with TestClient(create_app(st)) as c, caplog.at_level(logging.INFO):
        c.post("/v1/authorize", json=b, headers={"Authorization": f"Bearer {key}",
                                                   "X-Request-ID": "rid-1"})
    fmt = JsonFormatter()
    lines = [json.loads(fmt.format(rec)) for rec in caplog.records]
    req = [x for x in lines if x.get("msg") == "request"]
    assert req and req[-1]["request_id"] == "rid-1" and req[-1]["route"] == "/v1/authorize"
    assert req[-1]["status"] == 200 and req[-1]["key_id"] == key.split("_")[1]
    text = "\n".join(json.dumps(x) for x in lines)
    for secret in (b["user_id"], b["payment_id"], b["attempt_id"], "128.50", key):
        assert secret not in text


@BOTH
def test_silences(api: Api) -> None:
    end = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = api("POST", "/v1/silences", role="operator", json={
        "matchers": [{"name": "channel", "value": "wallet"},
                     {"name": "region", "value": "CN-(GD|GX)", "is_regex": True}],
        "ends_at": end, "comment": "wallet partner maintenance"})
    assert r.status_code == 201, r.text
    sil = r.json()
    assert sil["status"] == "active" and sil["created_by"].startswith(api.keys["operator"][4:14])
    assert api("GET", f"/v1/silences/{sil['id']}", role="read-only").json()["id"] == sil["id"]
    assert sil["id"] in [s["id"] for s in api("GET", "/v1/silences", role="risk").json()["items"]]
    rt = api.c.app.state.runtime  # type: ignore[attr-defined]
    active = rt.silences.active()
    assert active[0].mutes({"channel": "wallet", "region": "CN-GX"}, datetime.now(UTC))
    assert not active[0].mutes({"channel": "wallet", "region": "CN-BJ"}, datetime.now(UTC))
    gone = api("DELETE", f"/v1/silences/{sil['id']}", role="operator").json()
    assert gone["status"] == "expired"
    assert api("GET", "/v1/silences?include_expired=false", role="operator").json()["items"] == []
    assert api("DELETE", "/v1/silences/nope", role="operator").status_code == 404
    for bad in ({"matchers": [], "ends_at": end, "comment": "x"},
                {"matchers": [{"name": "a", "value": "(", "is_regex": True}], "ends_at": end,
                 "comment": "x"},
                {"matchers": [{"name": "a", "value": "b"}], "comment": "x",
                 "ends_at": "2020-01-01T00:00:00Z"},
                {"matchers": [{"name": "a", "value": "b"}], "comment": "x",
                 "ends_at": "2999-01-01T00:00:00"}):
        assert api("POST", "/v1/silences", role="operator", json=bad).status_code == 422, bad


@BOTH
def test_incidents_alerts_and_actions(api: Api) -> None:
    page = api("GET", "/v1/incidents", role="operator").json()
    assert (page["total"] == 2 and [i["incident"]["id"] for i in page["items"]] == [
        "INC-QR", "INC-NFC"]) or {i["incident"]["id"] for i in page["items"]} == {
        "INC-QR", "INC-NFC"}
    assert [i["incident"]["id"] for i in
            api("GET", "/v1/incidents?status=open", role="read-only").json()["items"]] == [
        "INC-NFC"]
    assert api("GET", "/v1/incidents?level=2", role="risk").json()["total"] == 1
    one = api("GET", "/v1/incidents/INC-NFC", role="credit").json()
    assert one["incident"]["lost_amount"] == "7947.12" and one["status"] == "open"
    assert api("GET", "/v1/incidents/INC-NONE", role="operator").status_code == 404
    op = api.keys["operator"][4:14]
    api("POST", "/v1/incidents/INC-NFC/acknowledge", role="operator", json={})
    api("POST", "/v1/incidents/INC-NFC/assign", role="operator", json={"assignee": "li.wei"})
    api("POST", "/v1/incidents/INC-NFC/note", role="operator",
        json={"note": "card network confirms node failure in Guangzhou"})
    done = api("POST", "/v1/incidents/INC-NFC/resolve", role="operator", json={}).json()
    h = done["handling"]
    assert h["acknowledged_by"] == op and h["assignee"] == "li.wei" and h["notes"] == 1
    assert h["resolved_by"] == op and h["resolved_at"] is not None
    assert [a["action"] for a in done["actions"]] == ["acknowledge", "assign", "note", "resolve"]
    assert api("POST", "/v1/incidents/INC-NFC/note", role="read-only",
               json={"note": "x"}).status_code == 403
    assert api("POST", "/v1/incidents/INC-NONE/note", role="operator",
               json={"note": "x"}).status_code == 404
    # A partner bound to channel=qr sees its incident only.
    mine = api("GET", "/v1/incidents", role="partner").json()
    assert [i["incident"]["id"] for i in mine["items"]] == ["INC-QR"] and mine["total"] == 1
    assert api("GET", "/v1/incidents/INC-NFC", role="partner").status_code == 404
    alerts = api("GET", "/v1/alerts?incident_id=INC-NFC", role="operator").json()
    assert alerts["total"] == 1 and alerts["items"][0]["alert_id"] == "al-1"


@BOTH
def test_health_readiness_and_metrics(api: Api, tmp_path: Path) -> None:
    assert api("GET", "/healthz", role=None).json() == {"status": "ok"}
    ready = api("GET", "/readyz", role=None)
    assert ready.status_code == 200 and ready.json()["checks"]["database"]
    api("POST", "/v1/authorize", json=body())
    text = api("GET", "/metrics", role=None).text
    for name in ("tapshield_http_requests_total", "tapshield_http_request_duration_seconds_bucket",
                 "tapshield_authorize_decisions_total", "tapshield_route_key_score",
                 "process_cpu_seconds_total", "tapshield_tapbook_batch_duration_seconds_count",
                 "tapshield_ready 1.0", "tapshield_build_info"):
        assert name in text, name
    assert 'route="/v1/authorize"' in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not installed (Debian package prometheus; scripts/services)")
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                         text=True)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), (
        out.stdout + out.stderr)
