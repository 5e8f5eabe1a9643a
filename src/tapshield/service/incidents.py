"""Incidents and alerts as the pipeline stored them, and what people did about them.

The pipeline owns ``incidents`` and ``alerts`` (``tapshield.storage``); the
service only reads them, filtered and paged in SQL. What on-call does with an
incident (acknowledge, assign, note, resolve) is the service's own record in
``service_incident_actions``: who (the API key's id and name) and when, never
rewriting the pipeline's measurement of the wave.

A ``partner`` key reads only incidents naming what it owns: an incident whose
scope (or the slice that fired it) has one of the partner's dimension values,
e.g. ``channel=nfc`` for the card network's NFC partner. A nationwide
incident (empty scope) is the lender's own business and is not shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, insert, select

from tapshield.service import tables as st
from tapshield.storage import tables as t

ACTIONS = ("acknowledge", "assign", "note", "resolve")


def visible_to_partner(doc: Mapping[str, Any], partner: Mapping[str, str]) -> bool:
    scopes = list(doc.get("scope") or [])
    fired = doc.get("fired_slice")
    if isinstance(fired, Mapping):
        scopes.append(fired)
    return any(isinstance(s, Mapping) and s.get(k) == v
               for s in scopes for k, v in partner.items())


def _handling(actions: list[dict[str, Any]]) -> dict[str, Any]:
    """The incident's handling state from its actions, in order."""
    out: dict[str, Any] = {"acknowledged_by": None, "acknowledged_at": None, "assignee": None,
                           "resolved_by": None, "resolved_at": None, "notes": 0}
    for a in actions:
        if a["action"] == "acknowledge" and out["acknowledged_at"] is None:
            out["acknowledged_by"], out["acknowledged_at"] = a["actor"], a["at"]
        elif a["action"] == "assign":
            out["assignee"] = a["assignee"]
        elif a["action"] == "note":
            out["notes"] += 1
        elif a["action"] == "resolve":
            out["resolved_by"], out["resolved_at"] = a["actor"], a["at"]
    return out


class IncidentDesk:
    """Reads incidents and alerts; records incident actions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _actions(self, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if not ids:
            return out
        q = (select(st.incident_actions).where(st.incident_actions.c.incident_id.in_(ids))
             .order_by(st.incident_actions.c.seq))
        with self.engine.connect() as conn:
            for r in conn.execute(q).mappings():
                out[r["incident_id"]].append(
                    {"action": r["action"], "actor": r["actor"], "at": r["at"],
                     "assignee": r["assignee"], "note": r["note"]})
        return out

    def find(self, *, status: str | None = None, level_at_most: int | None = None,
             cause: str | None = None, since: datetime | None = None, limit: int = 100,
             offset: int = 0, partner: Mapping[str, str] | None = None
             ) -> tuple[list[dict[str, Any]], int]:
        """Newest first; ``(page, total matching)`` (partner filtering is in Python:
        scopes are JSON, and a partner's incidents are few)."""
        q = select(t.incidents.c.doc, t.incidents.c.run_id)
        count = select(func.count()).select_from(t.incidents)
        conds: list[ColumnElement[bool]] = []
        if status == "open":
            conds.append(t.incidents.c.end.is_(None))
        elif status == "closed":
            conds.append(t.incidents.c.end.is_not(None))
        if level_at_most is not None:
            conds.append(t.incidents.c.level <= level_at_most)
        if cause is not None:
            conds.append(t.incidents.c.cause == cause)
        if since is not None:
            conds.append(t.incidents.c.start >= since)
        for c in conds:
            q = q.where(c)
            count = count.where(c)
        q = q.order_by(t.incidents.c.start.desc(), t.incidents.c.id.desc())
        with self.engine.connect() as conn:
            if partner:
                docs = [(dict(r["doc"]), r["run_id"]) for r in conn.execute(q).mappings()
                        if visible_to_partner(r["doc"], partner)]
                total = len(docs)
                docs = docs[offset:offset + limit]
            else:
                total = int(conn.execute(count).scalar_one())
                docs = [(dict(r["doc"]), r["run_id"])
                        for r in conn.execute(q.limit(limit).offset(offset)).mappings()]
        acts = self._actions([d["id"] for d, _ in docs])
        return [self._view(d, run, acts[d["id"]]) for d, run in docs], total

    def get(self, incident_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(t.incidents.c.doc, t.incidents.c.run_id)
                             .where(t.incidents.c.id == incident_id)).mappings().first()
        if r is None:
            return None
        acts = self._actions([incident_id])[incident_id]
        return {**self._view(dict(r["doc"]), r["run_id"], acts), "actions": acts}

    @staticmethod
    def _view(doc: dict[str, Any], run_id: str, acts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"incident": doc, "run_id": run_id,
                "status": "open" if doc.get("end") is None else "closed",
                "handling": _handling(acts)}

    def act(self, incident_id: str, action: str, actor: str, *, assignee: str | None = None,
            note: str | None = None) -> dict[str, Any]:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        row = {"incident_id": incident_id, "action": action, "actor": actor,
               "at": datetime.now(UTC), "assignee": assignee, "note": note}
        with self.engine.begin() as conn:
            conn.execute(insert(st.incident_actions).values(**row))
        return {k: row[k] for k in ("action", "actor", "at", "assignee", "note")}

    # -- alerts ----------------------------------------------------------------

    def alerts(self, *, incident_id: str | None = None, alert_id: str | None = None,
               state: str | None = None, since: datetime | None = None, limit: int = 100,
               offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Alert state changes, newest first."""
        q = select(t.alerts.c.doc, t.alerts.c.seq)
        count = select(func.count()).select_from(t.alerts)
        conds: list[ColumnElement[bool]] = []
        if incident_id is not None:
            conds.append(t.alerts.c.incident_id == incident_id)
        if alert_id is not None:
            conds.append(t.alerts.c.alert_id == alert_id)
        if state is not None:
            conds.append(t.alerts.c.state == state)
        if since is not None:
            conds.append(t.alerts.c.ts >= since)
        for c in conds:
            q = q.where(c)
            count = count.where(c)
        q = q.order_by(t.alerts.c.seq.desc()).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            total = int(conn.execute(count).scalar_one())
            rows = [dict(r["doc"]) for r in conn.execute(q).mappings()]
        return rows, total
