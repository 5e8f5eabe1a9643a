"""Incidents to assess: the pipeline's ``incidents.json`` or a rehearsal's ``truth.json``.

A drill or a what-if ("what would this fault cost the loan book?") starts
from the simulator's ground truth instead of detected incidents. Its faults
that must page become incidents with the true scope, window and cause;
decoys are skipped (they are not incidents).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tapshield.errors import ContractError
from tapshield.incident import Incident, first_line, incidents_from_list, read_json_file
from tapshield.timeutil import parse_rfc3339


def load_incidents(path: Path | str) -> list[Incident]:
    """Read ``incidents.json`` (a JSON array) or a simulator ``truth.json`` (an object)."""
    p = Path(path)
    data = read_json_file(p, "an incidents file")
    if isinstance(data, list):
        return incidents_from_list(data, p.name)
    if isinstance(data, dict) and isinstance(data.get("faults"), list):
        try:
            incidents = incidents_from_truth(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ContractError(
                f"{p.name}: not a valid truth file (a fault lacks or mangles {first_line(exc)})"
            ) from None
    else:
        raise ContractError(
            f"{p.name}: expected incidents.json (an array) or truth.json (faults)"
        )
    for i in incidents:
        if i.end is not None and i.end < i.start:
            raise ContractError(
                f"{p.name}: incident {i.id!r} ends ({i.end.isoformat()}) before it starts "
                f"({i.start.isoformat()})"
            )
    return incidents


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
