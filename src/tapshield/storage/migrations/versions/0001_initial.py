"""Runs, incidents and alerts.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tapshield.storage.tables import JsonDoc, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("command", sa.String(32), nullable=False),
        sa.Column("input", sa.Text, nullable=True),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("events_read", sa.BigInteger, nullable=False),
        sa.Column("events_accepted", sa.BigInteger, nullable=False),
        sa.Column("events_rejected", sa.BigInteger, nullable=False),
        sa.Column("summary", JsonDoc, nullable=True),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("start", UTCDateTime, nullable=False),
        sa.Column("end", UTCDateTime, nullable=True),
        sa.Column("detected_at", UTCDateTime, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("failed_attempts", sa.BigInteger, nullable=False),
        sa.Column("failed_payments", sa.BigInteger, nullable=False),
        sa.Column("affected_users", sa.BigInteger, nullable=False),
        sa.Column("affected_merchants", sa.BigInteger, nullable=False),
        sa.Column("lost_fen", sa.BigInteger, nullable=False),
        sa.Column("doc", JsonDoc, nullable=False),
    )
    op.create_index("ix_incidents_run_start", "incidents", ["run_id", "start"])
    op.create_table(
        "alerts",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("alert_id", sa.String(128), nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=True),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("level", sa.Integer, nullable=True),
        sa.Column("doc", JsonDoc, nullable=False),
    )
    op.create_index("ix_alerts_run_ts", "alerts", ["run_id", "ts"])
    op.create_index("ix_alerts_alert_id", "alerts", ["alert_id"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("incidents")
    op.drop_table("runs")
