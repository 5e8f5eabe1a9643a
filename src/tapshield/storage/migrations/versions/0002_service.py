"""Tables of ``tapshield serve``: attempts (the cross-process tap book),
checkpoints, silences, incident actions.

Revision ID: 0002_service
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tapshield.storage.tables import JsonDoc, UTCDateTime

revision = "0002_service"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_attempts",
        sa.Column("attempt_id", sa.String(128), primary_key=True),
        sa.Column("payment_id", sa.String(128), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("idempotency_key", sa.String(32), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reversal_sent", sa.Boolean, nullable=False),
        sa.Column("last_resort", sa.Boolean, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("deadline_ms", sa.Float, nullable=True),
        sa.Column("region", sa.String(16), nullable=False),
        sa.Column("eligible", JsonDoc, nullable=False),
        sa.Column("tap_status", sa.String(16), nullable=False),
        sa.Column("tap_reason", sa.Text, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("answer", JsonDoc, nullable=False),
        sa.Column("request", JsonDoc, nullable=False),
        sa.Column("result", JsonDoc, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("result_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("payment_id", "number", name="uq_service_attempts_payment_number"),
    )
    op.create_index("ix_service_attempts_created_at", "service_attempts", ["created_at"])
    op.create_table(
        "service_checkpoints",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("taken_at", UTCDateTime, nullable=False),
        sa.Column("doc", JsonDoc, nullable=False),
    )
    op.create_table(
        "service_silences",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("matchers", JsonDoc, nullable=False),
        sa.Column("starts_at", UTCDateTime, nullable=False),
        sa.Column("ends_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_service_silences_ends_at", "service_silences", ["ends_at"])
    op.create_table(
        "service_incident_actions",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("assignee", sa.String(128), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
    )
    op.create_index("ix_service_incident_actions_incident_id", "service_incident_actions",
                    ["incident_id"])


def downgrade() -> None:
    op.drop_table("service_incident_actions")
    op.drop_table("service_silences")
    op.drop_table("service_checkpoints")
    op.drop_table("service_attempts")
