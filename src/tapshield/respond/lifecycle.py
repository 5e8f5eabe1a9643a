"""The incident lifecycle: open -> acknowledged -> mitigating -> resolved -> post-mortem.

The monitor moves an incident automatically (it opens when a wave pages, it
is resolved when the wave ends, it reopens if the wave comes back); people
move it through the service's API (acknowledge, start mitigating, resolve,
write the post-mortem); a partner's status may resolve it. Every move is a
:class:`TimelineEntry` with who, when and why, and so is everything done on
the way (a playbook step and its outcome, a notice batch queued, a partner's
update), so the timeline *is* the post-mortem's first draft.

Pure state: the service and the drill keep it where they keep things.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tapshield.timeutil import to_rfc3339

STATES = ("open", "acknowledged", "mitigating", "resolved", "postmortem")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("acknowledged", "mitigating", "resolved"),
    "acknowledged": ("mitigating", "resolved"),
    "mitigating": ("resolved",),
    "resolved": ("postmortem", "open"),
    "postmortem": (),
}
"""Allowed moves. ``resolved -> open`` is a reopening (the wave came back)."""


class TransitionError(ValueError):
    """A move the lifecycle does not allow (the message names both states)."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    actor: str
    kind: str
    """``transition``, ``step``, ``notices``, ``partner``, ``note``, ``rescope``."""
    what: str
    why: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, tz: str | None = None) -> dict[str, Any]:
        return {"at": to_rfc3339(self.at, tz), "actor": self.actor, "kind": self.kind,
                "what": self.what, "why": self.why, "data": dict(self.data)}


@dataclass(slots=True)
class Lifecycle:
    """One incident's state and timeline."""

    incident_id: str
    state: str = "open"
    timeline: list[TimelineEntry] = field(default_factory=list)

    @classmethod
    def opened(cls, incident_id: str, at: datetime, actor: str, why: str) -> Lifecycle:
        lc = cls(incident_id)
        lc.timeline.append(TimelineEntry(at, actor, "transition", "open", why,
                                         {"from": None, "to": "open"}))
        return lc

    def can(self, to: str) -> bool:
        return to in TRANSITIONS.get(self.state, ())

    def move(self, to: str, at: datetime, actor: str, why: str) -> TimelineEntry:
        if to not in STATES:
            raise TransitionError(f"unknown state {to!r} (one of {', '.join(STATES)})")
        if not self.can(to):
            allowed = ", ".join(TRANSITIONS[self.state]) or "nothing"
            raise TransitionError(f"{self.incident_id}: cannot go from {self.state} to {to} "
                                  f"(from {self.state}: {allowed})")
        if not why.strip():
            raise TransitionError(f"{self.incident_id}: a move to {to} needs a reason")
        entry = TimelineEntry(at, actor, "transition", to, why, {"from": self.state, "to": to})
        self.state = to
        self.timeline.append(entry)
        return entry

    def record(self, at: datetime, actor: str, kind: str, what: str, why: str = "",
               **data: Any) -> TimelineEntry:
        entry = TimelineEntry(at, actor, kind, what, why, dict(data))
        self.timeline.append(entry)
        return entry

    def entered(self, state: str) -> datetime | None:
        """When the incident first entered ``state`` (``None``: never)."""
        for e in self.timeline:
            if e.kind == "transition" and e.what == state:
                return e.at
        return None

    def to_dict(self, tz: str | None = None) -> dict[str, Any]:
        return {"incident_id": self.incident_id, "state": self.state,
                "timeline": [e.to_dict(tz) for e in self.timeline]}
