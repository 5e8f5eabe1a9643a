"""Run-scoped records: incidents keyed by (run_id, id); runs know their process.

An incident id is unique within its run only (each analysis numbers its
incidents from the start), so a second run into the same database no longer
replaces the first run's incidents. ``runs.host``, ``pid`` and ``proc_start``
let the next start mark a run whose process died as ``killed``.

Revision ID: 0005_run_scoped
Revises: 0003_trust
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tapshield.storage.tables import JsonDoc, UTCDateTime

revision = "0005_run_scoped"
down_revision = "0003_trust"
branch_labels = None
depends_on = None

_COLUMNS = ("id", "run_id", "start", "end", "detected_at", "level", "cause", "confidence",
            "failed_attempts", "failed_payments", "affected_users", "affected_merchants",
            "lost_fen", "doc")


def _incidents(name: str, pk: tuple[str, ...], pk_name: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.String(64), nullable=False),
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
        sa.PrimaryKeyConstraint(*pk, name=pk_name),
    )


def _move(source: str, target: str) -> None:
    cols = ", ".join(f'"{c}"' for c in _COLUMNS)
    op.execute(f"insert into {target} ({cols}) select {cols} from {source}")
    op.drop_index("ix_incidents_run_start", table_name=source)
    op.drop_table(source)
    op.rename_table(target, "incidents")
    op.create_index("ix_incidents_run_start", "incidents", ["run_id", "start"])


def upgrade() -> None:
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("host", sa.String(255), nullable=True))
        b.add_column(sa.Column("pid", sa.Integer, nullable=True))
        b.add_column(sa.Column("proc_start", sa.BigInteger, nullable=True))
    _incidents("incidents_run_scoped", ("run_id", "id"), "pk_incidents_run")
    _move("incidents", "incidents_run_scoped")


def downgrade() -> None:
    # Incidents of different runs sharing an id cannot all survive a global key:
    # the latest run's copy is kept.
    _incidents("incidents_global", ("id",), "pk_incidents")
    cols = ", ".join(f'"{c}"' for c in _COLUMNS)
    op.execute(
        f"insert into incidents_global ({cols}) select {cols} from incidents i "
        "where not exists (select 1 from incidents j join runs rj on rj.id = j.run_id "
        "join runs ri on ri.id = i.run_id where j.id = i.id and rj.started_at > ri.started_at)"
    )
    op.drop_index("ix_incidents_run_start", table_name="incidents")
    op.drop_table("incidents")
    op.rename_table("incidents_global", "incidents")
    op.create_index("ix_incidents_run_start", "incidents", ["run_id", "start"])
    with op.batch_alter_table("runs") as b:
        b.drop_column("proc_start")
        b.drop_column("pid")
        b.drop_column("host")
