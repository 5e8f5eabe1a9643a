"""The response's transactional outbox and incident timeline (respond_outbox, respond_timeline).

Until this revision ``tapshield.comms.outbox`` created both tables itself on
first use (``create_all``). A database that already has them that way keeps
them (same columns, indexes and constraints, so nothing is altered); every
other database gets them here, so ``tapshield`` upgrades create them like
any other table.

Revision ID: 0007_respond_outbox
Revises: 0006_service_events
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tapshield.storage.tables import JsonDoc, UTCDateTime

revision = "0007_respond_outbox"
down_revision = "0006_service_events"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _has(name: str) -> bool:
    return bool(sa.inspect(op.get_bind()).has_table(name))


def upgrade() -> None:
    if not _has("respond_outbox"):
        op.create_table(
            "respond_outbox",
            sa.Column("id", _ID, primary_key=True, autoincrement=True),
            sa.Column("key", sa.String(64), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("incident_id", sa.String(64), nullable=False),
            sa.Column("case_id", sa.String(64), nullable=False),
            sa.Column("cause", sa.String(32), nullable=False),
            sa.Column("recipient", sa.String(128), nullable=False),
            sa.Column("channel", sa.String(16), nullable=False),
            sa.Column("contact_token", sa.String(128), nullable=True),
            sa.Column("language", sa.String(8), nullable=True),
            sa.Column("tz", sa.String(64), nullable=True),
            sa.Column("urgent", sa.Integer, nullable=False),
            sa.Column("due_at", UTCDateTime, nullable=False),
            sa.Column("wanted_at", UTCDateTime, nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("payload", JsonDoc, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("next_attempt_at", UTCDateTime, nullable=False),
            sa.Column("lease_owner", sa.String(64), nullable=True),
            sa.Column("lease_until", UTCDateTime, nullable=True),
            sa.Column("sent_at", UTCDateTime, nullable=True),
            sa.Column("last_error", sa.Text, nullable=True),
            sa.Column("created_at", UTCDateTime, nullable=False),
            sa.PrimaryKeyConstraint("id", name="pk_respond_outbox"),
            sa.UniqueConstraint("key", name="uq_respond_outbox_key"),
        )
        op.create_index("ix_respond_outbox_status_next", "respond_outbox",
                        ["status", "next_attempt_at"])
    if not _has("respond_timeline"):
        op.create_table(
            "respond_timeline",
            sa.Column("seq", _ID, primary_key=True, autoincrement=True),
            sa.Column("incident_id", sa.String(64), nullable=False),
            sa.Column("at", UTCDateTime, nullable=False),
            sa.Column("actor", sa.String(128), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("what", sa.Text, nullable=False),
            sa.Column("why", sa.Text, nullable=False),
            sa.Column("data", JsonDoc, nullable=False),
            sa.Column("entry_key", sa.String(64), nullable=False),
            sa.PrimaryKeyConstraint("seq", name="pk_respond_timeline"),
            sa.UniqueConstraint("entry_key", name="uq_respond_timeline_entry_key"),
        )
        op.create_index("ix_respond_timeline_incident_id", "respond_timeline",
                        ["incident_id"])


def downgrade() -> None:
    op.drop_index("ix_respond_timeline_incident_id", table_name="respond_timeline")
    op.drop_table("respond_timeline")
    op.drop_index("ix_respond_outbox_status_next", table_name="respond_outbox")
    op.drop_table("respond_outbox")
