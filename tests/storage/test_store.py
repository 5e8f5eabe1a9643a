"""The store on both backends: SQLite (default) and a real PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
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


def test_two_runs_keep_their_own_incidents(store: Store) -> None:
    """Incident ids restart with each run: a second run must not take the first's."""
    first = store.start_run("analyze", "events.csv")
    second = store.start_run("analyze", "events.csv")
    a = _incident(first, id="INC-0001")
    b = _incident(second, id="INC-0001", level=1)
    store.save_incidents(first, [a])
    store.save_incidents(second, [b])
    store.save_incidents(second, [b])  # an update of the second run's copy only
    assert store.incidents(first) == [a]
    assert store.incidents(second) == [b]


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_a_killed_run_is_marked_at_the_next_start(store: Store) -> None:
    from sqlalchemy import update

    from tapshield.storage import tables as t

    dead = store.start_run("analyze", "events.csv")
    alive = store.start_run("analyze", "events.csv")  # this process: still running
    with store.engine.begin() as conn:
        conn.execute(update(t.runs).where(t.runs.c.id == dead).values(pid=_dead_pid()))
    store.start_run("analyze", "other.csv")
    got = store.run(dead)
    assert got is not None and got["status"] == "killed" and got["finished_at"] is not None
    still = store.run(alive)
    assert still is not None and still["status"] == "running"


_START = """
import sys
from tapshield.storage import Store
s = Store(sys.argv[1])
run = s.start_run("analyze", "x")
print(run)
"""


def test_processes_starting_at_once_migrate_one_at_a_time(pg_url: str) -> None:
    """Four processes start against one empty PostgreSQL database at the same time."""
    import sqlalchemy as sa

    name = f"tapshield_mig_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    url = sa.engine.make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        procs = [subprocess.Popen([sys.executable, "-c", _START, url], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], [e for _, e in outs]
        s = Store(url, migrate=False)
        with s.engine.connect() as conn:
            versions = conn.execute(sa.text("select version_num from alembic_version")).all()
            runs = conn.execute(sa.text("select count(*) from runs")).scalar_one()
        s.close()
        assert runs == 4
        assert len(versions) == 1
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


def test_upgrade_keeps_the_incidents_of_an_older_database(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    import tapshield.storage.store as st

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(st._MIGRATIONS))
    eng = create_engine(url)
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003_trust")
        conn.execute(text("insert into runs (id, command, started_at, status, events_read, "
                          "events_accepted, events_rejected) values ('r1', 'analyze', "
                          "'2026-11-11 12:00:00', 'ok', 0, 0, 0)"))
    eng.dispose()
    old = Store(url, migrate=False)
    inc = _incident("r1", id="INC-0001")
    with old.engine.begin() as conn:
        conn.execute(text("insert into incidents select :id, 'r1', '2026-11-11 12:00:00', null, "
                          "'2026-11-11 12:00:40', 2, 'interface', 0.9, 10, 7, 6, 3, 123456, :doc"),
                     {"id": inc.id, "doc": json.dumps(inc.to_dict())})
    old.close()
    s = Store(url)
    assert s.incidents("r1") == [inc]
    s.close()


_MIGRATE_KILLED_AT = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from tapshield.storage import Store

stop_at, seen = int(sys.argv[2]), [0]

@event.listens_for(Engine, "before_cursor_execute")
def count(conn, cursor, statement, params, context, executemany):
    seen[0] += 1
    if seen[0] == stop_at:  # a real kill -9, just before the statement runs
        os.kill(os.getpid(), signal.SIGKILL)

Store(sys.argv[1]).close()
print(seen[0])
"""


def _schema(path: Path) -> list[tuple[str, str]]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("select name, sql from sqlite_master where sql is not null"))
    finally:
        conn.close()


def test_a_start_killed_during_the_sqlite_migration_leaves_a_database_that_opens(
    tmp_path: Path,
) -> None:
    """Regression (the random kill test's failure): the first ``analyze`` into a
    folder, killed while it created the SQLite schema, left tables without their
    Alembic version (sqlite3 committed each ``CREATE TABLE`` on its own), and
    every later start failed with "table runs already exists". Killed before any
    statement of the migration, the next start migrates to the same schema."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    clean = tmp_path / "clean.db"
    seen: list[str] = []

    def count(*args: object) -> None:
        seen.append(str(args[2]))

    event.listen(Engine, "before_cursor_execute", count)
    try:
        Store(f"sqlite:///{clean}").close()
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    statements = len(seen)
    assert sum(s.lstrip().startswith("CREATE TABLE") for s in seen) > 5  # several migrations
    for stop_at in (2, statements // 2, statements - 1):
        db = tmp_path / f"killed-{stop_at}.db"
        killed = subprocess.run([sys.executable, "-c", _MIGRATE_KILLED_AT, f"sqlite:///{db}",
                                 str(stop_at)], capture_output=True, text=True, timeout=300)
        assert killed.returncode == -signal.SIGKILL, (stop_at, killed.stderr)
        s = Store(f"sqlite:///{db}")  # raised SetupError before the fix
        s.start_run("analyze", "events.csv")
        s.close()
        assert _schema(db) == _schema(clean), stop_at
