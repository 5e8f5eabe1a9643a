"""The transactional outbox: a message is recorded with the incident change that caused it.

``respond_timeline`` holds the incident's lifecycle entries; ``respond_outbox``
the messages they caused. :meth:`Outbox.record` writes both in one
transaction, so either the change and its messages exist or neither does:
no notice is lost because the process died between deciding and queueing,
and none is queued for a change that was rolled back. The message's
idempotency key is unique: recording the same plan again (a replayed run, a
restarted worker) inserts nothing new.

Delivery state per row: ``pending`` -> ``sending`` (leased by one dispatcher
until ``lease_until``) -> ``sent``, or back to ``pending`` with a later
``next_attempt_at`` after a failure, or ``dead`` after ``max_attempts`` (kept,
counted, shown: never silently dropped), or ``suppressed`` (the policy said
no: the daily cap). A lease that expires (the dispatcher was killed) makes
the row claimable again; every state change checks the lease owner, so a
dispatcher that lost its lease cannot overwrite the new owner's outcome.

The tables are created by the storage migrations (``0007_respond_outbox``;
``tapshield.storage.Store`` migrates when it opens a database) and written
only through this module; ``metadata`` here is the same schema, which a test
compares with the migrated one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from tapshield.errors import SetupError
from tapshield.respond.lifecycle import TimelineEntry
from tapshield.respond.responder import OutboundMessage
from tapshield.storage.tables import JsonDoc, UTCDateTime

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
})

_ID = BigInteger().with_variant(Integer, "sqlite")

outbox = Table(
    "respond_outbox", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("incident_id", String(64), nullable=False),
    Column("case_id", String(64), nullable=False),
    Column("cause", String(32), nullable=False),
    Column("recipient", String(128), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("contact_token", String(128), nullable=True),
    Column("language", String(8), nullable=True),
    Column("tz", String(64), nullable=True),
    Column("urgent", Integer, nullable=False, default=0),
    Column("due_at", UTCDateTime, nullable=False),
    Column("wanted_at", UTCDateTime, nullable=False),
    Column("body", Text, nullable=False),
    Column("payload", JsonDoc, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_respond_outbox_status_next", "status", "next_attempt_at"),
)

timeline = Table(
    "respond_timeline", metadata,
    Column("seq", _ID, primary_key=True, autoincrement=True),
    Column("incident_id", String(64), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("what", Text, nullable=False),
    Column("why", Text, nullable=False),
    Column("data", JsonDoc, nullable=False),
    Column("entry_key", String(64), nullable=False, unique=True),
)

STATUSES = ("pending", "sending", "sent", "dead", "suppressed")


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    key: str
    kind: str
    incident_id: str
    case_id: str
    cause: str
    recipient: str
    channel: str
    contact_token: str | None
    language: str | None
    tz: str | None
    urgent: bool
    due_at: datetime
    body: str
    payload: dict[str, Any]
    attempts: int
    lease_owner: str | None

    @classmethod
    def of(cls, r: Any) -> OutboxRow:
        return cls(int(r["id"]), r["key"], r["kind"], r["incident_id"], r["case_id"],
                   r["cause"], r["recipient"], r["channel"], r["contact_token"],
                   r["language"], r["tz"], bool(r["urgent"]), r["due_at"], r["body"],
                   dict(r["payload"] or {}), int(r["attempts"]), r["lease_owner"])


def _insert_ignore(engine_or_conn: Engine | Connection, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the backend."""
    name = engine_or_conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise RuntimeError(f"the outbox supports PostgreSQL and SQLite, not {name}")


def _entry_key(incident_id: str, e: TimelineEntry) -> str:
    from tapshield.respond.notices import message_key

    return message_key(incident_id, e.at.isoformat(), e.actor, e.kind, e.what, e.why)


