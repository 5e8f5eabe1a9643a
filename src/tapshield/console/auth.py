"""Who is looking at the console, and how strongly they proved it.

A person signs in either with a **passkey** (WebAuthn, user verification
required: the device's biometric or PIN) or, as the fallback, with one of the
service's **API keys**. Either way the browser gets a signed session cookie
that names the API key it stands for, so the service's roles decide what each
person sees and may do, and disabling the key in the keys file ends the session
on its next request. Passkeys are enrolled by someone already signed in with
their key: the key is the enrolment credential, the passkey the everyday one.

With ``console.passkey_for_actions`` (the default) only a passkey session may
act on incidents (acknowledge, assign, note, resolve, silence): reading with a
copied API key is possible, changing what on-call sees needs the person.

Nothing is kept in server memory, so any worker process answers any request:
sessions and WebAuthn challenges are HMAC-signed cookies (SameSite=Strict,
HttpOnly), the signing secret and the passkeys live in files beside the keys
file (mode 0600, written atomically under the keys file's lock discipline).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tapshield.console.ports import Principal
from tapshield.fileio import write_text_atomic

SESSION_COOKIE = "tapshield_console"
CHALLENGE_COOKIE = "tapshield_console_challenge"
CHALLENGE_TTL_S = 120.0

CONSOLE_ROLES = ("operator", "risk", "credit", "read-only")
"""Roles with a console; gateway (a machine) and partner keys use the API only."""

PAGES: dict[str, frozenset[str]] = {
    "now": frozenset(CONSOLE_ROLES),
    "incidents": frozenset(CONSOLE_ROLES),
    "impact": frozenset({"operator", "credit", "read-only"}),
    "risk": frozenset({"operator", "risk", "read-only"}),
}
"""Which role sees which page (credit officers have no use for rule hit rates, the
risk team none for borrowers' covenants)."""

ACTORS = frozenset({"operator"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _write_private(path: Path, text: str) -> None:
    write_text_atomic(path, text, mode=0o600)


@contextlib.contextmanager
def _locked(keys_file: Path) -> Iterator[None]:
    """The console's own lock beside the keys file (its secret and passkeys files)."""
    lock = keys_file.with_name(keys_file.name + ".console.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def load_secret(keys_file: Path) -> bytes:
    """The cookie-signing secret beside the keys file, created once (shared by workers)."""
    path = keys_file.with_name(keys_file.name + ".console-secret")
    with _locked(keys_file):
        if not path.exists():
            _write_private(path, secrets.token_hex(32) + "\n")
        return bytes.fromhex(path.read_text("utf-8").strip())


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in person: the key they stand for and how they signed in."""

    principal: Principal
    method: str
    """``passkey`` or ``key``."""
    expires: float
    token: str

    @property
    def csrf(self) -> str:
        return hashlib.sha256(("csrf:" + self.token).encode()).hexdigest()[:32]

    @property
    def actor(self) -> str:
        p = self.principal
        return f"{p.key_id}" + (f" ({p.name})" if p.name else "") + f" via console {self.method}"

    def sees(self, page: str) -> bool:
        return self.principal.role in PAGES.get(page, frozenset())

    def may_act(self, passkey_required: bool) -> bool:
        return self.principal.role in ACTORS and (
            self.method == "passkey" or not passkey_required)


class Signer:
    """HMAC-SHA256 signed, expiring JSON tokens (sessions and challenges)."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def sign(self, purpose: str, doc: dict[str, Any]) -> str:
        body = _b64(json.dumps(doc, separators=(",", ":")).encode())
        mac = hmac.new(self.secret, f"{purpose}.{body}".encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def verify(self, purpose: str, token: str | None) -> dict[str, Any] | None:
        if not token or token.count(".") != 1:
            return None
        body, mac = token.split(".")
        want = hmac.new(self.secret, f"{purpose}.{body}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(want, _unb64(mac)):
                return None
            doc = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        if not isinstance(doc, dict) or float(doc.get("exp", 0)) < time.time():
            return None
        return doc


def new_session_token(signer: Signer, key_id: str, method: str, hours: float) -> str:
    now = time.time()
    return signer.sign("session", {"k": key_id, "m": method, "iat": int(now),
                                   "exp": int(now + hours * 3600), "n": secrets.token_hex(8)})


def read_session(signer: Signer, token: str | None,
                 lookup: Callable[[str], Principal | None]) -> Session | None:
    """The session of a cookie, or ``None`` (bad signature, expired, key disabled)."""
    doc = signer.verify("session", token)
    if doc is None or doc.get("m") not in ("passkey", "key"):
        return None
    principal = lookup(str(doc.get("k")))
    if principal is None or principal.role not in CONSOLE_ROLES:
        return None
    return Session(principal, str(doc["m"]), float(doc["exp"]), str(token))


class PasskeyStore:
    """Registered passkeys: credential id -> (API key id, public key, sign count)."""

    def __init__(self, keys_file: Path) -> None:
        self.keys_file = keys_file
        self.path = keys_file.with_name(keys_file.stem + "-passkeys.json")

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"version": 1, "passkeys": {}}
        doc = json.loads(self.path.read_text("utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("passkeys"), dict):
            return {"version": 1, "passkeys": {}}
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        _write_private(self.path, json.dumps(doc, indent=1) + "\n")

    def get(self, credential_id: str) -> dict[str, Any] | None:
        entry = self._read()["passkeys"].get(credential_id)
        return dict(entry) if isinstance(entry, dict) else None

    def of_key(self, key_id: str) -> list[dict[str, Any]]:
        return [{"id": cid, **e} for cid, e in self._read()["passkeys"].items()
                if e.get("key_id") == key_id]

    def add(self, credential_id: bytes, key_id: str, public_key: bytes, sign_count: int,
            name: str) -> None:
        with _locked(self.keys_file):
            doc = self._read()
            doc["passkeys"][_b64(credential_id)] = {
                "key_id": key_id, "public_key": _b64(public_key), "sign_count": sign_count,
                "name": name, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "last_used_at": None}
            self._write(doc)

    def used(self, credential_id: str, sign_count: int) -> None:
        with _locked(self.keys_file):
            doc = self._read()
            entry = doc["passkeys"].get(credential_id)
            if entry is None:
                return
            entry["sign_count"] = sign_count
            entry["last_used_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            self._write(doc)


def public_key_of(entry: dict[str, Any]) -> bytes:
    return _unb64(str(entry["public_key"]))


def b64(data: bytes) -> str:
    return _b64(data)


def unb64(text: str) -> bytes:
    return _unb64(text)
