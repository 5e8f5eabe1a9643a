"""The repository the pipeline writes to: runs, incidents, alerts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, delete, event, insert, select, update
from sqlalchemy.engine import make_url

from tapshield.incident import Incident
from tapshield.storage import tables as t
from tapshield.timeutil import parse_rfc3339

DB_URL_ENV = "TAPSHIELD_DB_URL"
_MIGRATIONS = Path(__file__).parent / "migrations"


def default_url(directory: Path | str | None = None) -> str:
    """``TAPSHIELD_DB_URL`` if set, else a SQLite file in ``directory`` (or the cwd)."""
    env = os.environ.get(DB_URL_ENV)
    if env:
        return env
    base = Path(directory) if directory is not None else Path.cwd()
    return f"sqlite:///{(base / 'tapshield.db').resolve()}"


def _normalise(url: str) -> str:
    """Plain ``postgresql://`` URLs use psycopg 3, the driver tapshield ships with."""
    u = make_url(url)
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


class Store:
    """Runs, incidents and alerts in SQLite or PostgreSQL, schema kept by Alembic."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = _normalise(url)
        self.engine: Engine = create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    # -- runs ---------------------------------------------------------------

    def start_run(self, command_name: str, input_ref: str | None = None) -> str:
        run_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                insert(t.runs).values(
                    id=run_id,
                    command=command_name,
                    input=input_ref,
                    started_at=datetime.now(UTC),
                    status="running",
                    events_read=0,
                    events_accepted=0,
                    events_rejected=0,
                )
            )
        return run_id

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        read: int,
        accepted: int,
        rejected: int,
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(t.runs)
                .where(t.runs.c.id == run_id)
                .values(
                    finished_at=datetime.now(UTC),
                    status=status,
                    events_read=read,
                    events_accepted=accepted,
                    events_rejected=rejected,
                    **({} if summary is None else {"summary": dict(summary)}),
                )
            )

    def save_run_summary(self, run_id: str, summary: Mapping[str, Any]) -> None:
        """Record the run's summary (and national timeline) before the run finishes;
        ``finish_run`` without a summary keeps it."""
        with self.engine.begin() as conn:
            conn.execute(update(t.runs).where(t.runs.c.id == run_id)
                         .values(summary=dict(summary)))

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.runs).where(t.runs.c.id == run_id)).mappings().first()
        return dict(row) if row else None

    # -- incidents ----------------------------------------------------------

    def save_incidents(self, run_id: str, items: Iterable[Incident]) -> int:
        """Insert or replace the run's incidents (an incident is updated as it evolves)."""
        rows = [
            {
                "id": i.id,
                "run_id": run_id,
                "start": i.start,
                "end": i.end,
                "detected_at": i.detected_at,
                "level": i.level,
                "cause": i.cause,
                "confidence": float(i.confidence),
                "failed_attempts": i.failed_attempts,
                "failed_payments": i.failed_payments,
                "affected_users": i.affected_users,
                "affected_merchants": i.affected_merchants,
                "lost_fen": i.lost_fen,
                "doc": i.to_dict(),
            }
            for i in items
        ]
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(delete(t.incidents).where(t.incidents.c.id.in_([r["id"] for r in rows])))
            conn.execute(insert(t.incidents), rows)
        return len(rows)

    def incidents(self, run_id: str | None = None) -> list[Incident]:
        q = select(t.incidents.c.doc).order_by(t.incidents.c.start, t.incidents.c.id)
        if run_id is not None:
            q = q.where(t.incidents.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [Incident.from_dict(doc) for doc in conn.execute(q).scalars()]

    # -- alerts -------------------------------------------------------------

    def append_alerts(self, run_id: str, docs: Iterable[Mapping[str, Any]]) -> int:
        """Append alert state changes (``docs`` as written to alerts.jsonl)."""
        rows = [
            {
                "run_id": run_id,
                "alert_id": str(d["alert_id"]),
                "incident_id": d.get("incident_id"),
                "ts": d["ts"] if isinstance(d["ts"], datetime) else parse_rfc3339(d["ts"]),
                "state": str(d["state"]),
                "level": d.get("level"),
                "doc": dict(d),
            }
            for d in docs
        ]
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(insert(t.alerts), rows)
        return len(rows)

    def alerts(self, run_id: str | None = None) -> list[dict[str, Any]]:
        q = select(t.alerts.c.doc).order_by(t.alerts.c.seq)
        if run_id is not None:
            q = q.where(t.alerts.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [dict(d) for d in conn.execute(q).scalars()]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()
