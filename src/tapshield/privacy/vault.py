"""The vault: token -> sealed identifier, and re-encryption after a key rotation.

Only what must be recovered is kept here (the phone number or e-mail address
a customer notice is sent to); everything else carries tokens only. Reads
work with any key version still present; :meth:`Vault.reencrypt` moves rows
to the current version in small batches, each row by compare-and-set on its
version so a concurrent write is never overwritten: it runs beside the
service, and the old key can be retired once :meth:`Vault.versions` shows no
row left on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tapshield.privacy.seal import Sealer, version_of
from tapshield.privacy.tokens import Tokenizer


@dataclass(frozen=True, slots=True)
class SealedRow:
    token: str
    kind: str
    key_version: int
    ciphertext: bytes


class VaultStore(Protocol):
    """The ``pii_vault`` table (``tapshield.storage.vault`` implements it)."""

    def put(self, row: SealedRow) -> None: ...

    def get(self, token: str) -> SealedRow | None: ...

    def older_than(self, version: int, limit: int) -> list[SealedRow]:
        """Rows sealed with another version than ``version`` (at most ``limit``)."""
        ...

    def replace(self, row: SealedRow, expected_version: int) -> bool:
        """Write ``row`` if the stored one still has ``expected_version``."""
        ...

    def versions(self) -> dict[int, int]:
        """Rows per key version."""
        ...


class Vault:
    def __init__(self, store: VaultStore, tokens: Tokenizer, sealer: Sealer) -> None:
        self.store = store
        self.tokens = tokens
        self.sealer = sealer

    def put(self, kind: str, value: str) -> str:
        """Keep ``value`` sealed; returns its token (what every other table stores)."""
        token = self.tokens.token(kind, value)
        blob = self.sealer.seal(kind, token, value)
        self.store.put(SealedRow(token, kind, version_of(blob), blob))
        return token

    def put_many(self, kind: str, values: Sequence[str]) -> list[str]:
        return [self.put(kind, v) for v in values]

    def reveal(self, token: str) -> str | None:
        """The raw value (to send a notice), or ``None`` if the vault does not hold it."""
        row = self.store.get(token)
        if row is None:
            return None
        return self.sealer.open(row.kind, row.token, row.ciphertext)

    def reencrypt(self, batch: int = 500, max_rows: int | None = None) -> int:
        """Move rows to the current key version; returns how many were moved."""
        current = self.sealer.current
        moved = 0
        while max_rows is None or moved < max_rows:
            rows = self.store.older_than(current, batch)
            if not rows:
                break
            progressed = False
            for r in rows:
                plain = self.sealer.open(r.kind, r.token, r.ciphertext)
                blob = self.sealer.seal(r.kind, r.token, plain, version=current)
                if self.store.replace(SealedRow(r.token, r.kind, current, blob), r.key_version):
                    moved += 1
                    progressed = True
            if not progressed:
                break
        return moved

    def versions(self) -> dict[int, int]:
        return self.store.versions()
