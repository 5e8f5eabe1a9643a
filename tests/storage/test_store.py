"""The store on both backends: SQLite (default) and a real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tapshield.incident import Incident
from tapshield.storage import Store, default_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'ts.db'}")
    else:
        s = Store(request.getfixturevalue("pg_url"))
    yield s
    s.close()


def _incident(run: str, **kw: object) -> Incident:
    base = datetime(2026, 11, 11, 12, 0, tzinfo=UTC)
    data: dict[str, object] = {
        "id": f"INC-{uuid.uuid4().hex[:10]}", "start": base,
        "detected_at": base + timedelta(seconds=40), "level": 2,
        "scope": [{"channel": "nfc", "region": "CN-GD"}], "cause": "interface",
        "confidence": 0.9, "evidence": ["91/96 codes 38x baseline"], "failed_attempts": 10,
        "failed_payments": 7, "affected_users": 6, "affected_merchants": 3, "lost_fen": 123456,
    }
    data.update(kw)
    return Incident(**data)  # type: ignore[arg-type]


def test_migrations_are_idempotent(store: Store) -> None:
    store.migrate()
    store.migrate()


def test_run_incident_and_alert_round_trip(store: Store) -> None:
    run = store.start_run("analyze", "events.csv")
    inc = _incident(run)
    store.save_incidents(run, [inc])
    inc.level = 1
    inc.end = inc.start + timedelta(minutes=9)
    store.save_incidents(run, [inc])  # an update, not a second row
    got = store.incidents(run)
    assert got == [inc]
    assert got[0].start.tzinfo is not None
    store.append_alerts(run, [
        {"alert_id": "a1", "ts": "2026-11-11T20:00:40.000+08:00", "state": "firing", "level": 2},
        {"alert_id": "a1", "ts": "2026-11-11T20:09:00.000+08:00", "state": "resolved",
         "level": 2},
    ])
    assert [a["state"] for a in store.alerts(run)] == ["firing", "resolved"]
    store.finish_run(run, status="ok", read=10, accepted=9, rejected=1, summary={"x": 1})
    row = store.run(run)
    assert row is not None and row["status"] == "ok" and row["events_rejected"] == 1
    assert row["finished_at"] >= row["started_at"]


def test_naive_datetimes_are_refused(store: Store) -> None:
    run = store.start_run("analyze")
    inc = _incident(run, start=datetime(2026, 11, 11, 12, 0))
    with pytest.raises(Exception, match="aware"):
        store.save_incidents(run, [inc])


def test_default_url_prefers_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TAPSHIELD_DB_URL", raising=False)
    assert default_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'tapshield.db'}"
    monkeypatch.setenv("TAPSHIELD_DB_URL", "postgresql://x@y/z")
    assert default_url(tmp_path) == "postgresql://x@y/z"
