"""The live monitor's inbox of ``tapshield serve`` (service_events).

Revision ID: 0006_service_events
Revises: 0005_run_scoped
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tapshield.storage.tables import JsonDoc

revision = "0006_service_events"
down_revision = "0005_run_scoped"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("doc", JsonDoc, nullable=False),
        sa.UniqueConstraint("event_id", name="uq_service_events_event_id"),
    )


def downgrade() -> None:
    op.drop_table("service_events")
