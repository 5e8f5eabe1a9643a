"""The live monitor's inbox (``service_events``): what arrives, in arrival order.

Two doors lead in:

* ``POST /v1/events``: a batch in the event contract (JSON array or NDJSON),
  validated row by row with the same rules as files
  (:func:`tapshield.events.validate_frame`); the accepted rows are inserted
  before the answer, so an accepted event is never lost;
* every settled attempt of ``POST /v1/attempts/{id}/result``, inserted by the
  tap book **in the transaction that records the result** (an outcome is in
  the inbox exactly when it is in the tap book).

``event_id`` is unique: an event sent twice (a retried batch, an attempt also
exported by the gateway's log shipper) is counted once; the second copy is
reported back as a duplicate. The monitor's leader reads rows past the
position its checkpoint includes (:meth:`Inbox.read`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlalchemy import Connection, Engine, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from tapshield.errors import RowError
from tapshield.events.idindex import EventIdIndex
from tapshield.events.schema import CANONICAL_SCHEMA, REQUIRED, WIRE_NAMES
from tapshield.events.validate import validate_frame
from tapshield.money import parse_yuan
from tapshield.service import tables as t

if TYPE_CHECKING:
    from tapshield.service.taps import Settled

RISK_OF_DECISION = {"approve": "approve", "step_up": "review", "decline": "decline"}
"""The service's decisions in the event contract's ``risk_decision`` vocabulary."""
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One payment event in the event contract (docs/contracts.md); rows "
                   "breaking a rule are returned as rejects, not refused as a whole.",
    "properties": {name: {"type": ["string", "number", "null"]} for name in WIRE_NAMES},
    "required": list(REQUIRED),
    "additionalProperties": False,
}
_DOC_COLUMNS = [c for c in CANONICAL_SCHEMA if c not in ("event_id", "ts")]


def settled_rows(outcomes: Sequence[Settled]) -> list[dict[str, Any]]:
    """Inbox rows for settled attempts: the request's fields, the channel, the outcome."""
    out = []
    for s in outcomes:
        r = s.request
        ts_us = round(float(r.get("ts") or s.at) * 1_000_000)
        doc = {
            "payment_id": r.get("payment_id"), "user_id": r.get("user_id"),
            "device_id": r.get("device_id"), "merchant_id": r.get("merchant_id"),
            "channel": s.channel, "region": r.get("region"),
            "amount_fen": parse_yuan(str(r.get("amount") or "0")),
            "outcome": s.outcome, "response_code": s.response_code,
            "latency_ms": s.latency_ms, "carrier": r.get("carrier"), "os": r.get("os"),
            "app_version": r.get("app_version"), "device_model": r.get("device_model"),
            "server_version": None, "merchant_category": r.get("merchant_category"),
            "risk_decision": RISK_OF_DECISION.get(s.decision, "approve"),
        }
        out.append({"event_id": s.attempt_id, "ts_us": ts_us, "source": "attempt", "doc": doc})
    return out


def frame_rows(valid: pl.DataFrame) -> list[dict[str, Any]]:
    """Inbox rows for validated canonical events."""
    cols = valid.with_columns(pl.col("ts").cast(pl.Int64).alias("ts"),
                              pl.col("outcome").cast(pl.String),
                              pl.col("risk_decision").cast(pl.String))
    out = []
    for r in cols.iter_rows(named=True):
        out.append({"event_id": r["event_id"], "ts_us": int(r["ts"]), "source": "events",
                    "doc": {c: r[c] for c in _DOC_COLUMNS}})
    return out


