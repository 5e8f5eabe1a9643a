"""The outbox tables come from the storage migrations (0007_respond_outbox), on SQLite and
PostgreSQL: fresh databases get them, databases whose tables the adapter created itself
before the migration existed (``create_all``) upgrade cleanly and keep their rows, and the
migrated schema is the one the adapter's table definitions describe."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tapshield.comms import outbox as ob
from tapshield.errors import SetupError
from tapshield.respond.lifecycle import TimelineEntry
from tapshield.storage import Store
from tapshield.storage import store as st

T0 = datetime(2026, 11, 24, 3, 41, tzinfo=UTC)
TABLES = ("respond_outbox", "respond_timeline")


def _schema(engine: sa.Engine) -> dict[str, Any]:
    """Columns (type, nullability), primary key, unique constraints and indexes."""
    insp = sa.inspect(engine)
    out: dict[str, Any] = {}
    for t in TABLES:
        cols = {c["name"]: (type(c["type"]).__name__, c["nullable"])
                for c in insp.get_columns(t)}
        uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints(t)}
        indexes = {(i["name"], tuple(i["column_names"]), bool(i["unique"]))
                   for i in insp.get_indexes(t)}
        # SQLite reports a UNIQUE constraint also as a unique auto-index; PostgreSQL as an
        # index of the constraint's name: keep the non-unique indexes (the rest is above)
        indexes = {i for i in indexes if not i[2]}
        out[t] = {"columns": cols, "pk": tuple(insp.get_pk_constraint(t)["constrained_columns"]),
                  "uniques": uniques, "indexes": indexes}
    return out


def _upgrade_to(url: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(st._MIGRATIONS))
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    eng.dispose()


def _version(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.text("select version_num from alembic_version"))}


def _check(url: str, reference_url: str) -> None:
    """Fresh migrate; an adapter-created database upgrading with its rows; same schema."""
    # 1. an older database whose outbox the adapter created itself (create_all), in use
    _upgrade_to(url, "0006_service_events")
    old = sa.create_engine(url)
    ob.metadata.create_all(old)
    entry = TimelineEntry(T0, "tapshield/monitor", "transition", "open", "paged")
    with old.begin() as conn:
        conn.execute(sa.insert(ob.timeline).values(
            incident_id="INC-1", at=T0, actor=entry.actor, kind=entry.kind, what=entry.what,
            why=entry.why, data={}, entry_key="e1"))
        conn.execute(sa.insert(ob.outbox).values(
            key="k1", kind="notice", incident_id="INC-1", case_id="INC-1", cause="interface",
            recipient="tok-u1", channel="sms", urgent=0, due_at=T0, wanted_at=T0, body="hi",
            payload={}, status="pending", attempts=0, next_attempt_at=T0, created_at=T0))
    adapter_made = _schema(old)
    old.dispose()
    # 2. the upgrade keeps them and what they hold
    s = Store(url)
    assert "0007_respond_outbox" in _version(s.engine)
    box = ob.Outbox(s.engine)
    assert box.counts()["pending"] == 1
    assert [r["what"] for r in box.timeline("INC-1")] == ["open"]
    assert _schema(s.engine) == adapter_made
    s.close()
    # 3. a fresh database gets the same schema from the migration alone
    fresh = Store(reference_url)
    assert _schema(fresh.engine) == adapter_made
    box = ob.Outbox(fresh.engine)
    assert box.record([("INC-2", entry)], []) == 0 and len(box.timeline("INC-2")) == 1
    # 4. downgrading past it removes the tables; upgrading again brings them back
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(st._MIGRATIONS))
    with fresh.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006_service_events")
    assert not any(sa.inspect(fresh.engine).has_table(t) for t in TABLES)
    with pytest.raises(SetupError, match="respond_outbox"):
        ob.Outbox(fresh.engine)
    fresh.migrate()
    assert all(sa.inspect(fresh.engine).has_table(t) for t in TABLES)
    fresh.close()


def test_outbox_tables_migrate_on_sqlite(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'fresh.db'}")


@pytest.fixture()
def two_pg_databases(pg_url: str) -> Iterator[tuple[str, str]]:
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    names = [f"tapshield_outbox_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with admin.connect() as conn:
        for n in names:
            conn.execute(sa.text(f'create database "{n}"'))
    urls = [sa.engine.make_url(pg_url).set(database=n).render_as_string(hide_password=False)
            for n in names]
    try:
        yield urls[0], urls[1]
    finally:
        with admin.connect() as conn:
            for n in names:
                conn.execute(sa.text(f'drop database if exists "{n}" with (force)'))
        admin.dispose()


@pytest.mark.postgres
def test_outbox_tables_migrate_on_postgres(two_pg_databases: tuple[str, str]) -> None:
    _check(*two_pg_databases)
