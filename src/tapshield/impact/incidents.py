"""Incidents to assess: the pipeline's ``incidents.json`` or a rehearsal's ``truth.json``.

A drill or a what-if ("what would this fault cost the loan book?") starts
from the simulator's ground truth instead of detected incidents. Its faults
that must page become incidents with the true scope, window and cause;
decoys are skipped (they are not incidents).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tapshield.errors import ContractError
from tapshield.incident import Incident, read_incidents
from tapshield.timeutil import parse_rfc3339


def load_incidents(path: Path | str) -> list[Incident]:
    """Read ``incidents.json`` (a JSON array) or a simulator ``truth.json`` (an object)."""
    p = Path(path)
    if not p.exists():
        raise ContractError(f"{p}: no such file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ContractError(f"{p.name}: not valid JSON ({exc})") from exc
    if isinstance(data, list):
        try:
            return read_incidents(p)
        except Exception as exc:  # jsonschema.ValidationError, KeyError, ValueError
            raise ContractError(f"{p.name}: not a valid incidents.json ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("faults"), list):
        return incidents_from_truth(data)
    raise ContractError(f"{p.name}: expected incidents.json (an array) or truth.json (faults)")


def incidents_from_truth(truth: dict[str, Any]) -> list[Incident]:
    out = []
    for f in truth["faults"]:
        if f.get("decoy") or not f.get("must_page", True):
            continue
        start = parse_rfc3339(f["start"])
        out.append(Incident(
            id=str(f["id"]), start=start, detected_at=start,
            end=parse_rfc3339(f["end"]) if f.get("end") else None,
            level=1, scope=[dict(c) for c in f.get("scope", [])],
            cause=str(f.get("cause", "unknown")), confidence=1.0,
            evidence=["ground truth of a simulated fault"],
            failed_payments=int(f.get("failed_payments", 0)),
            affected_users=int(f.get("affected_users", 0)),
            affected_merchants=int(f.get("affected_merchants", 0)),
        ))
    return out