class Outbox:
    def __init__(self, engine: Engine, *, clock: Any = None) -> None:
        self.engine = engine
        self._clock = clock or (lambda: datetime.now(UTC))
        missing = [t.name for t in (outbox, timeline)
                   if not inspect(engine).has_table(t.name)]
        if missing:
            raise SetupError(
                f"the database has no {' or '.join(missing)}: bring its schema up to date "
                "(tapshield.storage.Store migrates on open; migration 0007_respond_outbox)")

    # -- writing -----------------------------------------------------------------

    def record(self, entries: Iterable[tuple[str, TimelineEntry]],
               messages: Sequence[OutboundMessage], *, conn: Connection | None = None
               ) -> int:
        """Timeline entries and the messages they caused, in one transaction.

        Returns how many messages were new (a key already recorded is skipped).
        ``conn``: an open transaction of the caller (the service records the
        incident change in it too)."""
        if conn is None:
            with self.engine.begin() as c:
                return self._record(c, entries, messages)
        return self._record(conn, entries, messages)

    def _record(self, conn: Connection, entries: Iterable[tuple[str, TimelineEntry]],
                messages: Sequence[OutboundMessage]) -> int:
        now = self._clock()
        rows = [{"incident_id": iid, "at": e.at, "actor": e.actor, "kind": e.kind,
                 "what": e.what, "why": e.why, "data": _jsonable(e.data),
                 "entry_key": _entry_key(iid, e)} for iid, e in entries]
        if rows:
            conn.execute(_insert_ignore(conn, timeline), rows)
        new = 0
        for chunk in range(0, len(messages), 500):
            part = messages[chunk:chunk + 500]
            values = [{
                "key": m.key, "kind": m.kind, "incident_id": m.incident_id,
                "case_id": m.case_id, "cause": m.cause, "recipient": m.recipient,
                "channel": m.channel, "contact_token": m.contact_token,
                "language": m.language, "tz": m.tz, "urgent": int(m.urgent),
                "due_at": m.due_at, "wanted_at": m.wanted_at, "body": m.body,
                "payload": _jsonable(m.payload),
                "status": "suppressed" if m.suppressed else "pending",
                "attempts": 0, "next_attempt_at": now, "last_error": m.suppressed,
                "created_at": now} for m in part]
            res = conn.execute(_insert_ignore(conn, outbox).returning(outbox.c.id), values)
            new += len(res.fetchall())
        return new

    # -- the dispatcher's side -------------------------------------------------------

    def claim(self, owner: str, *, limit: int = 100, lease: timedelta = timedelta(seconds=30),
              due_by: datetime | None = None) -> list[OutboxRow]:
        """Lease up to ``limit`` rows that are due (``due_at <= due_by``) and ready
        (``next_attempt_at <= now``), or whose lease expired."""
        now = self._clock()
        ready = or_(
            and_(outbox.c.status == "pending", outbox.c.next_attempt_at <= now),
            and_(outbox.c.status == "sending", outbox.c.lease_until < now),
        )
        cond = ready if due_by is None else and_(ready, outbox.c.due_at <= due_by)
        with self.engine.begin() as conn:
            ids_q = (select(outbox.c.id).where(cond)
                     .order_by(outbox.c.due_at, outbox.c.id).limit(limit))
            if conn.dialect.name == "postgresql":
                ids_q = ids_q.with_for_update(skip_locked=True)
            ids = [r[0] for r in conn.execute(ids_q)]
            if not ids:
                return []
            conn.execute(update(outbox).where(outbox.c.id.in_(ids)).where(cond).values(
                status="sending", lease_owner=owner, lease_until=now + lease,
                attempts=outbox.c.attempts + 1))
            rows = conn.execute(select(outbox).where(outbox.c.id.in_(ids))
                                .where(outbox.c.lease_owner == owner)
                                .where(outbox.c.status == "sending")
                                .order_by(outbox.c.due_at, outbox.c.id)).mappings().all()
        return [OutboxRow.of(r) for r in rows]

    def finish_many(self, owner: str, outcomes: Sequence[tuple[int, dict[str, Any]]]
                    ) -> list[bool]:
        """Record several rows' outcomes in one transaction (group commit: one
        commit, so one fsync, for every answer that arrived meanwhile). Each
        update still checks the lease owner; returns, per row, whether it was
        still ours."""
        if not outcomes:
            return []
        out: list[bool] = []
        with self.engine.begin() as conn:
            for row_id, values in outcomes:
                res = conn.execute(update(outbox).where(outbox.c.id == row_id)
                                   .where(outbox.c.lease_owner == owner)
                                   .where(outbox.c.status == "sending").values(**values))
                out.append(bool(res.rowcount))
        return out

    def sent_values(self) -> dict[str, Any]:
        return {"status": "sent", "sent_at": self._clock(), "lease_owner": None,
                "lease_until": None, "last_error": None}

    @staticmethod
    def retry_values(error: str, next_attempt_at: datetime) -> dict[str, Any]:
        return {"status": "pending", "next_attempt_at": next_attempt_at, "lease_owner": None,
                "lease_until": None, "last_error": error[:2000]}

    @staticmethod
    def dead_values(error: str) -> dict[str, Any]:
        return {"status": "dead", "lease_owner": None, "lease_until": None,
                "last_error": error[:2000]}

    def mark_sent(self, row_id: int, owner: str) -> bool:
        return self.finish_many(owner, [(row_id, self.sent_values())])[0]

    def mark_retry(self, row_id: int, owner: str, error: str, next_attempt_at: datetime
                   ) -> bool:
        return self.finish_many(owner, [(row_id, self.retry_values(error, next_attempt_at))])[0]

    def mark_dead(self, row_id: int, owner: str, error: str) -> bool:
        return self.finish_many(owner, [(row_id, self.dead_values(error))])[0]

    # -- reading -------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox.c.status, func.count())
                                .group_by(outbox.c.status)).all()
        out = dict.fromkeys(STATUSES, 0)
        out.update({str(s): int(n) for s, n in rows})
        return out

    def rows(self, *, status: str | None = None) -> list[dict[str, Any]]:
        q = select(outbox).order_by(outbox.c.id)
        if status is not None:
            q = q.where(outbox.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def case_of(self, incident_id: str) -> str:
        """The case an incident's messages were recorded under (its own id if none)."""
        with self.engine.connect() as conn:
            got = conn.execute(select(outbox.c.case_id)
                               .where(outbox.c.incident_id == incident_id).limit(1)).first()
        return str(got[0]) if got is not None else incident_id

    def notices(self, case_id: str) -> list[dict[str, Any]]:
        """The case's customer notices that were queued (not those the cap suppressed)."""
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                select(outbox).where(outbox.c.case_id == case_id)
                .where(outbox.c.kind == "notice").where(outbox.c.status != "suppressed")
                .order_by(outbox.c.id)).mappings()]

    def timeline(self, incident_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                select(timeline).where(timeline.c.incident_id == incident_id)
                .order_by(timeline.c.seq)).mappings()]


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v
