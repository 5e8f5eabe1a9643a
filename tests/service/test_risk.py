"""The risk engine behind POST /v1/authorize: rules only or a trained model, with
restrictions (shared through the database, on the audit log) and step-up results."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tapshield.risk import synth
from tapshield.risk.model import STATE_FILE, TrainConfig, train
from tapshield.service.app import create_app
from tapshield.service.config import RiskSettings
from tapshield.service.keys import create_key
from tapshield.storage import Store
from tapshield.storage.audit import SqlAuditStore

from .conftest import settings_for

RULES = """
version: rules-test-1
rules:
  - id: big-ticket
    when: "amount > 5000"
    action: step_up
    reason: BIG_TICKET
lists:
  deny: {device_id: [d-farm-01]}
"""


def tap(**kw: Any) -> dict[str, Any]:
    p = uuid.uuid4().hex
    b = {"payment_id": p, "attempt_id": p + "-1", "user_id": "u-1", "device_id": "d-1",
         "merchant_id": "m-1", "amount": "20.00", "region": "CN-GD"}
    return {**b, **kw}


def client_for(tmp_path: Path, risk: RiskSettings) -> tuple[TestClient, dict[str, str]]:
    s = settings_for(f"sqlite:///{tmp_path / 'svc.db'}", tmp_path, risk=risk,
                     monitor_enabled=False)
    k = {r: {"Authorization": f"Bearer {create_key(tmp_path / 'keys.json', r)[1]}"}
         for r in ("gateway", "risk", "operator")}
    return TestClient(create_app(s)), k


def test_rules_only_engine_decides_with_reasons_and_restrictions(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    c, k = client_for(tmp_path, RiskSettings(rules_file=rules))
    with c:
        a = c.post("/v1/authorize", headers=k["gateway"], json=tap()).json()
        assert a["decision"] == "approve"
        assert a["decision_version"] == "rules:rules-test-1+model:none"
        a = c.post("/v1/authorize", headers=k["gateway"], json=tap(device_id="d-farm-01")).json()
        assert a["decision"] == "decline" and a["reasons"] == ["DENY_LIST_DEVICE"]
        assert a["channel"] is None
        big = tap(amount="8000.00")
        a = c.post("/v1/authorize", headers=k["gateway"], json=big).json()
        assert a["decision"] == "step_up" and "BIG_TICKET" in a["reasons"] and a["channel"]
        r = c.post(f"/v1/attempts/{big['attempt_id']}/result", headers=k["gateway"],
                   json={"outcome": "approved", "response_code": "00", "step_up_passed": True})
        assert r.status_code == 200
        # a restriction: declines the account until lifted; risk role only; on the log
        until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        body = {"kind": "user", "id": "u-9", "action": "decline", "until": until,
                "reason": "case 4411"}
        assert c.post("/v1/risk/restrictions", headers=k["gateway"], json=body
                      ).status_code == 403
        assert c.post("/v1/risk/restrictions", headers=k["risk"], json=body).status_code == 201
        a = c.post("/v1/authorize", headers=k["gateway"], json=tap(user_id="u-9")).json()
        assert a["decision"] == "decline" and "RESTRICTED_USER" in a["reasons"]
        got = c.get("/v1/risk/restrictions", headers=k["operator"]).json()["items"]
        assert [(x["kind"], x["id"], x["action"]) for x in got] == [("user", "u-9", "decline")]
        assert c.delete("/v1/risk/restrictions/user/u-9", headers=k["risk"]).status_code == 200
        assert c.delete("/v1/risk/restrictions/user/u-9", headers=k["risk"]).status_code == 404
        a = c.post("/v1/authorize", headers=k["gateway"], json=tap(user_id="u-9")).json()
        assert a["decision"] == "approve"
        lab = {"labels": [{"event_id": big["payment_id"], "label": 1,
                           "reported_at": datetime.now(UTC).isoformat()}]}
        assert c.post("/v1/risk/labels", headers=k["risk"], json=lab).json() == {"accepted": 1}
    store = Store(f"sqlite:///{tmp_path / 'svc.db'}")
    try:
        entries = list(SqlAuditStore(store.engine).entries())
    finally:
        store.close()
    risk = [e for e in entries if e.kind.startswith("risk.")]
    assert [e.kind for e in risk] == ["risk.restricted", "risk.lifted"]
    assert all("u-9" not in e.subject for e in risk)  # a masked id, not the raw one
    assert entries[0].kind == "config.loaded"
    assert entries[0].payload["decision_version"] == "rules:rules-test-1+model:none"


def test_trained_model_answers_authorize(tmp_path: Path) -> None:
    req, lab = synth.generate(n_users=300, days=20, seed=3)
    res = train(req, lab, config=TrainConfig(max_rounds=30, early_stopping=10, num_leaves=7,
                                             threads=1))
    d = tmp_path / "model"
    res.model.save(d)
    res.state.snapshot(d / STATE_FILE)
    c, k = client_for(tmp_path, RiskSettings(model_dir=d))
    with c:
        a = c.post("/v1/authorize", headers=k["gateway"], json=tap()).json()
        assert a["decision"] in ("approve", "step_up", "decline")
        assert a["decision_version"].endswith(f"model:{res.model.version}")


def test_without_the_engine_risk_routes_say_so(tmp_path: Path) -> None:
    s = settings_for(f"sqlite:///{tmp_path / 'svc.db'}", tmp_path, monitor_enabled=False)
    key = create_key(tmp_path / "keys.json", "risk")[1]
    with TestClient(create_app(s)) as c:
        r = c.get("/v1/risk/restrictions", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 409 and r.json()["code"] == "risk_engine_off"


@pytest.fixture(autouse=True)
def _no_signer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAPSHIELD_AUDIT_SIGNER", raising=False)
