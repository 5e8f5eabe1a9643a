"""The alert state machine: what an open wave is made of, and how its state moves.

An :class:`Alert` is one failure wave. It is made of :class:`Member` tests
(slice x signal): *scope* members define the wave, *absorbed* members are
slices its scope explains (children, side effects). Its state moves

    firing ──────────────▶ resolved ─▶ firing (reopened: the same fault returned)
    suppressed ─▶ firing ─▶ resolved
    suppressed ──────────▶ resolved

and only through the methods here (:meth:`Alert.suppress`,
:meth:`Alert.release`, :meth:`Alert.resolve`, :meth:`Alert.reopen`), so the other stages read
the state but never set it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tapshield.levels import NOTICE
from tapshield.monitor import _kernels as kn
from tapshield.monitor.levels import LevelTracker

FAMILY = {0: "technical", 3: "technical", 4: "technical", 5: "technical", 1: "business",
          2: "business"}
"""Signals that one fault produces together: an outage shows as technical
failures, slowness and lost traffic; a risk or credit problem as declines."""

RATE_SIGNALS = (kn.SIG_TECHNICAL, kn.SIG_DECLINE, kn.SIG_RISK, kn.SIG_LATENCY)
"""Signals tested as a failure rate (the others are traffic drops)."""

Ref = tuple[int, int]
"""A test: ``(slice index, signal index)``."""

AlertStateName = Literal["firing", "suppressed", "resolved"]


@dataclass(slots=True)
class Member:
    """One test (slice x signal) that is part of an alert."""

    slice: int
    signal: int
    role: Literal["scope", "absorbed"]
    cp_us: int
    fired_us: int
    ended_us: int | None = None
    hold_until: int | None = None
    flaps: int = 0
    last_retest: int = 0


@dataclass(frozen=True, slots=True)
class Window:
    """An announced maintenance window, from the changes file."""

    key: str
    scope: dict[str, str]
    start_us: int
    end_us: int
    component: str
    note: str


class Members(dict[Ref, Member]):
    """An alert's tests by ``(slice, signal)``; counts its changes so the scope
    (read at every crossing and every level evaluation) is rebuilt only when
    membership or a role changed (:meth:`Alert.set_role`)."""

    version: int = 0

    def __setitem__(self, key: Ref, value: Member) -> None:
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Ref) -> None:
        self.version += 1
        super().__delitem__(key)

    def pop(self, key: Ref, *default: Any) -> Any:
        self.version += 1
        return super().pop(key, *default)


@dataclass(slots=True)
class Alert:
    """One open (or just resolved) wave: its members, state, level and notification record."""

    alert_id: str
    family: str
    signal: int
    slice: int
    started_us: int
    fired_us: int
    tracker: LevelTracker
    members: dict[Ref, Member] = field(default_factory=Members)
    state: AlertStateName = "firing"
    suppressed_by: str | None = None
    suppressed_until: int | None = None
    window: Window | None = None
    paged: bool = False
    last_notify_us: int | None = None
    notified_level: int = NOTICE
    pending_escalation: bool = False
    reminders_sent: int = 0
    next_reminder_us: int | None = None
    ended_us: int | None = None
    minimized_us: int = 0
    quiet_since: int | None = None
    last_share: float = 0.0
    excess_since: int | None = None
    last_excess_us: int | None = None
    last_review_us: int = 0
    reopened: int = 0
    """How often the wave came back within the reopen window after resolving."""
    prior_scope: list[int] = field(default_factory=list)
    """Slices of its scope before it last resolved (a reopened wave's slices come
    back one by one; they are still this wave)."""
    resolved_us: int | None = None
    """When it last resolved (event time), while it may still reopen."""
    figures: dict[str, Any] = field(default_factory=dict)
    _scope: tuple[int, list[Member]] = field(default=(-1, []), repr=False, compare=False)
    _explaining: dict[tuple[int, bool], tuple[int, list[int]]] = field(
        default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.members, Members):
            self.members = Members(self.members)

    # -- membership -------------------------------------------------------------------

    def scope(self) -> list[Member]:
        """The members that define the wave (in the order they joined); do not modify."""
        members = self.members
        version = members.version if isinstance(members, Members) else -2
        if self._scope[0] != version or version < 0:
            self._scope = (version, [m for m in members.values() if m.role == "scope"])
        return self._scope[1]

    def explaining(self, signal: int, traffic: bool) -> list[int]:
        """Slices whose events may explain a crossing of ``signal`` (see
        :meth:`tapshield.monitor.alerting.inhibit.Inhibitor.explain`): for a rate
        signal the scope members of the same signal (a technical wave explains
        slowness too), for a traffic drop every member. Rebuilt only when the
        members change; do not modify."""
        members = self.members
        version = members.version if isinstance(members, Members) else -2
        key = (signal, traffic)
        got = self._explaining.get(key)
        if got is not None and got[0] == version and version >= 0:
            return got[1]
        if traffic:
            slices = [m.slice for m in members.values()]
        else:
            slices = [m.slice for m in self.scope()
                      if m.signal == signal
                      or (signal == kn.SIG_LATENCY and m.signal == kn.SIG_TECHNICAL)]
        self._explaining[key] = (version, slices)
        return slices

    def set_role(self, m: Member, role: Literal["scope", "absorbed"]) -> None:
        m.role = role
        if isinstance(self.members, Members):
            self.members.version += 1

    def flaps(self) -> int:
        """How often the wave flapped: its tests re-fired during their hold, or the
        whole wave came back after resolving (:meth:`reopen`)."""
        return sum(m.flaps for m in self.members.values()) + self.reopened

    # -- state ----------------------------------------------------------------------

    def suppress(self, by: str, until_us: int, window: Window | None = None) -> None:
        """Opened inside a maintenance window or a silence: recorded, notifies no one."""
        if self.state != "firing" or self.paged:
            raise ValueError(f"alert {self.alert_id} cannot be suppressed once {self.state}"
                             + (" and paged" if self.paged else ""))
        self.state = "suppressed"
        self.suppressed_by = by
        self.suppressed_until = until_us
        self.window = window

    def release(self, started_us: int) -> None:
        """The wave outlived its window or silence: it is real from ``started_us``."""
        if self.state != "suppressed":
            raise ValueError(f"alert {self.alert_id} is {self.state}, not suppressed")
        self.state = "firing"
        self.started_us = started_us
        self.window = None

    def resolve(self, ended_us: int | None, now: int | None = None) -> None:
        """The wave is over (``ended_us``: its estimated end, if better known than now)."""
        if self.state == "resolved":
            raise ValueError(f"alert {self.alert_id} is already resolved")
        self.state = "resolved"
        self.resolved_us = now
        if ended_us is not None:
            self.ended_us = ended_us

    def reopen(self, member: Member) -> None:
        """The same fault came back after resolving (within the reopen window): the
        wave fires again from ``member``, keeping its start, level history and
        notification record (so it pages again only if it gets worse)."""
        if self.state != "resolved":
            raise ValueError(f"alert {self.alert_id} is {self.state}, not resolved")
        self.state = "firing"
        self.reopened += 1
        self.members = Members()
        self.members[(member.slice, member.signal)] = member
        self.slice, self.signal = member.slice, member.signal
        self.ended_us = None
        self.resolved_us = None
        self.quiet_since = None
        self.excess_since = None
        self.last_excess_us = None
        self.minimized_us = 0
        self.last_review_us = 0


__all__ = ["FAMILY", "RATE_SIGNALS", "Alert", "Member", "Members", "Ref", "Window"]
