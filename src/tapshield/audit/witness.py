"""Signed heads kept outside the database, and where the log's keys come from.

A *witness file* is what a partner, an auditor or a second team keeps: one
JSON object per line, ``{"note": "<signed checkpoint>", "received": "..."}``,
appended whenever a new head is published (``tapshield audit head --witness
FILE``, or the service's head callback). Because the heads in it are signed,
the file itself needs no protection against forgery, only against loss; a
rewrite of the log's history contradicts them however consistent the database
was made to look.

Keys: the signing key is read from a file or an environment variable, never
from the database; verifier keys likewise (a verifier that read the public
key from the database an insider controls would trust the insider).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from tapshield.audit.checkpoint import NoteError, Signer, Verifier, split_note

SIGNER_ENV = "TAPSHIELD_AUDIT_SIGNER"
"""The signer key itself (``PRIVATE+KEY+...``), e.g. injected by a secrets manager."""
SIGNER_FILE_ENV = "TAPSHIELD_AUDIT_SIGNER_FILE"
"""A file holding the signer key (mode 0600)."""
VERIFIER_ENV = "TAPSHIELD_AUDIT_VERIFIER"
"""Verifier keys (``name+hash+key``), separated by newlines or commas."""


def read_witness(path: Path) -> list[tuple[str, str]]:
    """``(source, note)`` per line of a witness file."""
    out: list[tuple[str, str]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            note = json.loads(line)["note"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{path.name} line {n}: not a witness record") from None
        if not isinstance(note, str):
            raise ValueError(f"{path.name} line {n}: the note is not text")
        out.append((f"{path.name} line {n}", note))
    return out


def append_witness(path: Path, note: str) -> bool:
    """Append ``note`` unless it is already the file's last head; True if written."""
    split_note(note)  # refuse to record something that is not a signed note
    if path.exists():
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if lines:
            try:
                if json.loads(lines[-1]).get("note") == note:
                    return False
            except ValueError:
                pass
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = {"note": note, "received": datetime.now(UTC).isoformat(timespec="seconds")}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return True


def load_signer(path: Path | None = None) -> Signer | None:
    """The signer key from ``path``, else ``$TAPSHIELD_AUDIT_SIGNER(_FILE)``, else None."""
    if path is not None:
        return Signer.from_skey(path.read_text(encoding="utf-8"))
    text = os.environ.get(SIGNER_ENV)
    if text:
        return Signer.from_skey(text)
    file = os.environ.get(SIGNER_FILE_ENV)
    if file:
        return Signer.from_skey(Path(file).read_text(encoding="utf-8"))
    return None


def parse_verifiers(items: Iterable[str]) -> list[Verifier]:
    """Verifier keys given as key text or as files holding one key per line."""
    out: list[Verifier] = []
    for item in items:
        p = Path(item)
        text = p.read_text(encoding="utf-8") if "+" not in item or p.is_file() else item
        for part in text.replace(",", "\n").splitlines():
            if part.strip():
                out.append(Verifier.from_vkey(part))
    return out


def env_verifiers() -> list[Verifier]:
    text = os.environ.get(VERIFIER_ENV, "")
    return parse_verifiers([text]) if text.strip() else []


def write_keypair(directory: Path, name: str) -> tuple[Path, Path, Signer]:
    """Generate a signing key: ``audit.skey`` (0600) and ``audit.vkey`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    skey, vkey = directory / "audit.skey", directory / "audit.vkey"
    if skey.exists():
        raise FileExistsError(f"{skey} exists: keys are never overwritten")
    signer = Signer.generate(name)
    fd = os.open(skey, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(signer.skey() + "\n")
    vkey.write_text(signer.verifier().vkey() + "\n", encoding="utf-8")
    return skey, vkey, signer


__all__ = ["NoteError", "append_witness", "env_verifiers", "load_signer", "parse_verifiers",
           "read_witness", "write_keypair"]
