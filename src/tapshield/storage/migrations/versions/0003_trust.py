"""Trust: the transparency log (audit_log, audit_tiles, audit_heads, audit_tree) and the
personal-data vault (pii_vault).

Revision ID: 0003_trust
Revises: 0002_service
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tapshield.storage.tables import JsonDoc, UTCDateTime

revision = "0003_trust"
down_revision = "0002_service"
branch_labels = None
depends_on = None


def _bigint_pk() -> sa.types.TypeEngine[int]:
    # SQLite only makes INTEGER PRIMARY KEY the rowid; BIGINT elsewhere.
    return sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", _bigint_pk(), primary_key=True, autoincrement=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("payload", JsonDoc, nullable=False),
    )
    op.create_index("ix_audit_log_subject", "audit_log", ["subject"])
    op.create_table(
        "audit_tiles",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", _bigint_pk(), primary_key=True, autoincrement=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("hashes", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_heads",
        sa.Column("id", _bigint_pk(), primary_key=True, autoincrement=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    tree = op.create_table(
        "audit_tree",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("last_ts", UTCDateTime, nullable=True),
    )
    op.bulk_insert(tree, [{"id": 1, "size": 0, "last_ts": None}])
    op.create_table(
        "pii_vault",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key_version", sa.Integer, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_pii_vault_key_version", "pii_vault", ["key_version"])


def downgrade() -> None:
    op.drop_table("pii_vault")
    op.drop_table("audit_tree")
    op.drop_table("audit_heads")
    op.drop_table("audit_tiles")
    op.drop_table("audit_log")
