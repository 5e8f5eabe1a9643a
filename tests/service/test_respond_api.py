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
    assert [e["what"] for e in tl["timeline"]] == ["acknowledged"]
    assert tl["timeline"][0]["why"] == "li.wei is on it"


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
    assert [e["kind"] for e in again.json()["timeline"]] == ["partner", "transition"]
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
