"""The repository the pipeline writes to: runs, incidents, alerts.

Every stored record belongs to its run: incidents are keyed by ``(run_id,
id)`` (two analyses of one file into one database keep both runs' incidents),
alerts carry their run. A run records the host and process that started it,
so a run whose process died (``kill -9``, a lost machine) is marked
``killed`` by the next start on that host instead of staying ``running``.
Migrations take a lock (a PostgreSQL advisory lock, a lock file beside a
SQLite database), so processes starting at once against one database
migrate one at a time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    create_engine,
    delete,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tapshield.errors import SetupError
from tapshield.incident import Incident
from tapshield.storage import tables as t
from tapshield.timeutil import parse_rfc3339

DB_URL_ENV = "TAPSHIELD_DB_URL"
_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATE_LOCK = 0x7A95_0013
"""PostgreSQL advisory lock id held while the schema is migrated."""

RUN_STATUSES = ("running", "ok", "failed", "interrupted", "killed")
"""``running`` until the run ends; ``ok`` (finished; rows may have been
rejected, the counts say how many) / ``failed`` (an input or environment
error) / ``interrupted`` (SIGTERM or SIGINT: stopped cleanly, outputs say
so) / ``killed`` (its process died without a word; set by the next start)."""


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a
    live process from a later one that reuses its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _alive(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    now = _process_start(pid)
    return started is None or now is None or now == started


def default_url(directory: Path | str | None = None) -> str:
    """``TAPSHIELD_DB_URL`` if set, else a SQLite file in ``directory`` (or the cwd)."""
    env = os.environ.get(DB_URL_ENV)
    if env:
        return env
    base = Path(directory) if directory is not None else Path.cwd()
    return f"sqlite:///{(base / 'tapshield.db').resolve()}"


def _shown(url: str) -> str:
    """The URL for a message: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _first(exc: BaseException) -> str:
    """The driver's own first line (SQLAlchemy appends a background link)."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return lines[0] if lines else type(inner).__name__


def database_error(exc: BaseException, url: str | None) -> SetupError:
    """A database failure during a run (a full disk, a lost server) as the one-line
    error every command reports with exit 2: the driver's first line, the URL
    without its password."""
    where = _shown(url) if url else "database"
    return SetupError(f"database {where}: {_first(exc)}")


def _normalise(url: str) -> str:
    """Plain ``postgresql://`` URLs use psycopg 3, the driver tapshield ships with."""
    u = make_url(url)
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


class Store:
    """Runs, incidents and alerts in SQLite or PostgreSQL, schema kept by Alembic."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        shown = _shown(url)
        try:
            self.url = _normalise(url)
            self.engine: Engine = create_engine(self.url, future=True)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ValueError) as exc:
            raise SetupError(f"database URL {shown!r} is not usable: {_first(exc)}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            if migrate:
                self.migrate()
            else:
                with self.engine.connect() as conn:
                    conn.execute(text("select 1"))
        except (sa_exc.DBAPIError, sa_exc.OperationalError, OSError) as exc:
            self.engine.dispose()
            raise SetupError(f"database {shown} cannot be used: {_first(exc)}") from None

    def migrate(self) -> None:
        """Bring the schema to the newest migrations (idempotent, and safe when
        several processes start at once: they migrate one at a time)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        engine = self._sqlite_ddl_engine() if self.engine.dialect.name == "sqlite" else None
        try:
            with self._migration_lock(), (engine or self.engine).begin() as conn:
                cfg.attributes["connection"] = conn
                # "heads": independent migration branches (features developed in
                # parallel) all apply; a linear history has one head anyway.
                command.upgrade(cfg, "heads")
        finally:
            if engine is not None:
                engine.dispose()

    def _sqlite_ddl_engine(self) -> Engine:
        """An engine whose transactions really cover DDL, for the migrations.

        Python's ``sqlite3`` only opens a transaction before INSERT, UPDATE,
        DELETE or REPLACE: every ``CREATE TABLE`` of a migration committed on
        its own, so a process killed mid-migration (``kill -9`` just after the
        first start created the database) left tables without their Alembic
        version, and every later start failed with "table runs already
        exists". Here the driver's implicit transactions are off and each
        transaction is an explicit ``BEGIN IMMEDIATE`` (the write lock taken
        at once): the schema and its version commit together or not at all.
        """
        engine = create_engine(self.url, future=True, poolclass=NullPool)

        def connect(dbapi_conn: Any, record: Any) -> None:
            _sqlite_pragmas(dbapi_conn, record)
            dbapi_conn.isolation_level = None

        def begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        event.listen(engine, "connect", connect)
        event.listen(engine, "begin", begin)
        return engine

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                conn.execute(text("select pg_advisory_lock(:k)"), {"k": _MIGRATE_LOCK})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("select pg_advisory_unlock(:k)"), {"k": _MIGRATE_LOCK})
                    conn.commit()
            return
        db = make_url(self.url).database
        if not db or db == ":memory:" or os.name != "posix":
            yield
            return
        import fcntl

        with open(db + ".migrate.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        self.engine.dispose()

    # -- runs ---------------------------------------------------------------

    def start_run(self, command_name: str, input_ref: str | None = None) -> str:
        """Record a new run (``running``); first mark this host's dead runs ``killed``."""
        self.mark_killed_runs()
        run_id = str(uuid.uuid4())
        pid = os.getpid()
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
                    host=socket.gethostname()[:255],
                    pid=pid,
                    proc_start=_process_start(pid),
                )
            )
        return run_id

    def mark_killed_runs(self) -> list[str]:
        """Mark ``killed`` every run still ``running`` whose process on this host is gone.

        Runs started on other hosts are left alone: their process cannot be
        checked from here (they are marked by the next start on their host).
        """
        host = socket.gethostname()[:255]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.runs.c.id, t.runs.c.pid, t.runs.c.proc_start).where(
                    and_(t.runs.c.status == "running", t.runs.c.host == host))
            ).all()
        dead = [r.id for r in rows if r.pid is None or not _alive(int(r.pid), r.proc_start)]
        if dead:
            with self.engine.begin() as conn:
                conn.execute(
                    update(t.runs)
                    .where(and_(t.runs.c.id.in_(dead), t.runs.c.status == "running"))
                    .values(status="killed", finished_at=datetime.now(UTC))
                )
        return dead

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
            conn.execute(delete(t.incidents).where(and_(
                t.incidents.c.run_id == run_id,
                t.incidents.c.id.in_([r["id"] for r in rows]))))
            conn.execute(insert(t.incidents), rows)
        return len(rows)

    def incidents(self, run_id: str | None = None) -> list[Incident]:
        q = select(t.incidents.c.doc).order_by(t.incidents.c.start, t.incidents.c.id,
                                               t.incidents.c.run_id)
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
