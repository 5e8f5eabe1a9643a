"""Signed tree heads as C2SP checkpoints in signed notes, with Ed25519 keys.

A tree head is the text

    <origin>
    <tree size>
    <base64 root hash>
    timestamp <RFC 3339, UTC>

signed as a *signed note* (the format of Go's checksum database, Sigstore's
Rekor v2 and the C2SP ``checkpoint`` / ``signed-note`` specifications): an
empty line, then one line per signature, ``— <key name> <base64(key hash ||
signature)>``. The key hash is the first 4 bytes of ``SHA-256(name || "\\n" ||
0x01 || public key)``. Because the format is the one the transparency-log
ecosystem uses, a partner can keep and check our heads with off-the-shelf
tools (a witness, Go's ``note`` package) and several parties can co-sign one
head by adding their own signature line.

Keys are written the way that ecosystem writes them too: a verifier key is
``<name>+<hash hex>+<base64(0x01 || public key)>`` (one line, safe to publish,
pin it at partners and auditors), a signer key ``PRIVATE+KEY+<name>+<hash
hex>+<base64(0x01 || seed)>`` (keep it out of the database; see
docs/trust.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tapshield.audit.canonical import format_ts
from tapshield.audit.merkle import HASH_SIZE

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # em dash and a space


class NoteError(ValueError):
    """A head that cannot be trusted: malformed, unsigned, or signed by an unknown key."""


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise ValueError(f"key name {name!r}: no spaces or '+' allowed, and not empty")


def _b64d(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not base64") from None


@dataclass(frozen=True, slots=True)
class Verifier:
    """A public key pinned by name: what partners and auditors keep."""

    name: str
    public: bytes

    @property
    def key_hash(self) -> bytes:
        return _key_hash(self.name, self.public)

    def vkey(self) -> str:
        raw = base64.b64encode(bytes([ALG_ED25519]) + self.public).decode()
        return f"{self.name}+{self.key_hash.hex()}+{raw}"

    @classmethod
    def from_vkey(cls, text: str) -> Verifier:
        parts = text.strip().split("+", 2)  # the base64 key may hold '+' itself
        if len(parts) != 3:
            raise ValueError("a verifier key reads <name>+<hash>+<key>")
        name, hexhash, raw = parts
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("verifier key: the key part is not base64") from None
        if len(data) != 33 or data[0] != ALG_ED25519:
            raise ValueError("verifier key: not an Ed25519 key")
        v = cls(name, data[1:])
        if v.key_hash.hex() != hexhash.lower():
            raise ValueError("verifier key: the hash does not match the name and key")
        return v

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class NoteSigner(Protocol):
    """What signs heads: :class:`Signer` holds the key in memory; a KMS or an HSM
    implementation would call its sign operation (Ed25519) instead."""

    @property
    def name(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...

    def verifier(self) -> Verifier: ...


class Signer:
    """The log's signing key (Ed25519)."""

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = key
        self.public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_skey(cls, text: str) -> Signer:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise ValueError("a signer key reads PRIVATE+KEY+<name>+<hash>+<key>")
        name, hexhash, raw = parts[2:]
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("signer key: the key part is not base64") from None
        if len(data) != 33 or data[0] != ALG_ED25519:
            raise ValueError("signer key: not an Ed25519 key")
        s = cls.from_seed(name, data[1:])
        if s.verifier().key_hash.hex() != hexhash.lower():
            raise ValueError("signer key: the hash does not match the name and key")
        return s

    def skey(self) -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        raw = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier().key_hash.hex()}+{raw}"

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.public)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's name, its size and root, and when it was signed."""

    origin: str
    size: int
    root: bytes
    timestamp: datetime

    def body(self) -> str:
        return (f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"
                f"timestamp {format_ts(self.timestamp)}\n")

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        lines = body.split("\n")
        if len(lines) < 5 or lines[-1] != "":
            raise NoteError("a checkpoint has an origin, a size, a root and a timestamp line")
        origin, size_s, root_s, ts_line = lines[:4]
        if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
            raise NoteError(f"tree size {size_s!r} is not a decimal number")
        root = _b64d(root_s, "the root hash")
        if len(root) != HASH_SIZE:
            raise NoteError("the root hash is not 32 bytes")
        if not ts_line.startswith("timestamp "):
            raise NoteError("the fourth line is not a timestamp")
        try:
            ts = datetime.strptime(ts_line[10:], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            raise NoteError(f"bad timestamp {ts_line[10:]!r}") from None
        return cls(origin, int(size_s), root, ts)


def sign_note(body: str, signer: NoteSigner) -> str:
    """``body`` followed by a blank line and ``signer``'s signature line."""
    sig = signer.sign(body.encode("utf-8"))
    blob = base64.b64encode(signer.verifier().key_hash + sig).decode()
    return f"{body}\n{SIG_PREFIX}{signer.name} {blob}\n"


def add_signature(note: str, signer: NoteSigner) -> str:
    """Co-sign an existing note (a witness or a partner adds its own line)."""
    body, _ = split_note(note)
    sig = signer.sign(body.encode("utf-8"))
    blob = base64.b64encode(signer.verifier().key_hash + sig).decode()
    return f"{note}{SIG_PREFIX}{signer.name} {blob}\n"


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """``(body, [(name, key hash, signature)])``; raises :class:`NoteError` if malformed."""
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("not a signed note (no blank line before the signatures)")
    body = note[: cut + 1]
    sigs: list[tuple[str, bytes, bytes]] = []
    for line in note[cut + 2 :].splitlines():
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"not a signature line: {line[:40]!r}")
        parts = line[len(SIG_PREFIX):].split(" ")
        if len(parts) != 2:
            raise NoteError("a signature line reads '— <name> <base64>'")
        blob = _b64d(parts[1], "a signature")
        if len(blob) < 5:
            raise NoteError("a signature is too short")
        sigs.append((parts[0], blob[:4], blob[4:]))
    if not sigs:
        raise NoteError("the note carries no signature")
    return body, sigs


def open_note(note: str, verifiers: Iterable[Verifier]) -> tuple[Checkpoint, list[str]]:
    """The checkpoint of ``note`` and the names of the trusted keys that signed it.

    Raises :class:`NoteError` unless at least one signature verifies with a
    key in ``verifiers``; a signature by a known key that does *not* verify
    is an error too (a forged line is not silently skipped).
    """
    body, sigs = split_note(note)
    known = {(v.name, v.key_hash): v for v in verifiers}
    good: list[str] = []
    for name, khash, sig in sigs:
        v = known.get((name, khash))
        if v is None:
            continue
        if not v.verify(body.encode("utf-8"), sig):
            raise NoteError(f"the signature by {name} does not verify")
        good.append(name)
    if not good:
        names = ", ".join(n for n, _, _ in sigs)
        raise NoteError(f"no signature by a trusted key (signed by: {names})")
    return Checkpoint.parse(body), good
