"""The alert event: one state change of one alert, as monitoring emits it.

An *alert* is one failure wave (the slices of a wave are grouped into it);
it changes state over its life. Every change is one :class:`AlertEvent`,
written as one line of ``alerts.jsonl``, stored in the database, and pushed to
Alertmanager / webhooks when ``notify`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from tapshield.signals import Signal
from tapshield.timeutil import to_rfc3339

if TYPE_CHECKING:
    import polars as pl

AlertState = Literal["firing", "escalated", "deescalated", "reminder", "resolved", "suppressed"]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One state change of one alert. Immutable once emitted: whoever adds to it (the
    incident book's id) hands on a new event (:meth:`with_incident`)."""

    alert_id: str
    """Stable for the whole life of one alert (one wave)."""
    ts: datetime
    """Event time of this state change."""
    state: AlertState
    level: int
    """1 = most severe (red) ... 4 = blue notice."""
    started_at: datetime
    """Estimated start of the wave (the change point, not the detection time)."""
    slice: dict[str, str]
    """Where it fired: dimension -> value; ``{}`` = the whole flow."""
    signal: Signal
    notify: bool
    """Whether this change goes to people/integrations (levels 1-3 page; 4 does not;
    reminders and resolutions notify only if the firing did)."""
    figures: dict[str, Any] = field(default_factory=dict)
    """Numbers behind the decision (rates, baseline, ratio, share of traffic, ...)."""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    incident_id: str | None = None
    """The incident this change belongs to, once an incident book has placed it."""

    def with_incident(self, incident_id: str | None) -> AlertEvent:
        """The same change, placed in an incident (a new event; this one is unchanged)."""
        return self if incident_id == self.incident_id else replace(self, incident_id=incident_id)

    def to_dict(self, tz: str | None = None) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "ts": to_rfc3339(self.ts, tz),
            "state": self.state,
            "level": self.level,
            "started_at": to_rfc3339(self.started_at, tz),
            "slice": dict(self.slice),
            "signal": self.signal,
            "notify": self.notify,
            "figures": _json_safe(self.figures, tz),
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "incident_id": self.incident_id,
        }


class EventMonitor(Protocol):
    """What the pipeline needs of a monitor (:class:`tapshield.monitor.Monitor` is one):
    canonical batches in event-time order in, alert state changes out."""

    def process(self, batch: pl.DataFrame) -> list[AlertEvent]:
        """Feed canonical events in event-time order; returns the alert state changes."""
        ...

    def close(self) -> list[AlertEvent]:
        """End of stream: the last changes (alerts still firing stay open)."""
        ...

    def timeline(self) -> pl.DataFrame:
        """Per-bucket national series (the schema the report reads)."""
        ...


def _json_safe(value: Any, tz: str | None) -> Any:
    """Figures as JSON: instants as RFC 3339, containers recursively, the rest as is."""
    if isinstance(value, datetime):
        return to_rfc3339(value, tz)
    if isinstance(value, dict):
        return {str(k): _json_safe(v, tz) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v, tz) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
