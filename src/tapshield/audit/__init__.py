"""A transparency log for every decision tapshield takes (RFC 9162 style).

Records are appended as canonical JSON leaves of a Merkle tree stored in the
database (``audit_log`` and its tiles); tree heads are signed with Ed25519 at
intervals as C2SP checkpoints; inclusion and consistency proofs are exactly
RFC 9162's, so a partner or an auditor checks them offline, and
``tapshield audit verify`` re-checks the whole log. See docs/trust.md.

The domain code needs only the standard library and ``cryptography``
(Ed25519); the tables live in ``tapshield.storage.audit``.
"""

from __future__ import annotations

from tapshield.audit.log import AuditLog, AuditStore, Entry, HeadPolicy, InclusionProof, Record

__all__ = ["AuditLog", "AuditStore", "Entry", "HeadPolicy", "InclusionProof", "Record"]