def insert(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Insert rows whose ``event_id`` is new; returns the event ids inserted."""
    if not rows:
        return set()
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(t.events)
    stmt = ins.on_conflict_do_nothing(index_elements=[t.events.c.event_id]).returning(
        t.events.c.event_id)
    return set(conn.execute(stmt, rows).scalars().all())


def parse_body(body: bytes, content_type: str) -> list[dict[str, Any] | None]:
    """Records of a JSON array or NDJSON body, in order; ``None`` for a line that is
    not a JSON object (reported as a reject of that row). Raises ``ValueError``
    when a JSON array body is not an array of values."""
    text = body.decode("utf-8")
    stripped = text.lstrip()
    if stripped.startswith("[") and "ndjson" not in content_type:
        doc = json.loads(text)
        if not isinstance(doc, list):
            raise ValueError("the body must be a JSON array of events or NDJSON")
        return [o if isinstance(o, dict) else None for o in doc]
    out: list[dict[str, Any] | None] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            out.append(None)
            continue
        out.append(obj if isinstance(obj, dict) else None)
    return out


def _wire(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return v if isinstance(v, str) else json.dumps(v)


class Inbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def accept(self, records: Sequence[dict[str, Any] | None]
               ) -> tuple[int, list[RowError]]:
        """Validate and store a batch: ``(accepted, rejects)`` (rows numbered from 1)."""
        rejects: list[RowError] = []
        rows: list[list[str | None]] = []
        numbers: list[int] = []
        for i, rec in enumerate(records, start=1):
            if rec is None:
                rejects.append(RowError(i, "*", "json_object", None))
                continue
            unknown = sorted(set(rec) - set(WIRE_NAMES))
            if unknown:
                rejects.append(RowError(i, unknown[0], "unknown_column", None))
                continue
            rows.append([_wire(rec.get(k)) for k in WIRE_NAMES])
            numbers.append(i)
        if not rows:
            return 0, sorted(rejects, key=lambda e: e.row)
        raw = pl.DataFrame(rows, schema=dict.fromkeys(WIRE_NAMES, pl.String), orient="row")
        raw = raw.with_columns(pl.Series("_row", numbers, dtype=pl.Int64))
        result = validate_frame(raw, EventIdIndex())
        rejects.extend(result.errors())
        docs = frame_rows(result.valid)
        with self.engine.begin() as conn:
            new = insert(conn, docs)
        if len(new) < len(docs):
            row_of: dict[str, int] = {}
            for eid, n in zip(raw["event_id"].to_list(), numbers, strict=True):
                row_of.setdefault(eid, n)
            for d in docs:
                if d["event_id"] not in new:
                    rejects.append(RowError(int(row_of.get(d["event_id"]) or 0), "event_id",
                                            "duplicate_event_id", None))
        return len(new), sorted(rejects, key=lambda e: e.row)

    def read(self, after: int, limit: int) -> tuple[int, pl.DataFrame]:
        """Events past inbox position ``after`` (at most ``limit``) as a canonical frame,
        and the position of the last one read (``after`` when none)."""
        q = (select(t.events.c.seq, t.events.c.event_id, t.events.c.ts_us, t.events.c.doc)
             .where(t.events.c.seq > after).order_by(t.events.c.seq).limit(limit))
        with self.engine.connect() as conn:
            got = conn.execute(q).all()
        if not got:
            return after, pl.DataFrame(schema=CANONICAL_SCHEMA)
        return int(got[-1][0]), to_frame((r[1], r[2], r[3]) for r in got)

    def purge(self, older_than_days: float, before_position: int) -> int:
        """Delete rows the monitor has checkpointed past and older than the retention."""
        cut = int((time.time() - older_than_days * 86_400.0) * 1_000_000)
        with self.engine.begin() as conn:
            return int(conn.execute(delete(t.events).where(
                t.events.c.seq <= before_position, t.events.c.ts_us < cut)).rowcount or 0)

    def position(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(t.events.c.seq), 0)))
                       .scalar_one())


def to_frame(rows: Iterable[tuple[str, int, dict[str, Any]]]) -> pl.DataFrame:
    """Canonical events from inbox rows."""
    data: dict[str, list[Any]] = {c: [] for c in CANONICAL_SCHEMA}
    for event_id, ts_us, doc in rows:
        data["event_id"].append(event_id)
        data["ts"].append(int(ts_us))
        for c in _DOC_COLUMNS:
            data[c].append(doc.get(c))
    frame = pl.DataFrame({c: pl.Series(c, v, dtype=pl.String if c in ("outcome", "risk_decision")
                                      else pl.Int64 if c == "ts" else CANONICAL_SCHEMA[c])
                          for c, v in data.items()})
    return frame.with_columns(pl.col(c).cast(CANONICAL_SCHEMA[c])
                              for c in ("ts", "outcome", "risk_decision"))
