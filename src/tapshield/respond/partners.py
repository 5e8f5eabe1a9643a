"""Joint response with payment partners: the shared incident record and its signatures.

Outbound, a partner whose part of the flow an incident touches (the card
network for ``channel=nfc``, the wallet provider for ``channel=wallet``) gets
the incident record as JSON at each lifecycle step. Inbound, a partner posts
its own status ("our node in Guangdong is down, recovery 30 min"), which is
attached to the incident's timeline and may resolve or re-scope it.

Both directions use one protocol (docs/respond.md):

* ``X-Tapshield-Timestamp``: Unix seconds when the body was signed;
* ``X-Tapshield-Signature``: ``v1=`` + hex HMAC-SHA-256 of
  ``timestamp + "." + body`` with the partner's shared secret;
* ``Idempotency-Key``: the same message sent again (a retry after a timeout)
  carries the same key, so the receiver applies it once.

A receiver rejects a signature that does not verify (compared in constant
time), a timestamp outside the replay window (default 300 s either way) and a
key it has already applied inside that window (a replayed request).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tapshield.incident import Incident
from tapshield.money import format_fen
from tapshield.timeutil import to_rfc3339

SIGNATURE_HEADER = "X-Tapshield-Signature"
TIMESTAMP_HEADER = "X-Tapshield-Timestamp"
KEY_HEADER = "Idempotency-Key"
REPLAY_WINDOW_S = 300
PARTNER_STATUSES = ("investigating", "identified", "monitoring", "resolved")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes, key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(secret, timestamp, body), KEY_HEADER: key}


class SignatureError(ValueError):
    """A partner message that must be refused (the reason is safe to return)."""


@dataclass(slots=True)
class ReplayGuard:
    """Keys already applied, kept for the replay window (a receiver's memory)."""

    window_s: int = REPLAY_WINDOW_S
    _seen: dict[str, int] = field(default_factory=dict)

    def verify(self, secret: str, headers: Mapping[str, str], body: bytes, now: int) -> str:
        """Check a request; returns its idempotency key. Raises :class:`SignatureError`.

        A key seen before is returned with ``seen=True`` semantics by
        :meth:`is_new`: verification alone does not consume it."""
        lower = {k.lower(): v for k, v in headers.items()}
        ts_text = lower.get(TIMESTAMP_HEADER.lower())
        sig = lower.get(SIGNATURE_HEADER.lower())
        key = lower.get(KEY_HEADER.lower())
        if not ts_text or not sig or not key:
            raise SignatureError(f"missing {TIMESTAMP_HEADER}, {SIGNATURE_HEADER} or {KEY_HEADER}")
        try:
            ts = int(ts_text)
        except ValueError:
            raise SignatureError(f"{TIMESTAMP_HEADER} is not Unix seconds") from None
        if abs(now - ts) > self.window_s:
            raise SignatureError(f"timestamp outside the {self.window_s} s replay window")
        if not hmac.compare_digest(signature(secret, ts, body), sig):
            raise SignatureError("signature does not verify")
        return key

    def is_new(self, key: str, now: int) -> bool:
        """Record ``key``; False if it was applied inside the window (a replay or a retry)."""
        for k in [k for k, t in self._seen.items() if now - t > 2 * self.window_s]:
            del self._seen[k]
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


@dataclass(frozen=True, slots=True)
class Partner:
    """A payment partner: what it owns (dimension values) and where it listens."""

    name: str
    owns: dict[str, str]
    url: str
    secret: str

    def concerned(self, scope: list[dict[str, str]], fired: Mapping[str, str] | None = None
                  ) -> bool:
        combos = [*scope, *([dict(fired)] if fired else [])]
        return any(c.get(k) == v for c in combos for k, v in self.owns.items())


def shared_record(incident: Incident, *, state: str, event: str, case_id: str,
                  tz: str | None = None, asks: list[str] | None = None) -> dict[str, Any]:
    """What a partner is told: the incident without any customer (counts, not people)."""
    return {
        "event": event,
        "incident_id": incident.id,
        "case_id": case_id,
        "state": state,
        "level": int(incident.level),
        "cause": incident.cause,
        "confidence": round(float(incident.confidence), 4),
        "scope": [dict(sorted(c.items())) for c in incident.scope],
        "start": to_rfc3339(incident.start, tz),
        "detected_at": to_rfc3339(incident.detected_at, tz),
        "end": to_rfc3339(incident.end, tz) if incident.end is not None else None,
        "evidence": list(incident.evidence),
        "failed_payments": int(incident.failed_payments),
        "affected_customers": int(incident.affected_users),
        "affected_merchants": int(incident.affected_merchants),
        "lost_amount": format_fen(incident.lost_fen),
        "asks": list(asks or []),
    }


def body_bytes(doc: Mapping[str, Any]) -> bytes:
    """The canonical body that is signed (sorted keys, no spaces, UTF-8)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class PartnerStatus:
    """A partner's own word on an incident."""

    partner: str
    incident_id: str
    status: str
    message: str
    at: datetime
    eta_minutes: int | None = None
    scope: list[dict[str, str]] | None = None
    """A corrected scope ("only Guangdong"), or ``None`` to leave it."""

    @classmethod
    def parse(cls, partner: str, doc: Mapping[str, Any], at: datetime) -> PartnerStatus:
        """Validate an inbound status (errors name the field)."""
        incident_id = doc.get("incident_id")
        if not isinstance(incident_id, str) or not incident_id:
            raise ValueError("incident_id: a non-empty string is required")
        status = doc.get("status")
        if status not in PARTNER_STATUSES:
            raise ValueError(f"status: one of {', '.join(PARTNER_STATUSES)}")
        message = doc.get("message", "")
        if not isinstance(message, str) or len(message) > 2000:
            raise ValueError("message: a string of at most 2000 characters")
        eta = doc.get("eta_minutes")
        if eta is not None and (not isinstance(eta, int) or isinstance(eta, bool) or eta < 0):
            raise ValueError("eta_minutes: a non-negative integer")
        scope = doc.get("scope")
        if scope is not None and not (
                isinstance(scope, list) and all(
                    isinstance(c, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in c.items()) for c in scope)):
            raise ValueError("scope: a list of {dimension: value} objects")
        return cls(partner, incident_id, str(status), message, at, eta,
                   [dict(c) for c in scope] if scope is not None else None)
