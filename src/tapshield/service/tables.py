"""The service's own tables (SQLAlchemy Core); created by migration ``0002_service``.

* ``service_attempts``: every answer ``POST /v1/authorize`` gave, keyed by the
  gateway's ``attempt_id``, with the tap-session state the router's
  :class:`~tapshield.route.TapSession` needs. It is the cross-process tap book:
  the answer is committed before it is returned, a replayed request reads it
  back, and ``unique(payment_id, number)`` lets only one worker start each
  attempt of a tap.
* ``service_checkpoints``: named state documents (the router's health now;
  the monitor's in phase 2), restored on start.
* ``service_silences``: runtime silences (Alertmanager-style matchers, expiry).
* ``service_incident_actions``: acknowledge / assign / note / resolve, with who and when.
* ``service_events`` (migration ``0006_service_events``): the live monitor's inbox.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from tapshield.storage.tables import JsonDoc, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

attempts = Table(
    "service_attempts",
    metadata,
    Column("attempt_id", String(128), primary_key=True),
    Column("payment_id", String(128), nullable=False),
    Column("number", Integer, nullable=False),
    Column("channel", String(64), nullable=True),
    Column("idempotency_key", String(32), nullable=True),
    Column("state", String(16), nullable=False),
    Column("reversal_sent", Boolean, nullable=False),
    Column("last_resort", Boolean, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("deadline_ms", Float, nullable=True),
    Column("region", String(16), nullable=False),
    Column("eligible", JsonDoc, nullable=False),
    Column("tap_status", String(16), nullable=False),
    Column("tap_reason", Text, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("answer", JsonDoc, nullable=False),
    Column("request", JsonDoc, nullable=False),
    Column("result", JsonDoc, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("result_at", UTCDateTime, nullable=True),
    UniqueConstraint("payment_id", "number", name="uq_service_attempts_payment_number"),
    Index("ix_service_attempts_created_at", "created_at"),
)

checkpoints = Table(
    "service_checkpoints",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("taken_at", UTCDateTime, nullable=False),
    Column("doc", JsonDoc, nullable=False),
)

silences = Table(
    "service_silences",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("matchers", JsonDoc, nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_service_silences_ends_at", "ends_at"),
)

incident_actions = Table(
    "service_incident_actions",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("incident_id", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("assignee", String(128), nullable=True),
    Column("note", Text, nullable=True),
    Index("ix_service_incident_actions_incident_id", "incident_id"),
)

events = Table(
    "service_events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("event_id", String(128), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("source", String(16), nullable=False),
    Column("doc", JsonDoc, nullable=False),
    UniqueConstraint("event_id", name="uq_service_events_event_id"),
)
"""The live monitor's inbox: every event accepted by ``POST /v1/events`` and every
settled attempt, in arrival order (``seq``). The monitor (one leader among the
workers) reads it past the position its checkpoint includes, so nothing accepted
is lost or counted twice across restarts; ``event_id`` is unique (a replayed
event, or an attempt also sent as an event, counts once)."""
