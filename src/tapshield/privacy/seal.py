"""AES-GCM for the identifiers that must be read back (a notice's phone or e-mail).

A sealed value is ``version (2 bytes) || nonce (12) || ciphertext+tag``; the
associated data binds it to its kind, its token and the key version, so a
ciphertext copied onto another customer's row, or relabelled with another
version, fails to open instead of sending one customer's notice to another.
Nonces are random (96 bits): safe for far more than the 2**32 encryptions per
key NIST allows before rotating, which rotation keeps us well under.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tapshield.privacy.keys import KeyProvider

PURPOSE = "seal"
_AAD = b"tapshield/pii/v1"


class SealError(ValueError):
    """A value that does not open: wrong row, wrong key, or altered."""


def _aad(kind: str, token: str, version: int) -> bytes:
    return b"|".join((_AAD, kind.encode(), token.encode(), str(version).encode()))


def version_of(blob: bytes) -> int:
    if len(blob) < 2 + 12 + 16:
        raise SealError("not a sealed value (too short)")
    return int.from_bytes(blob[:2], "big")


class Sealer:
    """Seals with the current ``seal`` key; opens with whichever version a value names."""

    def __init__(self, keys: KeyProvider) -> None:
        self.keys = keys
        self._aead: dict[int, AESGCM] = {}

    @property
    def current(self) -> int:
        return self.keys.current(PURPOSE)

    def _cipher(self, version: int) -> AESGCM:
        c = self._aead.get(version)
        if c is None:
            c = self._aead[version] = AESGCM(self.keys.key(PURPOSE, version))
        return c

    def seal(self, kind: str, token: str, plaintext: str, version: int | None = None) -> bytes:
        v = self.current if version is None else version
        nonce = os.urandom(12)
        ct = self._cipher(v).encrypt(nonce, plaintext.encode("utf-8"), _aad(kind, token, v))
        return v.to_bytes(2, "big") + nonce + ct

    def open(self, kind: str, token: str, blob: bytes) -> str:
        v = version_of(blob)
        try:
            pt = self._cipher(v).decrypt(blob[2:14], blob[14:], _aad(kind, token, v))
        except InvalidTag:
            raise SealError(f"the sealed {kind} of {token} does not open (altered, moved "
                            "from another row, or the wrong key)") from None
        return pt.decode("utf-8")
