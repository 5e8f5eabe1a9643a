"""The response desk: lifecycle moves, signed partner statuses, the public status page."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tapshield.respond.partners import body_bytes, signed_headers
from tests.service.test_api import Api, api  # noqa: F401 (the fixture)


def test_lifecycle_moves_need_a_reason_and_follow_the_rules(api: Api) -> None:  # noqa: F811
    r = api("POST", "/v1/respond/incidents/INC-NFC/transition", role="operator",
            json={"to": "acknowledged", "why": "li.wei is on it"})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    r = api("POST", "/v1/respond/incidents/INC-NFC/transition", role="operator",
            json={"to": "postmortem", "why": "too early"})
    assert r.status_code == 409 and "cannot go from acknowledged" in r.json()["detail"]
    assert api("POST", "/v1/respond/incidents/INC-NFC/transition", role="read-only",
               json={"to": "resolved", "why": "x"}).status_code == 403
    assert api("POST", "/v1/respond/incidents/INC-NONE/transition", role="operator",
               json={"to": "resolved", "why": "x"}).status_code == 404
    tl = api("GET", "/v1/respond/incidents/INC-NFC/timeline", role="credit").json()
    moves = [e for e in tl["timeline"] if e["kind"] == "transition"]
    assert [e["what"] for e in moves] == ["acknowledged"]
    assert moves[0]["why"] == "li.wei is on it"
    # the move ran the acknowledge phase (no partner file here: nobody to tell)
    assert [e["why"] for e in tl["timeline"] if e["kind"] == "step"] == [
        "no partner owns this scope"]


def test_partner_status_is_signed_and_applied_once(api: Api, tmp_path: Path,  # noqa: F811
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    partners = tmp_path / "partners.yaml"
    partners.write_text("partners:\n  - {name: unionpay, owns: {channel: nfc}, "
                        "url: 'http://127.0.0.1:9/x', secret: s3cret}\n")
    monkeypatch.setenv("TAPSHIELD_PARTNERS_FILE", str(partners))
    doc = {"incident_id": "INC-NFC", "status": "resolved",
           "message": "our Guangdong node is back", "eta_minutes": 0}
    body = body_bytes(doc)
    now = int(time.time())
    h = signed_headers("s3cret", now, body, "partner-key-1")
    path = "/v1/respond/partners/unionpay/status"
    r = api("POST", path, role=None, content=body, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "resolved"
    again = api("POST", path, role=None, content=body, headers=h)  # a retry
    kinds = [e["kind"] for e in again.json()["timeline"]]
    assert kinds[:2] == ["partner", "transition"] and set(kinds[2:]) == {"step"}
    assert len(kinds) == len(r.json()["timeline"])  # the retry added nothing
    forged = signed_headers("wrong", now, body, "partner-key-2")
    assert api("POST", path, role=None, content=body, headers=forged).status_code == 401
    stale = signed_headers("s3cret", now - 3600, body, "partner-key-3")
    assert api("POST", path, role=None, content=body, headers=stale).status_code == 401
    bad = body_bytes({**doc, "status": "sleeping"})
    r = api("POST", path, role=None, content=bad,
            headers=signed_headers("s3cret", now, bad, "k4"))
    assert r.status_code == 422 and "status" in r.json()["detail"]


def test_status_page_json_html_atom(api: Api) -> None:  # noqa: F811
    doc = api("GET", "/status.json", role=None).json()
    assert doc["status"] == "disrupted"
    ids = [i["id"] for i in doc["incidents"]]
    assert "INC-NFC" in ids
    assert all("u" + "1" not in json.dumps(i["text"]) for i in doc["incidents"])
    page = api("GET", "/status", role=None)
    assert page.status_code == 200 and "FlashPay status" in page.text
    feed = api("GET", "/status.atom", role=None)
    assert feed.headers["content-type"].startswith("application/atom+xml")
    assert "urn:tapshield:incident:INC-NFC" in feed.text


def test_manual_moves_run_their_playbook_phase(api: Api, tmp_path: Path,  # noqa: F811
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Acknowledging and resolving through the API run the phase like the monitor's moves:
    the partner hears of each, resolving queues a follow-up for every customer the case's
    notices reached (in the move's transaction), and a dispatcher delivers them to real
    receivers; resolving again after a reopening queues nothing twice."""
    from datetime import UTC, datetime

    from tapshield.comms.dispatch import Dispatcher
    from tapshield.comms.drill import _vault
    from tapshield.comms.outbox import Outbox
    from tapshield.comms.receivers import LocalHTTP, form_or_json
    from tapshield.comms.senders import AppriseSender, Router, WebhookSender
    from tapshield.respond.partners import Partner, ReplayGuard
    from tapshield.respond.responder import OutboundMessage
    from tapshield.storage import Store

    guard = ReplayGuard()

    def verify(_path: str, headers: dict[str, str], body: bytes) -> str | None:
        try:
            guard.verify("s3cret", headers, body, int(time.time()))
        except Exception as exc:  # the receiver refuses, the test counts it
            return str(exc)
        return None

    partner_rx = LocalHTTP(verify=verify).start()
    gateway = LocalHTTP().start()
    try:
        partners = tmp_path / "partners.yaml"
        partners.write_text("partners:\n  - {name: unionpay, owns: {channel: nfc}, "
                            f"url: '{partner_rx.url}/unionpay', secret: s3cret}}\n")
        monkeypatch.setenv("TAPSHIELD_PARTNERS_FILE", str(partners))
        store = Store(api.url)
        vault = _vault(store.engine, tmp_path / "keys")
        phones = {f"u{i}": f"+86138000000{i:02d}" for i in range(3)}
        told = {u: vault.put("phone", p) for u, p in phones.items()}
        t0 = datetime(2026, 11, 24, 3, 1, tzinfo=UTC)
        ob = Outbox(store.engine)
        # what the automatic response queued when the incident opened
        ob.record([], [OutboundMessage(
            key=f"notice-{u}", kind="notice", incident_id="INC-NFC", case_id="INC-NFC",
            cause="interface", recipient=f"tok-{u}", channel="sms", due_at=t0, wanted_at=t0,
            body="【闪付】您的付款未成功，未扣款。（INC-NFC）", contact_token=tok, language="zh-CN",
            tz="Asia/Shanghai") for u, tok in told.items()])
        path = "/v1/respond/incidents/INC-NFC/transition"
        r = api("POST", path, role="operator", json={"to": "acknowledged", "why": "on it"})
        assert r.status_code == 200, r.text
        steps = [e for e in r.json()["timeline"] if e["kind"] == "step"]
        assert [s["data"]["phase"] for s in steps] == ["acknowledge"]
        assert "unionpay" in steps[0]["why"]
        r = api("POST", path, role="operator",
                json={"to": "resolved", "why": "card network node back"})
        assert r.status_code == 200 and r.json()["state"] == "resolved"
        done = [e for e in r.json()["timeline"] if e["kind"] == "step"
                and e["data"]["phase"] == "resolve"]
        assert any("3 follow-ups queued" in e["why"] for e in done)
        assert all(e["data"]["after"] for e in done)  # who started the phase
        rows = ob.rows()
        followups = [x for x in rows if x["kind"] == "followup"]
        hooks = [x for x in rows if x["kind"] == "webhook"]
        assert sorted(x["contact_token"] for x in followups) == sorted(told.values())
        assert [h["payload"]["event"] for h in hooks] == ["incident.acknowledged",
                                                          "incident.resolved"]
        # reopened and resolved again: the follow-ups' keys are the same, nothing new
        assert api("POST", path, role="operator",
                   json={"to": "open", "why": "wave back"}).status_code == 200
        assert api("POST", path, role="operator",
                   json={"to": "resolved", "why": "over"}).status_code == 200
        assert len([x for x in ob.rows() if x["kind"] == "followup"]) == 3
        # delivered by a dispatcher to real receivers, each once
        sender = Router(AppriseSender({"sms": f"json://127.0.0.1:{gateway.port}/sms?:to={{to}}"},
                                      vault.reveal),
                        WebhookSender({"unionpay": Partner(
                            "unionpay", {"channel": "nfc"}, f"{partner_rx.url}/unionpay",
                            "s3cret")}))
        assert Dispatcher(ob, sender, backoff=0.01, max_backoff=0.1).drain(timeout=60)
        got = [form_or_json(x) for x in gateway.ledger.applied]
        assert sorted(g["to"] for g in got if "恢复" in g["message"]) == sorted(phones.values())
        assert len(got) == 6 and gateway.ledger.repeats == 0
        assert partner_rx.rejected == 0
        assert [json.loads(x.body)["event"] for x in partner_rx.ledger.applied].count(
            "incident.resolved") >= 1
        status = api("GET", "/status.json", role=None).json()
        nfc = next(i for i in status["incidents"] if i["id"] == "INC-NFC")
        assert nfc["status"] == "resolved"
        store.close()
    finally:
        partner_rx.stop()
        gateway.stop()


def test_desk_actions_move_the_response_lifecycle(api: Api) -> None:  # noqa: F811
    """``/v1/incidents/{id}/acknowledge`` and ``/resolve`` (the incident desk) are the same
    moves: the lifecycle follows and the phase runs; a second resolve moves nothing."""
    api("POST", "/v1/incidents/INC-NFC/acknowledge", role="operator", json={})
    tl = api("GET", "/v1/respond/incidents/INC-NFC/timeline", role="operator").json()
    assert tl["state"] == "acknowledged"
    api("POST", "/v1/incidents/INC-NFC/resolve", role="operator", json={})
    tl = api("GET", "/v1/respond/incidents/INC-NFC/timeline", role="operator").json()
    assert tl["state"] == "resolved"
    phases = [e["data"].get("phase") for e in tl["timeline"] if e["kind"] == "step"]
    assert "acknowledge" in phases and "resolve" in phases
    n = len(tl["timeline"])
    api("POST", "/v1/incidents/INC-NFC/resolve", role="operator", json={})
    again = api("GET", "/v1/respond/incidents/INC-NFC/timeline", role="operator").json()
    assert len(again["timeline"]) == n

