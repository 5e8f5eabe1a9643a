"""API keys: created once, stored hashed, checked on every request.

A key looks like ``tsk_<id>_<secret>``: ``id`` (10 hex characters) names the
key in logs and in the keys file, ``secret`` is 256 random bits. The file keeps
only ``sha256(key)``: a stolen keys file does not let anyone call the
service. A fast hash is the right one here, unlike for passwords: with 256
random bits there is nothing to brute-force, and a slow KDF would cost every
request (GitHub and Stripe store their tokens the same way).

The keys file is JSON (``{"version": 1, "keys": [...]}``), written atomically
under an exclusive lock with mode 0600, and re-read by a running service when
it changes, so ``tapshield keys create`` takes effect without a restart.
Disable a key by setting ``"disabled": true`` in its entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tapshield.errors import ContractError
from tapshield.fileio import write_text_atomic
from tapshield.service.config import ROLES

PREFIX = "tsk_"
PARTNER_DIMENSIONS = ("channel", "region", "merchant_id", "merchant_category", "carrier")
"""What a partner key can be bound to: a partner reads incidents naming it."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, role and (for partners) what it owns."""

    key_id: str
    role: str
    name: str = ""
    partner: Mapping[str, str] = field(default_factory=dict)
    per_second: float | None = None
    burst: float | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh ``(key_id, key)``."""
    key_id = secrets.token_hex(5)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"version": 1, "keys": []}
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(f"{path}: not a tapshield keys file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(
            doc.get("keys"), list):
        raise ContractError(f"{path}: not a tapshield keys file (version 1 with a 'keys' list)")
    return doc


def create_key(path: Path, role: str, *, name: str = "",
               partner: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Append a new key of ``role`` to the keys file; returns ``(key_id, key)``.

    The key itself is never written anywhere: show it to the person once.
    """
    if role not in ROLES:
        raise ContractError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    partner = dict(partner or {})
    if role == "partner" and not partner:
        raise ContractError("a partner key needs what it owns, e.g. --partner channel=nfc")
    if role != "partner" and partner:
        raise ContractError("--partner applies to partner keys only")
    unknown = sorted(set(partner) - set(PARTNER_DIMENSIONS))
    if unknown:
        raise ContractError(f"unknown partner dimension(s) {', '.join(unknown)}; known: "
                            f"{', '.join(PARTNER_DIMENSIONS)}")
    key_id, key = new_key()
    entry = {"id": key_id, "role": role, "name": name, "sha256": hash_key(key),
             "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
             "partner": partner, "disabled": False}
    with _locked(path):
        doc = _read(path)
        doc["keys"].append(entry)
        write_text_atomic(path, json.dumps(doc, indent=1) + "\n", mode=0o600)
    return key_id, key


class KeyStore:
    """The keys of a running service, re-read when the file changes."""

    def __init__(self, path: Path, *, recheck_s: float = 1.0) -> None:
        self.path = path
        self.recheck_s = recheck_s
        self._by_id: dict[str, tuple[str, Principal]] = {}
        self._verified: dict[str, Principal] = {}
        """Keys already checked (cleared whenever the file is re-read)."""
        self._mtime: float | None = None
        self._next_check = 0.0
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> int:
        """Read the file now; returns the number of usable keys."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        doc = _read(self.path)
        table: dict[str, tuple[str, Principal]] = {}
        for e in doc["keys"]:
            if not isinstance(e, dict) or e.get("disabled") or e.get("role") not in ROLES:
                continue
            rate = e.get("rate_limit") or {}
            table[str(e["id"])] = (str(e["sha256"]), Principal(
                key_id=str(e["id"]), role=str(e["role"]), name=str(e.get("name") or ""),
                partner={str(k): str(v) for k, v in (e.get("partner") or {}).items()},
                per_second=rate.get("per_second"), burst=rate.get("burst")))
        with self._lock:
            self._by_id = table
            self._mtime = mtime
            self._verified = {}
        return len(table)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.recheck_s
        try:
            mtime: float | None = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            with contextlib.suppress(ContractError):  # a half-edited file: keep the keys
                self.reload()

    def authenticate(self, key: str) -> Principal | None:
        """The principal of ``key``, or ``None`` (unknown, disabled, malformed)."""
        self._maybe_reload()
        hit = self._verified.get(key)
        if hit is not None:
            return hit
        if not key.startswith(PREFIX):
            return None
        key_id, sep, _ = key[len(PREFIX):].partition("_")
        if not sep:
            return None
        found = self._by_id.get(key_id)
        if found is None:
            return None
        digest, principal = found
        if not hmac.compare_digest(digest, hash_key(key)):
            return None
        if len(self._verified) < 10_000:
            self._verified[key] = principal
        return principal

    def principal(self, key_id: str) -> Principal | None:
        """The principal of an enabled key by its id (a console session names its key,
        so disabling the key ends the session)."""
        self._maybe_reload()
        found = self._by_id.get(key_id)
        return found[1] if found is not None else None

    def __len__(self) -> int:
        return len(self._by_id)
