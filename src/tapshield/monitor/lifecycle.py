"""From detector crossings to alerts: one alert per wave, leveled, grouped, resolved once.

The stages, in the order Prometheus Alertmanager runs its own (a pipeline of
small steps):

1. **Inhibition / grouping.** A test that crosses is first checked against
   the waves already open (and announced maintenance windows): the slice is
   tested again *with those waves' events taken out* (the same CUSUM, on the
   recent-events buffer). If nothing anomalous is left, the slice is a child
   or a side effect of an open wave (``{region: CN-GD}`` while
   ``{channel: nfc}`` is down) and joins it silently. If something is left
   and its change point lies within ``group_window`` of an open wave of the
   same family, it is the same wave seen in another slice and widens that
   alert's scope. Otherwise it is a new wave: a new alert.
2. **Silences and maintenance.** A new alert inside an announced maintenance
   window's scope, or matching a silence, is recorded as ``suppressed`` and
   notifies no one; if it outlives the window (plus a grace period) it fires
   for real.
3. **Levels.** At every bucket boundary the excess impact of each wave is
   measured and its level updated (:mod:`tapshield.monitor.levels`).
4. **Resolution.** Each test resolves through its own reverse test, then a
   hold period in which it re-fires at a lower threshold: a flapping link
   fires once and resolves once. An alert resolves when all its tests have,
   or when it has shown no excess beyond noise for ``quiet_resolve`` (a weak
   wave's end is slow to prove statistically, and an alert left open for
   hours would collect unrelated bursts).
5. **Notification.** Levels 1-3 page; the first page, an escalation (at most
   one notification per ``renotify_interval``), reminders at growing
   intervals, and the resolution of a paged alert notify; everything else
   is recorded only.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

import numpy as np
import polars as pl

from tapshield.events.changes import scope_of
from tapshield.monitor import _kernels as kn
from tapshield.monitor.alerts import AlertEvent, Signal
from tapshield.monitor.config import MonitorConfig
from tapshield.monitor.detectors import FIRING, HOLD, SIGNAL_NAMES, Crossing, DetectorBank, Recovery
from tapshield.monitor.levels import LEVEL_NAMES, NOTICE, Impact, LevelTracker
from tapshield.monitor.recent import RecentEvents, View
from tapshield.monitor.slices import NATIONAL, SliceRegistry, intersects, refines, slice_key
from tapshield.timeutil import epoch_us, from_epoch_us

FAMILY = {0: "technical", 3: "technical", 4: "technical", 5: "technical", 1: "business",
          2: "business"}
"""Signals that one fault produces together: an outage shows as technical
failures, slowness and lost traffic; a risk or credit problem as declines."""

NOISE_QUANTILE = 0.999
"""Level figures count only the excess beyond the 99.9th percentile of what normal
traffic gives: a level is re-evaluated every bucket, so a per-evaluation error of
0.1 % keeps noise-driven escalations to about one per 1,000 buckets of a wave."""


def _noise(expected: float) -> float:
    """The count normal traffic stays below with probability ``NOISE_QUANTILE`` (Poisson)."""
    return float(kn.poisson_quantile(NOISE_QUANTILE, expected)) if expected > 0 else 0.0


RATE_SIGNALS = (kn.SIG_TECHNICAL, kn.SIG_DECLINE, kn.SIG_RISK, kn.SIG_LATENCY)
_NEVER = 2**62
Ref = tuple[int, int]


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


@dataclass(slots=True)
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
    alert_id: str
    family: str
    signal: int
    slice: int
    started_us: int
    fired_us: int
    tracker: LevelTracker
    members: dict[Ref, Member] = field(default_factory=Members)
    state: Literal["firing", "suppressed", "resolved"] = "firing"
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
    figures: dict[str, Any] = field(default_factory=dict)
    _scope: tuple[int, list[Member]] = field(default=(-1, []), repr=False, compare=False)
    _explaining: dict[tuple[int, bool], tuple[int, list[int]]] = field(
        default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.members, Members):
            self.members = Members(self.members)

    def scope(self) -> list[Member]:
        """The members that define the wave (in the order they joined); do not modify."""
        members = self.members
        version = members.version if isinstance(members, Members) else -2
        if self._scope[0] != version or version < 0:
            self._scope = (version, [m for m in members.values() if m.role == "scope"])
        return self._scope[1]

    def explaining(self, signal: int, traffic: bool) -> list[int]:
        """Slices whose events may explain a crossing of ``signal`` (see
        :meth:`Lifecycle._explain`): for a rate signal the scope members of the
        same signal (a technical wave explains slowness too), for a traffic drop
        every member. Rebuilt only when the members change; do not modify."""
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


class Lifecycle:
    def __init__(self, cfg: MonitorConfig, registry: SliceRegistry, bank: DetectorBank,
                 recent: RecentEvents, changes: pl.DataFrame | None) -> None:
        self.cfg = cfg
        self.registry = registry
        self.bank = bank
        self.recent = recent
        self.alerts: dict[str, Alert] = {}
        """Open (firing or suppressed) alerts, in the order they opened."""
        self.owner: dict[Ref, str] = {}
        self.windows = _maintenance_windows(changes)
        self.us = {
            "group": _us(cfg.group_window), "explain": _us(cfg.explain_window),
            "hold": _us(cfg.resolve_hold), "level": _us(cfg.level_window),
            "renotify": _us(cfg.renotify_interval), "grace": _us(cfg.maintenance_grace),
            "quiet": _us(cfg.quiet_resolve),
        }
        self.events_emitted = 0
        self.changes: dict[str, int] = {}
        """Alert state changes emitted so far, by state."""
        self.primary = cfg.levels.primary_channel
        self.late_events = 0
        self.orphans: dict[Ref, int] = {}
        """Tests left firing or on hold by a resolved alert: when their hold ends."""
        self._last_retest = 0
        self._lv: View | None = None
        self._lv_key: tuple[int, int, int] = (-1, -1, -1)
        self._primary_idx: int | None = None
        self._next_hold = _NEVER
        self._meet: dict[tuple[int, int], bool] = {}
        """No member's hold ends before this (its members are looked at from then on)."""
        self.runtime_silences: tuple[Any, ...] = ()
        """Silences set while running (``tapshield serve``'s ``POST /v1/silences``):
        objects with ``id``, ``comment``, ``ends_at`` and ``mutes(labels, at)``,
        Alertmanager-style label matchers over ``alertname``, ``signal`` and the
        slice's dimensions; replaced by the service as silences change."""

    # -- crossings ------------------------------------------------------------------

    def order(self, crossings: list[Crossing]) -> list[Crossing]:
        """Crossings in the order they are decided: by event, signal, then slice."""
        infos = self.registry.infos
        return sorted(crossings, key=lambda c: (c.index, c.signal, infos[c.slice].key))

    def on_crossings(self, crossings: list[Crossing], seq0: int) -> list[AlertEvent]:
        if not crossings:
            return []
        crossings = self.order(crossings)
        out: list[AlertEvent] = []
        for c in crossings:
            seq = seq0 + c.index if c.index >= 0 else seq0 - 1
            out.extend(self._on_crossing(c, seq))
        return out

    def _on_crossing(self, c: Crossing, seq: int) -> list[AlertEvent]:
        ref = (c.slice, c.signal)
        self.bank.fire(c.slice, c.signal)
        owner = self.owner.get(ref)
        if owner is not None:
            # re-fire during the hold: the same wave flapping
            m = self.alerts[owner].members[ref]
            m.flaps += 1
            m.ended_us = None
            m.hold_until = None
            return []
        explained, cp, owner_id = self._explain(c, seq)
        if explained and owner_id is not None:
            return self._absorb(owner_id, ref, c, cp, seq)
        if c.signal in RATE_SIGNALS:
            cp = self._change_point(c.slice, c.signal, c.ts, seq, cp)
        # a new wave in this slice, or the same wave seen in another slice
        fam = FAMILY[c.signal]
        for a in self.alerts.values():
            if a.family == fam and a.window is None and self._same_wave(a, c.slice, cp):
                a.members[ref] = Member(c.slice, c.signal, "scope", cp, c.ts)
                self.owner[ref] = a.alert_id
                a.started_us = min(a.started_us, cp)
                return []
        return self._open(c, cp, seq)

    def _explain(self, c: Crossing, seq: int, view: View | None = None
                 ) -> tuple[bool, int, str | None]:
        """Is the crossing explained by open waves? ``(explained, change point, owner)``.

        Only waves that show the *same signal* (and maintenance windows, which
        explain everything in their scope) can explain a rate crossing: a
        national latency wave says nothing about technical failures in one
        region. One exception: a technical wave explains slowness (timeouts and
        retries of an outage slow the answers around it), not the reverse.
        Otherwise the same fault seen in another signal is joined by the
        grouping rule.
        """
        infos = self.registry.infos
        t_info = infos[c.slice].mapping
        now = c.ts
        related: list[tuple[str, list[int], list[dict[str, str]]]] = []
        traffic = c.signal not in RATE_SIGNALS
        for a in self.alerts.values():
            slices = a.explaining(c.signal, traffic)
            if a.window is not None and not slices:
                slices = [m.slice for m in a.members.values()]
            if slices and any(self._meets(c.slice, s) for s in slices):
                related.append((a.alert_id, slices, [infos[s].mapping for s in slices]))
        for w in self.windows:
            if w.start_us <= now <= w.end_us + self.us["grace"] and intersects(t_info, w.scope):
                idx = self.registry.index_of(w.scope)
                related.append(("window:" + w.key, [idx] if idx is not None else [], [w.scope]))
        if not related and (c.index >= 0 or traffic):
            return False, c.cp, None  # a fresh crossing with no open wave near it
        if traffic:
            # a traffic drop next to an open wave is that wave's customers leaving
            for o, _sl, ds in related:
                if any(refines(t_info, d) or refines(d, t_info) for d in ds):
                    return True, c.cp, o
            return True, c.cp, related[0][0]
        # windows whose scope the slice lies in explain it outright
        for o, _sl, ds in related:
            if o.startswith("window:") and any(refines(t_info, d) for d in ds):
                return True, c.cp, o
        if view is None:
            view = self.recent.view(max(now - self.us["explain"], c.cp - self.us["explain"]),
                                    seq)
        if view.size == 0:
            return False, c.cp, None
        if not related:
            # a re-test (index -1) with no open wave around: is the slice itself
            # still anomalous, or just recovering slowly?
            rows = self._rows(view, c.slice)
            y = self._indicator(view, c.slice, c.signal)[rows]
            a0, a1 = self.bank.bank(c.slice, c.signal)
            best, _i, start = kn.cusum_max(y, a0, a1) if y.size else (0.0, -1, -1)
            if best >= self.bank.threshold(c.signal) and start >= 0:
                return False, int(view.ts[rows[start]]), None
            return True, c.cp, None
        first, _sl, first_ds = related[0]
        if any(refines(t_info, d) for d in first_ds) and self.bank.threshold(c.signal) > 0.0:
            # the first wave's scope contains the slice (a child of the wave): with its
            # events out nothing is left (an empty test never crosses), and it shares
            # the most events with the slice (all of them; the first wins a tie)
            return True, c.cp, first if self._mask(view, c.slice).any() else None
        # everything below only concerns the slice's own events: work on its rows
        rows = self._rows(view, c.slice)
        overlap: list[tuple[int, str]] = []
        in_u = np.zeros(rows.size, dtype=bool)
        for o, sl, ds in related:
            m = np.zeros(rows.size, dtype=bool)
            for s in sl:
                m |= self._mask(view, s)[rows]
            if not sl and any(refines(t_info, d) for d in ds):
                m[:] = True
            in_u |= m
            overlap.append((int(m.sum()), o))
        rest = rows[~in_u]
        y = self._indicator(view, c.slice, c.signal)[rest]
        a0, a1 = self.bank.bank(c.slice, c.signal)
        best, _i, start = kn.cusum_max(y, a0, a1) if y.size else (0.0, -1, -1)
        if best >= self.bank.threshold(c.signal):
            cp = int(view.ts[rest[start]]) if start >= 0 else c.cp
            return False, cp, None
        overlap.sort(key=lambda t: -t[0])
        # nothing anomalous beyond the open waves: explained by the one sharing most
        # events with the slice (none shares any: nothing to attach it to)
        return True, c.cp, overlap[0][1] if overlap[0][0] > 0 else None

    def _absorb(self, owner_id: str, ref: Ref, c: Crossing, cp: int,
                seq: int) -> list[AlertEvent]:
        if owner_id.startswith("window:"):
            key = owner_id.split(":", 1)[1]
            w = next(w for w in self.windows if w.key == key)
            alert = next((a for a in self.alerts.values() if a.window is w), None)
            if alert is None:
                return self._open(c, cp, seq, window=w)
            owner_id = alert.alert_id
        a = self.alerts[owner_id]
        a.members[ref] = Member(c.slice, c.signal, "absorbed", cp, c.ts)
        self.owner[ref] = owner_id
        return []

    def _open(self, c: Crossing, cp: int, seq: int, window: Window | None = None
              ) -> list[AlertEvent]:
        info = self.registry.infos[c.slice]
        raw = f"{c.signal}|{info.key}|{cp}|{window.key if window else ''}"
        alert_id = "A-" + hashlib.sha1(raw.encode()).hexdigest()[:12]
        a = Alert(alert_id, FAMILY[c.signal], c.signal, c.slice, cp, c.ts,
                  LevelTracker(self.cfg.levels, family=FAMILY[c.signal]))
        a.members[(c.slice, c.signal)] = Member(c.slice, c.signal, "scope", cp, c.ts)
        self.alerts[alert_id] = a
        self.owner[(c.slice, c.signal)] = alert_id
        now = c.ts
        if window is None:
            for w in self.windows:
                if w.start_us <= now <= w.end_us + self.us["grace"] and refines(info.as_dict,
                                                                                 w.scope):
                    window = w
                    break
        if window is not None:
            a.window = window
            a.state = "suppressed"
            a.suppressed_by = f"maintenance {window.component} " + (window.note or "")
            a.suppressed_until = window.end_us + self.us["grace"]
        else:
            sl = self._silence(info.as_dict, SIGNAL_NAMES[c.signal], now)
            if sl is not None:
                a.state = "suppressed"
                a.suppressed_by = sl[0]
                a.suppressed_until = sl[1]
        impact, figures = self._impact(a, now, seq)
        a.tracker.update(impact, from_epoch_us(now))
        a.figures = figures
        a.last_share = impact.share_affected
        if a.state == "suppressed":
            return [self._event(a, now, "suppressed", notify=False)]
        return [self._fire(a, now)]

    def _fire(self, a: Alert, now: int) -> AlertEvent:
        notify = a.tracker.level <= 3
        if notify:
            self._notified(a, now)
        return self._event(a, now, "firing", notify=notify)

    def _notified(self, a: Alert, now: int) -> None:
        if not a.paged:
            a.next_reminder_us = now + _us(self.cfg.reminders[0])
        a.paged = True
        a.last_notify_us = now
        a.notified_level = a.tracker.level
        a.pending_escalation = False

    # -- bucket boundaries ------------------------------------------------------------

    def on_bucket(self, t_end: int, recoveries: list[Recovery], crossings: list[Crossing],
                  seq: int) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        out.extend(self.on_crossings(crossings, seq + 1))
        for r in recoveries:
            ref = (r.slice, r.signal)
            aid = self.owner.get(ref)
            self.bank.hold(r.slice, r.signal)
            if aid is None:
                self.orphans[ref] = r.ended + self.us["hold"]
                continue
            m = self.alerts[aid].members[ref]
            m.ended_us = r.ended
            m.hold_until = r.ended + self.us["hold"]
            self._next_hold = min(self._next_hold, m.hold_until)
        for ref, until in list(self.orphans.items()):
            if until <= t_end:
                if self.bank.state(*ref) == HOLD:
                    self.bank.idle(*ref)
                del self.orphans[ref]
        self._retest(t_end, seq, out)
        # members whose hold ended leave their wave (looked for only when one is due)
        holds_due = t_end >= self._next_hold
        if holds_due:
            self._next_hold = _NEVER
        for a in list(self.alerts.values()):
            for ref, m in list(a.members.items()) if holds_due else ():
                if m.hold_until is None:
                    continue
                if m.hold_until <= t_end and self.bank.state(*ref) == HOLD:
                    self.bank.idle(*ref)
                    a.ended_us = max(a.ended_us or 0, m.ended_us or t_end)
                    del a.members[ref]
                    self.owner.pop(ref, None)
                else:
                    self._next_hold = min(self._next_hold, m.hold_until)
            if not a.scope():
                # the wave's own slices are back to normal: what they explained goes too
                out.append(self._resolve(a, t_end))
                continue
            out.extend(self._review(a, t_end, seq))
        self._freeze_maintenance(t_end)
        return out

    def _review(self, a: Alert, now: int, seq: int) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        if (a.quiet_since is not None and a.state == "firing" and not a.pending_escalation
                and now - a.last_review_us < 60_000_000
                and (a.next_reminder_us is None or now < a.next_reminder_us)):
            return out  # a wave with no excess is looked at once a minute
        a.last_review_us = now
        impact, figures = self._impact(a, now, seq)
        a.figures = figures
        a.last_share = impact.share_affected
        if a.state == "suppressed":
            if a.suppressed_until is not None and now >= a.suppressed_until and any(
                self.bank.state(m.slice, m.signal) == FIRING for m in a.scope()
            ) and impact.share_affected > 0:
                # the wave outlived its maintenance window or silence: it is real
                a.state = "firing"
                a.started_us = max(a.started_us, a.suppressed_until - self.us["grace"])
                a.window = None
                a.tracker.update(impact, from_epoch_us(now))
                out.append(self._fire(a, now))
            return out
        if impact.share_affected > 0 or impact.failed_payments_per_min > 0:
            a.quiet_since = None
        elif a.quiet_since is None:
            a.quiet_since = now
        if a.quiet_since is not None and now - a.quiet_since >= self.us["quiet"]:
            out.append(self._resolve(a, now, ended=a.quiet_since))
            return out
        if all(self.bank.state(m.slice, m.signal) == HOLD for m in a.scope()):
            return out  # recovering: the level stands until it resolves or re-fires
        if len(a.scope()) > 1 and now - a.minimized_us >= 60_000_000:
            a.minimized_us = now
            self._minimize(a, now, seq)
            impact, figures = self._impact(a, now, seq)
            a.figures = figures
        before = a.tracker.level
        level = a.tracker.update(impact, from_epoch_us(now))
        if level < before:
            notify = False
            if level <= 3 and (not a.paged or (level <= self.cfg.notify_escalation_to
                                               and level < a.notified_level)):
                if not a.paged or now - (a.last_notify_us or 0) >= self.us["renotify"]:
                    notify = True
                else:
                    a.pending_escalation = True
            if notify:
                self._notified(a, now)
            out.append(self._event(a, now, "escalated", notify=notify))
        elif level > before:
            out.append(self._event(a, now, "deescalated", notify=False))
        elif (a.pending_escalation and a.tracker.level < a.notified_level
              and a.tracker.level <= self.cfg.notify_escalation_to
              and now - (a.last_notify_us or 0) >= self.us["renotify"]):
            self._notified(a, now)
            out.append(self._event(a, now, "escalated", notify=True))
        elif a.paged and a.next_reminder_us is not None and now >= a.next_reminder_us:
            a.reminders_sent += 1
            i = min(a.reminders_sent, len(self.cfg.reminders) - 1)
            a.last_notify_us = now
            a.notified_level = a.tracker.level
            a.next_reminder_us = now + _us(self.cfg.reminders[i])
            out.append(self._event(a, now, "reminder", notify=True))
        return out

    def _same_wave(self, a: Alert, s: int, cp: int) -> bool:
        """Does a slice whose change began at ``cp`` belong to open wave ``a``?

        Yes if the slice lies inside the wave's scope (the same fault showing
        another symptom: slowness minutes after the timeouts of a network
        fault), or, for technical waves, if the change began within
        ``group_window`` of the wave (one outage seen in several slices, e.g. a
        card network's node serving two provinces). Decline waves are not grouped
        by time: bursts of declines come several an hour, so "began at about the
        same time" says nothing about a common cause.
        """
        if a.family == "technical" and abs(cp - a.started_us) <= self.us["group"]:
            return True
        inside = self.registry.infos[s].mapping
        return any(refines(inside, self.registry.infos[m.slice].mapping) for m in a.scope())

    def _minimize(self, a: Alert, now: int, seq: int) -> None:
        """Keep as the wave's scope only the slices the others do not explain.

        Slices join a wave in the order their tests happen to cross, often a
        small one first. Once a minute the scope members are ranked by the
        likelihood ratio of their counts over the recent window (Poisson:
        ``x ln(x/e) - (x - e)`` for ``x`` failures against ``e`` expected): the
        slice where the change concentrates ranks above both its diluted parents
        and its smaller children. Each is kept only if it is still anomalous with
        the better-ranked kept ones taken out, else it becomes an explained
        member. The alert is then named after its best slice.
        """
        view = self.recent.view(now - self.us["explain"], seq)
        if view.size == 0:
            return
        ranked: list[tuple[float, Member]] = []
        for m in a.scope():
            if m.signal not in RATE_SIGNALS:
                ranked.append((0.0, m))
                continue
            in_s = self._mask(view, m.slice)
            x = float((self._indicator(view, m.slice, m.signal) & in_s).sum())
            e = max(float(in_s.sum()) * float(self.bank.p_mean[m.slice, m.signal]), 1e-9)
            ranked.append((x * math.log(x / e) - (x - e) if x > e else 0.0, m))
        ranked.sort(key=lambda t: (-t[0], self.registry.infos[t[1].slice].key, t[1].signal))
        kept: list[Member] = []
        for _x, m in ranked:
            if not kept or m.signal not in RATE_SIGNALS:
                kept.append(m)
                continue
            in_t = self._mask(view, m.slice)
            in_u = np.zeros(view.size, dtype=bool)
            for k in kept:
                in_u |= self._mask(view, k.slice)
            rest = in_t & ~in_u
            y = self._indicator(view, m.slice, m.signal)[rest]
            a0, a1 = self.bank.bank(m.slice, m.signal)
            best = kn.cusum_max(y, a0, a1)[0] if y.size else 0.0
            if best >= self.bank.threshold(m.signal):
                kept.append(m)
            else:
                a.set_role(m, "absorbed")
        a.slice, a.signal = kept[0].slice, kept[0].signal

    def _resolve(self, a: Alert, now: int, ended: int | None = None) -> AlertEvent:
        a.state = "resolved"
        if ended is not None:
            a.ended_us = ended
        del self.alerts[a.alert_id]
        for ref in a.members:
            # tests the wave explained, still firing or on hold: they watch afresh at
            # the full threshold (a lower one is only for the wave that just ended)
            self.owner.pop(ref, None)
            self.bank.hold(*ref)
            self.bank.idle(*ref)
        ev = self._event(a, now, "resolved", notify=a.paged)
        ev.figures["ended_at"] = from_epoch_us(a.ended_us or now)
        return ev

    def _retest(self, now: int, seq: int, out: list[AlertEvent]) -> None:
        """Every ``group_window``, re-test the absorbed slices still failing beyond
        noise: a second wave may start under the first (a channel outage in a region already failing
        on one carrier). It splits off as its own wave, or joins the wave whose
        start matches its change point."""
        if now - self._last_retest < self.us["group"]:
            return
        self._last_retest = now
        todo = [(a, ref, m) for a in list(self.alerts.values()) for ref, m in a.members.items()
                if m.role == "absorbed" and m.signal in RATE_SIGNALS
                and self.bank.state(*ref) == FIRING]
        if not todo:
            return
        recent = self._level_view(now, seq, now - self.us["level"])
        cands = []
        for a, ref, m in todo:
            # only slices still failing beyond noise in the last minute are worth it
            rows = self._rows(recent, m.slice)
            x = int(self._indicator(recent, m.slice, m.signal)[rows].sum())
            exp = float(rows.size) * float(self.bank.p_mean[m.slice, m.signal])
            if x > _noise(exp):
                cands.append((a, ref, m))
        if not cands:
            return
        view = self.recent.view(now - self.us["explain"], seq)
        for a, ref, m in cands:
            if a.alert_id not in self.alerts or ref not in a.members:
                continue
            c = Crossing(m.slice, m.signal, 0, -1, now, now - self.us["explain"], 0.0)
            explained, cp, _owner = self._explain(c, seq, view)
            if explained:
                continue
            if self._same_wave(a, m.slice, cp):
                a.set_role(m, "scope")  # part of this same wave after all
                continue
            del a.members[ref]
            self.owner.pop(ref, None)
            joined = False
            for b in self.alerts.values():
                if b is not a and b.family == FAMILY[m.signal] and b.window is None and \
                        self._same_wave(b, m.slice, cp):
                    b.members[ref] = Member(m.slice, m.signal, "scope", cp, now)
                    self.owner[ref] = b.alert_id
                    b.minimized_us = 0  # re-rank its scope at the next review
                    joined = True
                    break
            if not joined:
                out.extend(self._open(Crossing(m.slice, m.signal, 0, -1, now, cp, 0.0), cp,
                                      seq))

    def _freeze_maintenance(self, now: int) -> None:
        if not self.windows:
            return  # nothing is ever frozen
        bank, infos = self.bank, self.registry.infos
        active = [w for w in self.windows if w.start_us <= now <= w.end_us + self.us["grace"]]
        if not active:
            if bank.ext_frozen[: bank.n].any():
                bank.ext_frozen[: bank.n] = False
            return
        for s in range(bank.n):
            bank.ext_frozen[s] = any(refines(infos[s].as_dict, w.scope) for w in active)

    def _silence(self, slice_: dict[str, str], signal: str, at: int) -> tuple[str, int] | None:
        when = from_epoch_us(at)
        for s in self.cfg.silences:
            if s.matches(slice_, signal, when):
                return f"silence {s.comment}".strip(), epoch_us(s.ends_at)
        if self.runtime_silences:
            labels = {"alertname": "TapshieldFailureWave", "signal": signal, **slice_}
            for rs in self.runtime_silences:
                if rs.mutes(labels, when):
                    return f"silence {rs.id} {rs.comment}".strip(), epoch_us(rs.ends_at)
        return None

    # -- figures ----------------------------------------------------------------------

    def _meets(self, a: int, b: int) -> bool:
        """Can an event be in both slices (:func:`intersects`, remembered: slices never change)."""
        key = (a, b)
        got = self._meet.get(key)
        if got is None:
            infos = self.registry.infos
            got = self._meet[key] = intersects(infos[a].mapping, infos[b].mapping)
        return got

    def _mask(self, view: View, s: int | None) -> np.ndarray:
        """Rows of ``view`` in slice ``s`` (read-only, cached on the view)."""
        if s is None:
            return np.zeros(view.size, dtype=bool)
        j = self.registry.infos[s].set_index
        return view.cached(("slice", s), lambda v: v.member[:, j] == s)

    def _rows(self, view: View, s: int) -> np.ndarray:
        """Positions of slice ``s``'s rows in ``view`` (``np.flatnonzero`` of its mask)."""
        j = self.registry.infos[s].set_index
        return view.where(("slice", s), lambda v: v.member[:, j] == s)

    def _indicator(self, view: View, s: int, sig: int) -> np.ndarray:
        """Rows of ``view`` that are failures for ``sig`` (read-only, cached on the view)."""
        if sig == kn.SIG_TECHNICAL:
            return view.cached(("y", sig), lambda v: (v.cls == kn.FAILED) | (v.cls == kn.TIMEOUT))
        if sig == kn.SIG_DECLINE:
            return view.cached(("y", sig), lambda v: (v.cls == kn.DECLINE) & ~v.dup)
        if sig == kn.SIG_RISK:
            return view.cached(("y", sig), lambda v: (v.cls == kn.RISK) & ~v.dup)
        thr = float(self.bank.lat_thr[s])

        def slow(v: View) -> np.ndarray:
            with np.errstate(invalid="ignore"):
                out = v.lat > thr
            return np.asarray(out & (v.cls != kn.FAILED) & (v.cls != kn.TIMEOUT))

        return view.cached(("y", sig, thr), slow)

    def _impact(self, a: Alert, now: int, seq: int) -> tuple[Impact, dict[str, Any]]:
        """Excess failed attempts, taps and amount of the wave over the last minute."""
        start = max(a.started_us, now - self.us["level"])
        view = self._level_view(now, seq, start)
        real_s = max((now - start) / 1e6, 1.0)
        span_s = max(real_s, 10.0)
        # rates per minute use at least 10 s; expected counts use the real window
        n_all = view.size
        used = np.zeros(n_all, dtype=bool)
        excess = 0.0
        missing_total = 0.0
        failed_payments = 0.0
        lost_fen = Decimal(0)
        primary_excess = 0.0
        primary_idx = self._primary_index()
        on_primary = self._mask(view, primary_idx) if (
            self.registry.set_of_dim.get("channel") is not None) else np.zeros(n_all, dtype=bool)
        members_out: list[dict[str, Any]] = []
        bank = self.bank
        scope = a.scope() or list(a.members.values())
        # attempts per payment and mean amount: only lost traffic is valued with them
        # (so they are computed only when the wave has a traffic member)
        per_payment = 1.0
        mean_fen = Decimal(0)
        if n_all and any(m.signal not in RATE_SIGNALS for m in scope):
            per_payment = np.unique(view.pay).size / n_all
            mean_fen = Decimal(int(view.amt.sum())) / n_all
        top_share = 0.0
        for m in scope:
            info = self.registry.infos[m.slice]
            entry: dict[str, Any] = {"slice": info.as_dict, "signal": SIGNAL_NAMES[m.signal]}
            if m.signal in RATE_SIGNALS:
                # the slice's rows not counted already nor in a stronger wave's scope
                rows = self._rows(view, m.slice)
                rows = rows[~used[rows] & ~self._others(a, m.signal, view, rows)]
                fail = rows[self._indicator(view, m.slice, m.signal)[rows]]
                n = int(rows.size)
                x = int(fail.size)
                p0 = float(bank.p_mean[m.slice, m.signal])
                exp = n * p0
                # the excess beyond what normal traffic can give: noise must not set a level
                ex = max(0.0, x - _noise(exp))
                one_actor, top = self._one_actor(view.dev[fail], exp)
                top_share = max(top_share, top)
                if one_actor:
                    ex = 0.0  # one phone or one fraudster: not a wave (see levels.yaml)
                frac = ex / x if x else 0.0
                if x:
                    pays, fen = kn.first_amounts(view.pay[fail], view.amt[fail])
                    failed_payments += pays * frac
                    lost_fen += Decimal(fen) * Decimal(repr(frac))
                    primary_excess += float(on_primary[fail].sum()) * frac
                excess += ex
                used[rows] = True
                entry.update({"attempts": n, "observed": x, "expected": round(exp, 3),
                              "rate": round(x / n, 6) if n else None,
                              "expected_rate": round(p0, 6),
                              "ratio": round((x / n) / p0, 2) if n and p0 > 0 else None})
            elif m.signal == kn.SIG_TRAFFIC:
                in_s = self._mask(view, m.slice)
                n_s = int(in_s.sum())
                share = float(bank.share[m.slice])
                expected = share * (n_all - n_s) / (1.0 - share) if share < 1 else 0.0
                missing = max(0.0, expected - n_s)
                missing_total += missing
                excess += missing
                failed_payments += missing * per_payment
                lost_fen += mean_fen * Decimal(repr(missing))
                if info.as_dict.get("channel") == self.primary:
                    primary_excess += missing
                entry.update({"attempts": n_s, "expected": round(expected, 2),
                              "expected_share": round(share, 6)})
            else:
                expected = bank.lam_per_s * real_s
                missing = max(0.0, expected - n_all)
                missing_total += missing
                excess += missing
                failed_payments += missing * per_payment
                lost_fen += mean_fen * Decimal(repr(missing))
                entry.update({"attempts": n_all, "expected": round(expected, 2)})
            members_out.append(entry)
        scale = 60.0 / span_s
        # the denominator is at least the national volume expected in the window, so
        # a trickle of events (a stream's tail, a silence) cannot make a share huge
        share_aff = excess / max(n_all + missing_total, bank.lam_per_s * real_s, 1.0)
        involved = any(self.registry.infos[m.slice].as_dict.get("channel") == self.primary
                       for m in scope) or (excess > 0 and primary_excess / excess > 0.5)
        lost_per_min = int((lost_fen * Decimal(repr(scale))).to_integral_value(
            rounding=ROUND_HALF_EVEN))
        impact = Impact(
            share_affected=min(share_aff, 1.0),
            failed_payments_per_min=failed_payments * scale,
            lost_fen_per_min=lost_per_min,
            primary_involved=involved,
            duration=from_epoch_us(now) - from_epoch_us(a.started_us),
            excess_for=self._excess_for(a, now, excess > 0 or missing_total > 0),
            top_device_share=top_share if excess > 0 or missing_total > 0 else 0.0,
        )
        figures: dict[str, Any] = impact.as_figures()
        figures["scope"] = [self.registry.infos[m.slice].as_dict for m in a.scope()]
        figures["signals"] = sorted({SIGNAL_NAMES[m.signal] for m in a.members.values()})
        figures["members"] = members_out
        figures["also_affected"] = [
            {"slice": self.registry.infos[m.slice].as_dict, "signal": SIGNAL_NAMES[m.signal]}
            for m in itertools.islice((m for m in a.members.values() if m.role == "absorbed"),
                                      20)
        ]
        figures["window_s"] = round(span_s, 1)
        figures["national_attempts"] = n_all
        figures["late_events"] = self.late_events
        return impact, figures

    def _change_point(self, s: int, sig: int, now: int, seq: int, fallback: int) -> int:
        """Maximum-likelihood start of a rate change in slice ``s`` (Bernoulli GLR).

        For every candidate start ``k`` among the slice's recent events, the
        log-likelihood ratio of "rate p-hat since k" against the expectation;
        the best ``k`` is the estimate. Better than a CUSUM's last reset, which
        for a low design ratio can lie minutes before the real start.
        """
        view = self.recent.view(now - self.us["explain"], seq)
        in_s = self._mask(view, s)
        if not in_s.any():
            return fallback
        y = self._indicator(view, s, sig)[in_s].astype(np.float64)
        ts = view.ts[in_s]
        p0 = max(float(self.bank.p_mean[s, sig]), 1e-6)
        x = np.cumsum(y[::-1])[::-1]
        m = np.arange(y.size, 0, -1, dtype=np.float64)
        p = np.clip(x / m, 1e-12, 1 - 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            llr = x * np.log(p / p0) + (m - x) * np.log((1 - p) / (1 - p0))
        llr[p <= p0] = 0.0
        k = int(np.argmax(llr))
        return int(ts[k]) if llr[k] > 0 else fallback

    def _level_view(self, now: int, seq: int, start: int) -> View:
        """The last ``level_window`` of events, built once per evaluation point."""
        key = (now, seq, self.recent.generation)
        if self._lv_key != key or self._lv is None:
            self._lv = self.recent.view(now - self.us["level"], seq)
            self._lv_key = key
        v = self._lv
        return v.tail(int(np.searchsorted(v.ts, start, side="left")))

    def _others(self, a: Alert, sig: int, view: View, rows: np.ndarray) -> np.ndarray:
        """Which of the view's ``rows`` are in the scope of stronger open waves with the
        same signal (larger last share affected; the older on a tie): contested
        events are the larger wave's impact, so a notice is not levelled by a
        concurrent outage's failures."""
        out = np.zeros(rows.size, dtype=bool)
        older = True
        for b in self.alerts.values():
            if b is a:
                older = False
                continue
            stronger = b.last_share > a.last_share or (b.last_share == a.last_share and older)
            if b.state == "resolved" or not stronger:
                continue
            for m in b.scope():
                if m.signal == sig:
                    out |= self._mask(view, m.slice)[rows]
        return out

    def _excess_for(self, a: Alert, now: int, excess: bool) -> timedelta:
        """Since when the wave has shown excess, forgiving breaks shorter than the
        resolve hold (a minute where the count dips is not the end of a wave)."""
        if excess:
            if a.excess_since is None or (a.last_excess_us is not None
                                          and now - a.last_excess_us > self.us["hold"]):
                a.excess_since = min(a.started_us, now) if a.last_review_us == 0 else now
            a.last_excess_us = now
        elif a.last_excess_us is None or now - a.last_excess_us > self.us["hold"]:
            a.excess_since = None
        if a.excess_since is None:
            return timedelta(0)
        return from_epoch_us(now) - from_epoch_us(a.excess_since)

    def _one_actor(self, devs: np.ndarray, expected: float) -> tuple[bool, float]:
        """Is this slice's excess one device's doing? ``(verdict, busiest device's share)``.

        One device is the cause when it made more than ``max_top_device_share``
        of the failing attempts, or when the failures left without it are
        within normal noise.
        """
        if devs.size == 0:
            return False, 0.0
        top = int(kn.top_count(devs))
        share = top / devs.size
        rest = devs.size - top
        return (share > self.cfg.levels.max_top_device_share
                or rest - _noise(expected) <= 0.0), share

    def _primary_index(self) -> int | None:
        """The primary channel's slice (looked up until it exists, then cached)."""
        if self._primary_idx is None:
            self._primary_idx = self.registry.index_of({"channel": self.primary})
        return self._primary_idx

    # -- output -------------------------------------------------------------------------

    def _event(self, a: Alert, now: int, state: str, notify: bool) -> AlertEvent:
        info = self.registry.infos[a.slice]
        level = a.tracker.level
        sig_name: Signal = SIGNAL_NAMES[a.signal]  # type: ignore[assignment]
        figures = dict(a.figures)
        figures["level_name"] = LEVEL_NAMES[level]
        if a.tracker.reasons:
            figures["level_reasons"] = list(a.tracker.reasons)
        if a.suppressed_by:
            figures["suppressed_by"] = a.suppressed_by
        flaps = sum(m.flaps for m in a.members.values())
        if flaps:
            figures["flaps"] = flaps
        labels = {
            "alertname": "TapshieldFailureWave",
            "alert_id": a.alert_id,
            "signal": sig_name,
            "severity": LEVEL_NAMES[level],
            **info.as_dict,
        }
        where = ", ".join(f"{k}={v}" for k, v in info.as_dict.items()) or "the whole flow"
        annotations = {
            "summary": f"level {level} ({LEVEL_NAMES[level]}): {sig_name.replace('_', ' ')} "
                       f"in {where}",
            "description": _describe(figures),
        }
        self.events_emitted += 1
        self.changes[state] = self.changes.get(state, 0) + 1
        return AlertEvent(
            alert_id=a.alert_id,
            ts=from_epoch_us(now),
            state=state,  # type: ignore[arg-type]
            level=level,
            started_at=from_epoch_us(a.started_us),
            slice=info.as_dict,
            signal=sig_name,
            notify=notify,
            figures=figures,
            labels=labels,
            annotations=annotations,
        )

    def open_alerts(self) -> list[Alert]:
        return list(self.alerts.values())


def _describe(f: dict[str, Any]) -> str:
    parts = [f"{f.get('share_affected', 0) * 100:.2f}% of national attempts failing in excess",
             f"{f.get('failed_payments_per_min', 0):.1f} failed taps/min",
             f"{f.get('lost_amount_per_min', '0.00')} yuan/min"]
    for m in f.get("members", [])[:3]:
        if m.get("rate") is not None:
            parts.append(f"{m['signal']} {m['rate'] * 100:.2f}% vs expected "
                         f"{m['expected_rate'] * 100:.2f}% in "
                         + (slice_key(m["slice"]) if m["slice"] else "all"))
    return "; ".join(parts)


def _us(td: Any) -> int:
    return int(td.total_seconds() * 1_000_000)


def _maintenance_windows(changes: pl.DataFrame | None) -> list[Window]:
    if changes is None or changes.height == 0 or "kind" not in changes.columns:
        return []
    rows = changes.filter(pl.col("kind").cast(pl.String) == "maintenance")
    out: list[Window] = []
    for r in rows.iter_rows(named=True):
        start: datetime | None = r.get("ts")
        end: datetime | None = r.get("end_ts")
        if start is None or end is None:
            continue
        comp = str(r.get("component") or "")
        key = hashlib.sha1(f"{comp}|{start.isoformat()}".encode()).hexdigest()[:10]
        out.append(Window(key, scope_of(comp), epoch_us(start), epoch_us(end), comp,
                          str(r.get("note") or "")))
    return out


__all__ = ["NATIONAL", "Alert", "Lifecycle", "Member"]
