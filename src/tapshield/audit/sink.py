"""The pipeline's decisions on the record: a sink that appends them to the audit log.

It implements the pipeline's ``Sink`` protocol (``alerts``, ``incidents``,
``close``) and records what a regulator or a partner asks about afterwards:

* ``alert.<state>`` for every alert change that notifies people (a page, its
  escalation, its resolution); silent blue notices are not decisions;
* ``incident.opened``, ``incident.escalated``, ``incident.deescalated``,
  ``incident.rediagnosed`` (cause or scope changed), ``incident.closed`` and
  ``incident.reopened``, each with the figures the decision rested on.

One pipeline call is one append (one transaction); ``close`` signs a head so
a run always ends on a signed tree head. Payloads carry no personal data:
scopes name channels, regions, carriers and merchants, never a customer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tapshield.audit.log import AuditLog, Record

if TYPE_CHECKING:
    from tapshield.incident import Incident
    from tapshield.monitor.alerts import AlertEvent

ACTOR = "tapshield/pipeline"


def _exact(value: Any) -> Any:
    """Figures as the log accepts them: floats become short decimal strings."""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else str(Decimal(repr(value)).normalize())
    if isinstance(value, Mapping):
        return {str(k): _exact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(v) for v in value]
    if isinstance(value, datetime | str | int | bool | Decimal) or value is None:
        return value
    return str(value)


class AuditSink:
    """Appends the pipeline's paging alerts and incident transitions to ``log``."""

    def __init__(self, log: AuditLog, *, actor: str = ACTOR, run_id: str | None = None) -> None:
        self.log = log
        self.actor = actor
        self.run_id = run_id
        self._seen: dict[str, tuple[int, str, str, bool]] = {}
        self.appended = 0

    def _base(self) -> dict[str, Any]:
        return {"run": self.run_id} if self.run_id is not None else {}

    def alerts(self, events: Sequence[AlertEvent]) -> None:
        recs = [
            Record(f"alert.{e.state}", self.actor, e.alert_id, {
                **self._base(), "at": e.ts, "level": int(e.level), "signal": str(e.signal),
                "slice": dict(e.slice), "started_at": e.started_at,
                "incident": e.incident_id, "figures": _exact(e.figures)})
            for e in events if e.notify
        ]
        self._append(recs)

    def incidents(self, incidents: Sequence[Incident]) -> None:
        recs: list[Record] = []
        for inc in incidents:
            scope = repr(sorted(sorted(c.items()) for c in inc.scope))
            now = (int(inc.level), inc.cause, scope, inc.end is not None)
            before = self._seen.get(inc.id)
            self._seen[inc.id] = now
            kinds: list[str] = []
            if before is None:
                kinds.append("incident.opened")
            else:
                if now[0] < before[0]:
                    kinds.append("incident.escalated")
                elif now[0] > before[0]:
                    kinds.append("incident.deescalated")
                if now[1:3] != before[1:3]:
                    kinds.append("incident.rediagnosed")
                if now[3] and not before[3]:
                    kinds.append("incident.closed")
                elif before[3] and not now[3]:
                    kinds.append("incident.reopened")
            if before is None and now[3]:
                kinds.append("incident.closed")
            payload = {
                **self._base(), "level": int(inc.level), "cause": inc.cause,
                "confidence": _exact(float(inc.confidence)),
                "scope": [dict(sorted(c.items())) for c in inc.scope],
                "start": inc.start, "detected_at": inc.detected_at, "end": inc.end,
                "failed_payments": int(inc.failed_payments),
                "affected_users": int(inc.affected_users),
                "affected_merchants": int(inc.affected_merchants),
                "lost_fen": int(inc.lost_fen), "evidence": list(inc.evidence),
            }
            recs.extend(Record(k, self.actor, inc.id, payload) for k in kinds)
        self._append(recs)

    def close(self, result: Any) -> None:
        """End of the run: record any incident change not yet seen, sign a head."""
        final = getattr(result, "incidents", None)
        if final:
            self.incidents(final)
        if self.log.signer is not None:
            self.log.sign_head()

    def _append(self, recs: list[Record]) -> None:
        if recs:
            self.log.append_batch(recs)
            self.appended += len(recs)
