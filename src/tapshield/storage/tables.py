"""Table definitions (SQLAlchemy Core). Change them only together with a migration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JsonDoc = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone by itself)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("only aware datetimes are stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("command", String(32), nullable=False),
    Column("input", Text, nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("status", String(16), nullable=False),
    Column("events_read", BigInteger, nullable=False, default=0),
    Column("events_accepted", BigInteger, nullable=False, default=0),
    Column("events_rejected", BigInteger, nullable=False, default=0),
    Column("summary", JsonDoc, nullable=True),
    Column("host", String(255), nullable=True),
    Column("pid", Integer, nullable=True),
    Column("proc_start", BigInteger, nullable=True),
)
"""One row per run; ``host``, ``pid`` and ``proc_start`` (migration 0005) tell a
running run from a killed one."""

incidents = Table(
    "incidents",
    metadata,
    Column("id", String(64), nullable=False),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("start", UTCDateTime, nullable=False),
    Column("end", UTCDateTime, nullable=True),
    Column("detected_at", UTCDateTime, nullable=False),
    Column("level", Integer, nullable=False),
    Column("cause", String(16), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("failed_attempts", BigInteger, nullable=False),
    Column("failed_payments", BigInteger, nullable=False),
    Column("affected_users", BigInteger, nullable=False),
    Column("affected_merchants", BigInteger, nullable=False),
    Column("lost_fen", BigInteger, nullable=False),
    Column("doc", JsonDoc, nullable=False),
    Index("ix_incidents_run_start", "run_id", "start"),
    PrimaryKeyConstraint("run_id", "id", name="pk_incidents_run"),
)
"""An incident id is unique within its run (migration 0005): ids restart with each run."""

alerts = Table(
    "alerts",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("alert_id", String(128), nullable=False),
    Column("incident_id", String(64), nullable=True),
    Column("ts", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("level", Integer, nullable=True),
    Column("doc", JsonDoc, nullable=False),
    Index("ix_alerts_run_ts", "run_id", "ts"),
    Index("ix_alerts_alert_id", "alert_id"),
)

# -- trust: the transparency log and the personal-data vault (migration 0003_trust) ------------

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("payload", JsonDoc, nullable=False),
    Index("ix_audit_log_subject", "subject"),
)
"""One row per leaf; ``seq`` is the leaf index. Append-only: see docs/trust.md."""

audit_tiles = Table(
    "audit_tiles",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    Column("width", Integer, nullable=False),
    Column("hashes", LargeBinary, nullable=False),
)
"""Interior hashes of the Merkle tree in tiles (``tapshield.audit.tiles``)."""

audit_heads = Table(
    "audit_heads",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("size", BigInteger, nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),
)
"""Signed tree heads (C2SP checkpoints); the ``note`` is the authority, the rest an index."""

audit_tree = Table(
    "audit_tree",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("last_ts", UTCDateTime, nullable=True),
)
"""One row (id 1): the tree size, and the row every append locks."""

pii_vault = Table(
    "pii_vault",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("key_version", Integer, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_pii_vault_key_version", "key_version"),
)
"""Recoverable identifiers (phone, e-mail), AES-GCM sealed, keyed by their token."""
