"""Tokens: keyed hashes of identifiers, for joining and counting without the raw value.

``token(kind, value)`` is ``HMAC-SHA-256(key, kind || 0x00 || value)``
truncated to 128 bits (collisions need ~2**64 identifiers), base32, prefixed
with the kind and the key version: ``usr1_kq4g...``. The kind is inside the
MAC, so a user id and a device id that happen to be the same string get
different tokens; the version is outside, so a reader knows which key made it.
Without the key a token cannot be reversed or recomputed from a guessed phone
number (unlike a plain hash, which a dictionary of all 10^11 Chinese mobile
numbers inverts in minutes).
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping

import polars as pl

from tapshield.privacy.keys import KeyProvider

PURPOSE = "token"
KINDS: dict[str, str] = {"user": "usr", "device": "dev", "phone": "tel", "email": "eml"}
"""Identifier kinds and their token prefixes."""
EVENT_COLUMNS: dict[str, str] = {"user_id": "user", "device_id": "device"}
"""Personal columns of the event contract (merchants are businesses: not tokenised)."""


def _b32(b: bytes) -> str:
    return base64.b32encode(b).decode().rstrip("=").lower()


class Tokenizer:
    """Tokens with the provider's current ``token`` key (or a given version)."""

    def __init__(self, keys: KeyProvider, version: int | None = None) -> None:
        self.keys = keys
        self.version = version if version is not None else keys.current(PURPOSE)
        self._key = keys.key(PURPOSE, self.version)

    def token(self, kind: str, value: str) -> str:
        prefix = KINDS.get(kind)
        if prefix is None:
            raise ValueError(f"unknown identifier kind {kind!r} (one of {', '.join(KINDS)})")
        if kind == "email":
            value = value.strip().lower()
        elif kind == "phone":
            value = "".join(c for c in value if c.isdigit() or c == "+")
        mac = hmac.digest(self._key, kind.encode() + b"\x00" + value.encode("utf-8"), "sha256")
        return f"{prefix}{self.version}_{_b32(mac[:16])}"

    def series(self, kind: str, values: pl.Series) -> pl.Series:
        """Tokens of a column, hashing each distinct value once."""
        uniq = values.drop_nulls().unique()
        mapping = pl.DataFrame({
            "v": uniq, "t": [self.token(kind, v) for v in uniq.cast(pl.String).to_list()]},
            schema={"v": values.dtype, "t": pl.String()})
        out = values.to_frame("v").join(mapping, on="v", how="left", maintain_order="left")
        return out["t"].alias(values.name)

    def frame(self, df: pl.DataFrame, columns: Mapping[str, str] | None = None) -> pl.DataFrame:
        """``df`` with its personal columns (default: ``user_id``, ``device_id``) tokenised."""
        cols = EVENT_COLUMNS if columns is None else columns
        return df.with_columns([self.series(kind, df[c]) for c, kind in cols.items()
                                if c in df.columns])
