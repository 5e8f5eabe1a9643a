"""Every privileged action of a service session is on the transparency log, with who
did it, and the log verifies afterwards (issue 18, item 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tapshield.audit.checkpoint import Signer
from tapshield.audit.verify import verify
from tapshield.cli import app as cli
from tapshield.service.app import create_app
from tapshield.service.config import load_settings
from tapshield.storage import Store
from tapshield.storage.audit import SqlAuditStore

from .test_api import incident

ORIGIN = "bank.example/tapshield-audit"


def test_a_session_is_on_the_log_and_verifies(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    signer = Signer.generate(ORIGIN)
    monkeypatch.setenv("TAPSHIELD_AUDIT_SIGNER", signer.skey())
    db = f"sqlite:///{tmp_path / 'svc.db'}"
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(yaml.safe_dump({"database_url": db, "keys_file": "keys.json",
                                   "log_requests": False, "monitor_enabled": False}))
    runner = CliRunner()
    out = runner.invoke(cli, ["keys", "create", "--role", "operator", "--name", "li.na",
                              "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    ops = {"Authorization": f"Bearer {out.output.strip().splitlines()[-1]}"}
    store = Store(db)
    run = store.start_run("analyze")
    inc = incident()
    store.save_incidents(run, [inc])
    store.close()
    with TestClient(create_app(load_settings(cfg))) as c:
        now = datetime.now(UTC)
        sil = c.post("/v1/silences", headers=ops, json={
            "matchers": [{"name": "channel", "value": "nfc"}],
            "ends_at": (now + timedelta(hours=2)).isoformat(), "comment": "NFC maintenance"})
        assert sil.status_code == 201
        assert c.delete(f"/v1/silences/{sil.json()['id']}", headers=ops).status_code == 200
        for action, body in (("acknowledge", {}), ("assign", {"assignee": "payments-oncall"}),
                             ("note", {"note": "partner confirms node failure"}),
                             ("resolve", {})):
            r = c.post(f"/v1/incidents/{inc.id}/{action}", headers=ops, json=body)
            assert r.status_code == 200, r.text
    store = Store(db)
    try:
        audit = SqlAuditStore(store.engine)
        entries = list(audit.entries())
        kinds = [e.kind for e in entries]
        assert kinds == ["apikey.created", "config.loaded", "silence.created", "silence.deleted",
                         "incident.acknowledged", "incident.assigned", "incident.noted",
                         "incident.resolved"]
        assert entries[0].actor.startswith("cli:")
        key_id = entries[0].subject.removeprefix("apikey:")
        people = [e for e in entries if e.kind.startswith(("silence.", "incident."))]
        assert all(e.actor == f"apikey:{key_id} (li.na)" for e in people)
        assert entries[-2].payload["note"] == "partner confirms node failure"
        assert entries[-3].payload["assignee"] == "payments-oncall"
        report = verify(audit, [signer.verifier()], origin=ORIGIN)
        assert report.ok, report.findings
        assert report.unsigned == 0  # the service signed a head at shutdown
    finally:
        store.close()
