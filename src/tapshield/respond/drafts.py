"""Drafts a person finishes: the regulator's notifications and the post-mortem.

**Regulatory.** From the incident record and its classification (computed by
``tapshield.impact``: DORA major or not, the PBOC grade), the reports due and
their deadlines:

* DORA (Regulation (EU) 2022/2554 art. 19 and the RTS/ITS on reporting): a
  *major* incident's initial notification within 4 hours of classification
  and at most 24 hours after detection; the intermediate report within 72
  hours of the initial notification; the final report within one month of
  the (last) intermediate report. Deadlines are computed from the detection
  and classification times on the record, so a late classification shows.
* PBOC grades: the reporting duties per grade are institution settings in
  :data:`PBOC_DUTIES` (the hours an institution commits to; check them
  against the 2025 measures' text before relying on them in a filing).

**Post-mortem.** Timeline, detection delay, cause and evidence, scope,
failed payments and money, what failover saved, notices sent, partner
updates, actions and owners, as Markdown from the record and the timeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from tapshield.incident import Incident
from tapshield.levels import LEVEL_NAMES
from tapshield.money import format_fen
from tapshield.respond.lifecycle import Lifecycle
from tapshield.timeutil import to_rfc3339

DORA_INITIAL_AFTER_CLASSIFICATION = timedelta(hours=4)
DORA_INITIAL_AFTER_DETECTION = timedelta(hours=24)
DORA_INTERMEDIATE = timedelta(hours=72)
DORA_FINAL_MONTHS = 1

PBOC_DUTIES: dict[str, dict[str, Any]] = {
    "especially_major": {"initial_hours": 1, "written_hours": 24, "final_days": 5,
                         "source": "institution setting: check against the PBOC 2025 measures"},
    "major": {"initial_hours": 1, "written_hours": 24, "final_days": 5,
              "source": "institution setting: check against the PBOC 2025 measures"},
    "relatively_major": {"initial_hours": 2, "written_hours": 24, "final_days": 5,
                         "source": "institution setting: check against the PBOC 2025 measures"},
    "general": {"initial_hours": 24, "written_hours": None, "final_days": 10,
                "source": "institution setting: check against the PBOC 2025 measures"},
}


def _add_month(ts: datetime, months: int) -> datetime:
    month = ts.month - 1 + months
    year = ts.year + month // 12
    month = month % 12 + 1
    for day in (ts.day, 30, 29, 28):
        try:
            return ts.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise ValueError("unreachable")  # pragma: no cover


def regulatory_drafts(incident: Incident, classification: Mapping[str, Any] | None, *,
                      classified_at: datetime | None = None, tz: str | None = None
                      ) -> dict[str, Any]:
    """The reports due for ``incident`` with deadlines and draft contents."""
    cls = classification or {}
    dora = cls.get("dora") or {}
    prc = cls.get("prc") or {}
    detected = incident.detected_at
    classified = classified_at or detected
    facts = {
        "incident_id": incident.id, "cause": incident.cause,
        "start": to_rfc3339(incident.start, tz), "detected_at": to_rfc3339(detected, tz),
        "end": to_rfc3339(incident.end, tz) if incident.end else None,
        "scope": incident.scope, "failed_payments": incident.failed_payments,
        "affected_customers": incident.affected_users,
        "affected_merchants": incident.affected_merchants,
        "lost_amount": format_fen(incident.lost_fen), "evidence": list(incident.evidence),
    }
    out: dict[str, Any] = {"incident_id": incident.id, "facts": facts, "reports": []}
    if dora.get("major"):
        initial = min(classified + DORA_INITIAL_AFTER_CLASSIFICATION,
                      detected + DORA_INITIAL_AFTER_DETECTION)
        intermediate = initial + DORA_INTERMEDIATE
        final = _add_month(intermediate, DORA_FINAL_MONTHS)
        for name, due, basis in (
                ("dora_initial", initial, "4 h after classification, at most 24 h after "
                 "detection"),
                ("dora_intermediate", intermediate, "72 h after the initial notification"),
                ("dora_final", final, "one month after the intermediate report")):
            out["reports"].append({"report": name, "due": to_rfc3339(due, tz), "basis": basis,
                                   "criteria_met": dora.get("criteria_met", []),
                                   "status": "draft"})
    grade = prc.get("grade")
    duty = PBOC_DUTIES.get(str(grade)) if grade else None
    if duty is not None:
        out["reports"].append({
            "report": "pboc_initial", "grade": grade, "label": prc.get("label", ""),
            "due": to_rfc3339(detected + timedelta(hours=duty["initial_hours"]), tz),
            "basis": f"{duty['initial_hours']} h after detection ({duty['source']})",
            "status": "draft"})
        if duty["written_hours"] is not None:
            out["reports"].append({
                "report": "pboc_written", "grade": grade,
                "due": to_rfc3339(detected + timedelta(hours=duty["written_hours"]), tz),
                "basis": f"{duty['written_hours']} h after detection ({duty['source']})",
                "status": "draft"})
        end = incident.end or detected
        out["reports"].append({
            "report": "pboc_final", "grade": grade,
            "due": to_rfc3339(end + timedelta(days=duty["final_days"]), tz),
            "basis": f"{duty['final_days']} days after the incident ended ({duty['source']})",
            "status": "draft"})
    if not out["reports"]:
        out["note"] = ("below every reporting threshold on the figures so far: no report is "
                       "due; re-check if the incident grows")
    return out


def postmortem_markdown(incident: Incident, lifecycle: Lifecycle, *,
                        communication: Mapping[str, Any] | None = None,
                        saved_by_failover: int | None = None,
                        steps: Sequence[Mapping[str, Any]] = (), tz: str | None = None) -> str:
    """The post-mortem's first draft: facts from the record, blanks for judgement."""
    delay = (incident.detected_at - incident.start).total_seconds() / 60
    level = LEVEL_NAMES.get(int(incident.level), str(incident.level))
    scope = "; ".join(", ".join(f"{k}={v}" for k, v in c.items())
                      for c in incident.scope) or "the whole flow"
    lines = [
        f"# Post-mortem (draft): {incident.id}", "",
        f"* **Cause:** {incident.cause} (confidence {incident.confidence:.2f}); level {level}",
        f"* **Scope:** {scope}",
        f"* **Start / detected / end:** {to_rfc3339(incident.start, tz)} / "
        f"{to_rfc3339(incident.detected_at, tz)} / "
        f"{to_rfc3339(incident.end, tz) if incident.end else 'open'}",
        f"* **Detection delay:** {delay:.1f} min",
        f"* **Failed payments:** {incident.failed_payments:,} taps that never succeeded, "
        f"{incident.affected_users:,} customers, {incident.affected_merchants:,} merchants, "
        f"CNY {format_fen(incident.lost_fen)}",
    ]
    if saved_by_failover is not None:
        lines.append(f"* **Saved by failover:** {saved_by_failover:,} payments")
    if communication:
        lines.append(f"* **Customers told:** {communication.get('notices_sent', 0):,} notices, "
                     f"{communication.get('followups_sent', 0):,} follow-ups; partner updates: "
                     f"{communication.get('webhooks_sent', 0):,}")
    lines += ["", "## Evidence", *[f"* {e}" for e in incident.evidence], "",
              "## Timeline", "", "| when | who | what | why |", "|---|---|---|---|"]
    for e in lifecycle.timeline:
        lines.append(f"| {to_rfc3339(e.at, tz)} | {e.actor} | {e.kind}: {e.what} | "
                     f"{e.why.replace('|', '/')} |")
    lines += ["", "## Playbook steps", "", "| step | outcome | done |", "|---|---|---|"]
    for s in steps:
        lines.append(f"| {s['says']} | {s['outcome']} | {'yes' if s['done'] else 'no'} |")
    lines += ["", "## Actions and owners", "", "| action | owner | due |", "|---|---|---|",
              "| _to be agreed in the review_ | | |", ""]
    return "\n".join(lines)
