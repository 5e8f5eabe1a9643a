"""The ``pii_vault`` table (SQLAlchemy Core): implements ``tapshield.privacy.vault.VaultStore``."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, and_, delete, func, insert, select, update

from tapshield.privacy.vault import SealedRow
from tapshield.storage import tables as t


class SqlVaultStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, row: SealedRow) -> None:
        now = datetime.now(UTC)
        c = t.pii_vault.c
        with self.engine.begin() as conn:
            done = conn.execute(update(t.pii_vault).where(c.token == row.token).values(
                kind=row.kind, key_version=row.key_version, ciphertext=row.ciphertext,
                updated_at=now)).rowcount
            if not done:
                conn.execute(insert(t.pii_vault).values(
                    token=row.token, kind=row.kind, key_version=row.key_version,
                    ciphertext=row.ciphertext, created_at=now, updated_at=now))

    def get(self, token: str) -> SealedRow | None:
        c = t.pii_vault.c
        with self.engine.connect() as conn:
            r = conn.execute(select(c.token, c.kind, c.key_version, c.ciphertext)
                             .where(c.token == token)).first()
        return SealedRow(r.token, r.kind, int(r.key_version), bytes(r.ciphertext)) if r else None

    def older_than(self, version: int, limit: int) -> list[SealedRow]:
        c = t.pii_vault.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(c.token, c.kind, c.key_version, c.ciphertext)
                                .where(c.key_version != version).order_by(c.token)
                                .limit(limit)).all()
        return [SealedRow(r.token, r.kind, int(r.key_version), bytes(r.ciphertext))
                for r in rows]

    def replace(self, row: SealedRow, expected_version: int) -> bool:
        c = t.pii_vault.c
        with self.engine.begin() as conn:
            n = conn.execute(update(t.pii_vault).where(and_(
                c.token == row.token, c.key_version == expected_version)).values(
                key_version=row.key_version, ciphertext=row.ciphertext,
                updated_at=datetime.now(UTC))).rowcount
        return bool(n)

    def versions(self) -> dict[int, int]:
        c = t.pii_vault.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(c.key_version, func.count()).group_by(c.key_version)
                                ).all()
        return {int(v): int(n) for v, n in rows}

    def forget(self, token: str) -> bool:
        """Erase one identifier (a customer's right to erasure): its token stays meaningless."""
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(t.pii_vault).where(t.pii_vault.c.token == token)
                                     ).rowcount)
