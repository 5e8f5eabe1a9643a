"""From detector crossings to alerts: the dispatcher that runs the alerting stages.

One alert per wave, leveled, grouped, resolved once. The stages, each a
module of :mod:`tapshield.monitor.alerting` with one small interface (the
split follows Prometheus Alertmanager's dispatch / inhibit / silence /
notify packages):

1. **Grouping and inhibition** (:class:`~tapshield.monitor.alerting.inhibit.Inhibitor`):
   a crossing explained by an open wave (or a maintenance window) joins it
   silently; one whose change point lies within ``group_window`` of an open
   wave of the same family widens that wave's scope; otherwise it is a new
   wave, a new alert.
2. **Suppression** (:class:`~tapshield.monitor.alerting.suppress.Suppressor`):
   a new alert inside an announced maintenance window's scope, or matching a
   silence, is recorded as ``suppressed`` and notifies no one; if it outlives
   the window (plus a grace period) it fires for real.
3. **Measuring a wave** (:class:`~tapshield.monitor.alerting.measure.WaveMeter`):
   at every bucket boundary the excess impact of each wave is measured and its
   level updated (:mod:`tapshield.monitor.levels`).
4. **The state machine** (:class:`~tapshield.monitor.alerting.waves.Alert`):
   each test resolves through its own reverse test, then a hold period in
   which it re-fires at a lower threshold: a flapping link fires once and
   resolves once. An alert resolves when all its tests have, or when it has
   shown no excess beyond noise for ``quiet_resolve``.
5. **Notification policy** (:class:`~tapshield.monitor.alerting.escalate.NotifyPolicy`):
   levels 1-3 page; the first page, an escalation (at most one notification
   per ``renotify_interval``), reminders at growing intervals, and the
   resolution of a paged alert notify; everything else is recorded only.

This module only orders the stages and keeps the registry of open alerts and
of which alert owns which test; the detectors' states change through
:class:`~tapshield.monitor.detectors.DetectorBank`'s methods.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta
from typing import Any

import polars as pl

from tapshield.monitor import _kernels as kn
from tapshield.monitor.alerting.emit import alert_event
from tapshield.monitor.alerting.escalate import NotifyPolicy
from tapshield.monitor.alerting.inhibit import Inhibitor, is_window, window_key
from tapshield.monitor.alerting.measure import WaveMeter
from tapshield.monitor.alerting.suppress import (
    RuntimeSilence,
    Suppression,
    Suppressor,
    maintenance_windows,
)
from tapshield.monitor.alerting.views import SliceViews
from tapshield.monitor.alerting.waves import FAMILY, RATE_SIGNALS, Alert, Member, Ref, Window
from tapshield.monitor.alerts import AlertEvent, AlertState
from tapshield.monitor.config import MonitorConfig
from tapshield.monitor.detectors import FIRING, HOLD, SIGNAL_NAMES, Crossing, DetectorBank, Recovery
from tapshield.monitor.levels import LevelTracker
from tapshield.monitor.recent import RecentEvents
from tapshield.monitor.slices import NATIONAL, SliceRegistry, refines
from tapshield.timeutil import from_epoch_us

_NEVER = 2**62


def _us(td: timedelta) -> int:
    return int(td.total_seconds() * 1_000_000)


class Lifecycle:
    """Dispatches crossings and bucket boundaries through the alerting stages."""

    def __init__(self, cfg: MonitorConfig, registry: SliceRegistry, bank: DetectorBank,
                 recent: RecentEvents, changes: pl.DataFrame | None) -> None:
        self.cfg = cfg
        self.registry = registry
        self.bank = bank
        self.recent = recent
        self.alerts: dict[str, Alert] = {}
        """Open (firing or suppressed) alerts, in the order they opened."""
        self.owner: dict[Ref, str] = {}
        self.us = {
            "group": _us(cfg.group_window), "explain": _us(cfg.explain_window),
            "hold": _us(cfg.resolve_hold), "level": _us(cfg.level_window),
            "renotify": _us(cfg.renotify_interval), "grace": _us(cfg.maintenance_grace),
            "quiet": _us(cfg.quiet_resolve), "reopen": _us(cfg.reopen_window),
        }
        self.suppressor = Suppressor(maintenance_windows(changes), cfg.silences,
                                     self.us["grace"])
        views = SliceViews(registry, bank)
        self.inhibitor = Inhibitor(registry, bank, recent, views, self.suppressor,
                                   explain_us=self.us["explain"], group_us=self.us["group"])
        self.meter = WaveMeter(cfg, registry, bank, recent, views, level_us=self.us["level"],
                               hold_us=self.us["hold"])
        self.policy = NotifyPolicy(cfg)
        self.events_emitted = 0
        self.changes: dict[str, int] = {}
        """Alert state changes emitted so far, by state."""
        self.late_events = 0
        self.orphans: dict[Ref, int] = {}
        """Tests left firing or on hold by a resolved alert: when their hold ends."""
        self.resolved: dict[str, Alert] = {}
        """Alerts resolved from firing within the last ``reopen_window`` (``one_page``):
        the same fault returning reopens one of them instead of paging anew."""
        self._pending_silence: Crossing | None = None
        """A national traffic drop not yet told from a surge falling back."""
        self.surges_ended = 0
        """National traffic drops found to be a surge falling back (not paged)."""
        self._last_retest = 0
        self._next_hold = _NEVER
        """No member's hold ends before this (its members are looked at from then on)."""

    @property
    def runtime_silences(self) -> tuple[RuntimeSilence, ...]:
        """Silences set while running (``tapshield serve``'s ``POST /v1/silences``);
        the service replaces them as they change (see :class:`Suppressor`)."""
        return self.suppressor.runtime

    @runtime_silences.setter
    def runtime_silences(self, silences: tuple[RuntimeSilence, ...]) -> None:
        self.suppressor.runtime = tuple(silences)

    @property
    def windows(self) -> list[Window]:
        """The announced maintenance windows (from the changes file)."""
        return self.suppressor.windows

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
        explained, cp, owner_id = self.inhibitor.explain(c, seq, self.alerts.values())
        if explained and owner_id is not None:
            return self._absorb(owner_id, ref, c, cp, seq)
        if self.cfg.one_page and c.signal == kn.SIG_NATIONAL_TRAFFIC:
            verdict = self._silence(c, c.ts, seq)
            if verdict is None:
                self._pending_silence = c  # decided at the next bucket boundaries
                return []
            if not verdict:
                self._not_a_silence()
                return []
        return self._place(c, cp, seq)

    def _place(self, c: Crossing, cp: int, seq: int) -> list[AlertEvent]:
        """A crossing no open wave explains: the same wave seen in another slice, a
        wave with the same scope, a wave coming back, or a new one."""
        ref = (c.slice, c.signal)
        if c.signal in RATE_SIGNALS:
            cp = self.inhibitor.change_point(c.slice, c.signal, c.ts, seq, cp)
        # a new wave in this slice, or the same wave seen in another slice
        fam = FAMILY[c.signal]
        for a in self.alerts.values():
            if a.family == fam and a.window is None and self.inhibitor.same_wave(a, c.slice, cp):
                a.members[ref] = Member(c.slice, c.signal, "scope", cp, c.ts)
                self.owner[ref] = a.alert_id
                a.started_us = min(a.started_us, cp)
                return []
        if self.cfg.one_page and fam == "technical":
            # two waves in disjoint slices whose failures one third slice holds (an
            # OS each, inside a release's fault) are one fault
            for a in self.alerts.values():
                if a.family == fam and a.window is None and a.state == "firing" and \
                        self.inhibitor.common_cause(c, seq, a) is not None:
                    a.members[ref] = Member(c.slice, c.signal, "scope", cp, c.ts)
                    self.owner[ref] = a.alert_id
                    a.minimized_us = 0  # re-rank its scope at the next review
                    return []
        if self.cfg.one_page:
            # a wave with the same scope at the same time (another family's signal in a
            # slice an open wave is made of) is that wave: one fault, one incident
            for a in self.alerts.values():
                if a.window is None and cp >= a.started_us - self.us["group"] and any(
                        m.slice == c.slice for m in a.scope()):
                    a.members[ref] = Member(c.slice, c.signal, "scope", cp, c.ts)
                    self.owner[ref] = a.alert_id
                    return []
        return self._open(c, cp, seq)

    def _silence(self, c: Crossing, now: int, seq: int) -> bool | None:
        """Is the national traffic drop found by ``c`` a silence, judged against the
        *normal* level rather than the recent one (which a surge inflates)?

        The detector's own test (rate ``traffic_ratio`` x expected against the
        expected rate, threshold ``h``) is evaluated again over the events since the
        change point, with the surge-robust normal rate
        (:meth:`DetectorBank.normal_rate_per_s`): at or above ``h`` it is a silence
        (``True``); with a log-likelihood ratio below 0 (traffic nearer the normal
        level than a tenth of it: a surge falling back) it is not (``False``); in
        between, not yet decided (``None``)."""
        rate = self.bank.normal_rate_per_s()
        if rate <= 0.0:
            return True  # no normal level yet: the detector's word stands
        t_s = max((now - c.cp) / 1e6, 0.0)
        n = self.recent.view(c.cp, seq).size
        rho = self.cfg.traffic_ratio
        llr = n * math.log(rho) + rate * t_s * (1.0 - rho)
        if llr >= self.bank.threshold(kn.SIG_NATIONAL_TRAFFIC):
            return True
        return False if llr < 0.0 else None

    def _not_a_silence(self) -> None:
        """The national test fired on a surge falling back: it starts afresh."""
        self._pending_silence = None
        self.bank.hold(NATIONAL, kn.SIG_NATIONAL_TRAFFIC)
        self.bank.idle(NATIONAL, kn.SIG_NATIONAL_TRAFFIC)
        self.surges_ended += 1

    def _decide_silence(self, now: int, seq: int) -> list[AlertEvent]:
        """A national drop waiting for its verdict (see :meth:`_silence`)."""
        c = self._pending_silence
        assert c is not None
        if self.bank.state(NATIONAL, kn.SIG_NATIONAL_TRAFFIC) != FIRING or (
                now - c.ts > self.us["explain"]):
            self._pending_silence = None  # recovered, or undecided for too long
            if self.bank.state(NATIONAL, kn.SIG_NATIONAL_TRAFFIC) == FIRING:
                self._not_a_silence()
            return []
        verdict = self._silence(c, now, seq)
        if verdict is None:
            return []
        if not verdict:
            self._not_a_silence()
            return []
        self._pending_silence = None
        return self._place(Crossing(c.slice, c.signal, c.bank, -1, now, c.cp, c.value), c.cp,
                           seq)

    def _absorb(self, owner_id: str, ref: Ref, c: Crossing, cp: int,
                seq: int) -> list[AlertEvent]:
        if is_window(owner_id):
            w = self.suppressor.window(window_key(owner_id))
            alert = next((a for a in self.alerts.values() if a.window is w), None)
            if alert is None:
                return self._open(c, cp, seq, suppression=self.suppressor.for_window(w))
            owner_id = alert.alert_id
        a = self.alerts[owner_id]
        a.members[ref] = Member(c.slice, c.signal, "absorbed", cp, c.ts)
        self.owner[ref] = owner_id
        return []

    def _open(self, c: Crossing, cp: int, seq: int, suppression: Suppression | None = None
              ) -> list[AlertEvent]:
        info = self.registry.infos[c.slice]
        now = c.ts
        # the id names the window only when the window itself opened the alert
        by_window = suppression.window if suppression is not None else None
        raw = f"{c.signal}|{info.key}|{cp}|{by_window.key if by_window else ''}"
        if suppression is None:
            suppression = self.suppressor.check(info.as_dict, SIGNAL_NAMES[c.signal], now)
            if suppression is None and self.cfg.one_page:
                back = self._reopenable(c.slice, FAMILY[c.signal], c.signal, now, seq)
                if back is not None:
                    return self._reopen(back, c, cp, seq)
        alert_id = "A-" + hashlib.sha1(raw.encode()).hexdigest()[:12]
        same = self.alerts.get(alert_id) if self.cfg.one_page else None
        if same is not None:
            # the same signal in the same slice from the same change point: the wave
            # that is open under this id (its own slice had left it); join, don't
            # replace it (replacing orphaned its other members' ownership)
            same.members[(c.slice, c.signal)] = Member(c.slice, c.signal, "scope", cp, c.ts)
            self.owner[(c.slice, c.signal)] = alert_id
            return []
        if self.cfg.one_page and alert_id in self.resolved:
            return self._reopen(self.resolved[alert_id], c, cp, seq)
        a = Alert(alert_id, FAMILY[c.signal], c.signal, c.slice, cp, c.ts,
                  LevelTracker(self.cfg.levels, family=FAMILY[c.signal]))
        a.members[(c.slice, c.signal)] = Member(c.slice, c.signal, "scope", cp, c.ts)
        self.alerts[alert_id] = a
        self.owner[(c.slice, c.signal)] = alert_id
        if suppression is not None:
            a.suppress(suppression.by, suppression.until_us, suppression.window)
        impact, figures = self._measure(a, now, seq)
        a.tracker.update(impact, from_epoch_us(now))
        a.figures = figures
        a.last_share = impact.share_affected
        if a.state == "suppressed":
            return [self._event(a, now, "suppressed", notify=False)]
        return [self._fire(a, now)]

    def _reopenable(self, s: int, family: str, signal: int, now: int, seq: int
                    ) -> Alert | None:
        """The most recently resolved paged alert of this family, resolved within the
        reopen window, that slice ``s``'s wave is the return of: ``s`` is in or around
        its scope (same signal; the whole flow only matches itself), or, as
        inhibition judges an open wave, nothing anomalous is left in ``s`` once the
        resolved scope's events are taken out (a slice that only shares events with
        the scope, crossing first as the fault comes back)."""
        infos = self.registry.infos
        t = infos[s].mapping
        for a in reversed(list(self.resolved.values())):
            if a.family != family or a.resolved_us is None:
                continue
            if now - a.resolved_us > self.us["reopen"]:
                continue
            scope = [infos[a.slice].mapping, *a.figures.get("scope", [])]
            # the same slice, or one inside or around the wave's scope; the whole flow
            # contains everything, so it matches only itself
            if a.signal == signal and any(
                    t == d or (t and d and (refines(t, d) or refines(d, t))) for d in scope):
                return a
            idx = [i for i in (self.registry.index_of(d) for d in scope) if i is not None]
            if t and idx and signal in RATE_SIGNALS and self.inhibitor.explained_by(
                    s, signal, idx, now, seq):
                return a
        return None

    def _reopen(self, a: Alert, c: Crossing, cp: int, seq: int) -> list[AlertEvent]:
        """Fire resolved alert ``a`` again for crossing ``c`` (see :meth:`Alert.reopen`)."""
        del self.resolved[a.alert_id]
        prior = [i for i in (self.registry.index_of(d)
                             for d in [self.registry.infos[a.slice].mapping,
                                       *a.figures.get("scope", [])]) if i is not None]
        a.reopen(Member(c.slice, c.signal, "scope", cp, c.ts))
        a.prior_scope = list(dict.fromkeys(prior))
        self.alerts[a.alert_id] = a
        self.owner[(c.slice, c.signal)] = a.alert_id
        now = c.ts
        impact, figures = self._measure(a, now, seq)
        a.tracker.update(impact, from_epoch_us(now))
        a.figures = figures
        a.last_share = impact.share_affected
        return [self._event(a, now, "firing", notify=self.policy.on_reopen(a, now),
                            extra={"reopened": a.reopened})]

    def _fire(self, a: Alert, now: int) -> AlertEvent:
        return self._event(a, now, "firing", notify=self.policy.on_fire(a, now))

    def _measure(self, a: Alert, now: int, seq: int) -> tuple[Any, dict[str, Any]]:
        return self.meter.measure(a, now, seq, self.alerts.values(), self.late_events)

    # -- bucket boundaries ------------------------------------------------------------

    def on_bucket(self, t_end: int, recoveries: list[Recovery], crossings: list[Crossing],
                  seq: int) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        out.extend(self.on_crossings(crossings, seq + 1))
        if self._pending_silence is not None:
            out.extend(self._decide_silence(t_end, seq))
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
        if self.resolved:
            for aid, gone in list(self.resolved.items()):
                if gone.resolved_us is None or t_end - gone.resolved_us > self.us["reopen"]:
                    del self.resolved[aid]
        return out

    def _review(self, a: Alert, now: int, seq: int) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        if (a.quiet_since is not None and a.state == "firing"
                and not self.policy.waiting(a, now)
                and now - a.last_review_us < 60_000_000):
            return out  # a wave with no excess is looked at once a minute
        a.last_review_us = now
        impact, figures = self._measure(a, now, seq)
        a.figures = figures
        a.last_share = impact.share_affected
        if a.state == "suppressed":
            if a.suppressed_until is not None and now >= a.suppressed_until and any(
                self.bank.state(m.slice, m.signal) == FIRING for m in a.scope()
            ) and impact.share_affected > 0:
                # the wave outlived its maintenance window or silence: it is real
                a.release(max(a.started_us, a.suppressed_until - self.us["grace"]))
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
            self.inhibitor.minimize(a, now, seq, same_slice=self.cfg.one_page)
            impact, figures = self._measure(a, now, seq)
            a.figures = figures
        before = a.tracker.level
        a.tracker.update(impact, from_epoch_us(now))
        said = self.policy.on_level(a, now, before)
        if said is not None:
            out.append(self._event(a, now, said[0], notify=said[1]))
        return out

    def _resolve(self, a: Alert, now: int, ended: int | None = None) -> AlertEvent:
        was_firing = a.state == "firing"
        a.resolve(ended, now)
        del self.alerts[a.alert_id]
        if self.cfg.one_page and was_firing and a.paged:
            # only a wave that paged can page twice: a notice that returns is a new
            # notice (reopening it would measure its level from the first start)
            self.resolved[a.alert_id] = a
        for ref in a.members:
            # tests the wave explained, still firing or on hold: they watch afresh at
            # the full threshold (a lower one is only for the wave that just ended)
            self.owner.pop(ref, None)
            self.bank.hold(*ref)
            self.bank.idle(*ref)
        return self._event(a, now, "resolved", notify=self.policy.on_resolve(a),
                           extra={"ended_at": from_epoch_us(a.ended_us or now)})

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
        # only slices still failing beyond noise in the last minute are worth it
        cands = [(a, ref, m) for a, ref, m in todo
                 if self.meter.failing_beyond_noise(now, seq, m.slice, m.signal)]
        if not cands:
            return
        view = self.recent.view(now - self.us["explain"], seq)
        for a, ref, m in cands:
            if a.alert_id not in self.alerts or ref not in a.members:
                continue
            c = Crossing(m.slice, m.signal, 0, -1, now, now - self.us["explain"], 0.0)
            explained, cp, _owner = self.inhibitor.explain(c, seq, self.alerts.values(), view)
            if explained:
                continue
            if self.inhibitor.same_wave(a, m.slice, cp):
                a.set_role(m, "scope")  # part of this same wave after all
                continue
            del a.members[ref]
            self.owner.pop(ref, None)
            joined = False
            for b in self.alerts.values():
                if b is not a and b.family == FAMILY[m.signal] and b.window is None and \
                        self.inhibitor.same_wave(b, m.slice, cp):
                    b.members[ref] = Member(m.slice, m.signal, "scope", cp, now)
                    self.owner[ref] = b.alert_id
                    b.minimized_us = 0  # re-rank its scope at the next review
                    joined = True
                    break
            if not joined:
                out.extend(self._open(Crossing(m.slice, m.signal, 0, -1, now, cp, 0.0), cp,
                                      seq))

    def _freeze_maintenance(self, now: int) -> None:
        """Detectors of slices inside a window in force stop learning (planned outage)."""
        n = self.bank.n
        frozen = self.suppressor.frozen([info.mapping for info in self.registry.infos[:n]],
                                        now) if self.suppressor.windows else None
        if frozen is not None:
            self.bank.freeze(frozen)

    # -- output -------------------------------------------------------------------------

    def _event(self, a: Alert, now: int, state: AlertState, notify: bool,
               extra: dict[str, Any] | None = None) -> AlertEvent:
        self.events_emitted += 1
        self.changes[state] = self.changes.get(state, 0) + 1
        return alert_event(a, self.registry.infos[a.slice], now, state, notify, extra)

    def open_alerts(self) -> list[Alert]:
        return list(self.alerts.values())


__all__ = ["NATIONAL", "Alert", "Lifecycle", "Member"]
