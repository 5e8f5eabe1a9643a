"""Grouping and inhibition: is a crossing a new wave, the same wave seen in
another slice, or a side effect of a wave already open?

Alertmanager groups alerts by labels and inhibits alerts that a firing alert
explains by matching labels. Slices are not independent labels (an event of
``{channel: nfc, region: CN-GD}`` is also in ``{channel: nfc}``), so here both
questions are answered with the events themselves:

* **inhibition** (:meth:`Inhibitor.explain`): the crossing slice is tested
  again *with the open waves' events taken out* (the same CUSUM, on the
  recent-events buffer). If nothing anomalous is left, the slice is a child
  or a side effect of an open wave and joins it silently. Maintenance windows
  explain everything in their scope.
* **grouping** (:meth:`Inhibitor.same_wave`): a crossing whose change point
  lies within ``group_window`` of an open technical wave, or whose slice lies
  inside a wave's scope, is that wave seen in another slice.
* **minimisation** (:meth:`Inhibitor.minimize`): once a minute a wave keeps as
  its scope only the slices the others do not explain.

This stage reads the open alerts and the detectors; it changes no alert
state except the roles of a wave's members in :meth:`minimize`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from tapshield.monitor.alerting.suppress import Suppressor
from tapshield.monitor.alerting.views import SliceViews
from tapshield.monitor.alerting.waves import RATE_SIGNALS, Alert, Member
from tapshield.monitor.detectors import Crossing, DetectorBank
from tapshield.monitor.recent import RecentEvents, View
from tapshield.monitor.slices import SliceRegistry, refines

WINDOW_PREFIX = "window:"
"""Owners named ``window:<key>`` are maintenance windows, not alerts."""


class Inhibitor:
    """Decides whether open waves (or windows) explain a crossing, and groups waves."""

    def __init__(self, registry: SliceRegistry, bank: DetectorBank, recent: RecentEvents,
                 views: SliceViews, suppressor: Suppressor, *, explain_us: int,
                 group_us: int) -> None:
        self.registry = registry
        self.bank = bank
        self.recent = recent
        self.views = views
        self.suppressor = suppressor
        self.explain_us = explain_us
        self.group_us = group_us

    def explain(self, c: Crossing, seq: int, alerts: Iterable[Alert], view: View | None = None
                ) -> tuple[bool, int, str | None]:
        """Is the crossing explained by open waves? ``(explained, change point, owner)``.

        Only waves that show the *same signal* (and maintenance windows, which
        explain everything in their scope) can explain a rate crossing: a
        national latency wave says nothing about technical failures in one
        region. One exception: a technical wave explains slowness (timeouts and
        retries of an outage slow the answers around it), not the reverse.
        Otherwise the same fault seen in another signal is joined by the
        grouping rule. The owner is an alert id or ``window:<key>``.
        """
        infos = self.registry.infos
        views = self.views
        t_info = infos[c.slice].mapping
        now = c.ts
        related: list[tuple[str, list[int], list[dict[str, str]]]] = []
        traffic = c.signal not in RATE_SIGNALS
        for a in alerts:
            slices = a.explaining(c.signal, traffic)
            if a.window is not None and not slices:
                slices = [m.slice for m in a.members.values()]
            if slices and any(views.meets(c.slice, s) for s in slices):
                related.append((a.alert_id, slices, [infos[s].mapping for s in slices]))
        for w in self.suppressor.touching(t_info, now):
            idx = self.registry.index_of(w.scope)
            related.append((WINDOW_PREFIX + w.key, [idx] if idx is not None else [], [w.scope]))
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
            if o.startswith(WINDOW_PREFIX) and any(refines(t_info, d) for d in ds):
                return True, c.cp, o
        if view is None:
            view = self.recent.view(max(now - self.explain_us, c.cp - self.explain_us), seq)
        if view.size == 0:
            return False, c.cp, None
        if not related:
            # a re-test (index -1) with no open wave around: is the slice itself
            # still anomalous, or just recovering slowly?
            rows = views.rows(view, c.slice)
            y = views.indicator(view, c.slice, c.signal)[rows]
            crossed, start = views.still_anomalous(y, c.slice, c.signal)
            if crossed and start >= 0:
                return False, int(view.ts[rows[start]]), None
            return True, c.cp, None
        first, _sl, first_ds = related[0]
        if any(refines(t_info, d) for d in first_ds) and self.bank.threshold(c.signal) > 0.0:
            # the first wave's scope contains the slice (a child of the wave): with its
            # events out nothing is left (an empty test never crosses), and it shares
            # the most events with the slice (all of them; the first wins a tie)
            return True, c.cp, first if views.mask(view, c.slice).any() else None
        # everything below only concerns the slice's own events: work on its rows
        rows = views.rows(view, c.slice)
        overlap: list[tuple[int, str]] = []
        in_u = np.zeros(rows.size, dtype=bool)
        for o, sl, ds in related:
            m = np.zeros(rows.size, dtype=bool)
            for s in sl:
                m |= views.mask(view, s)[rows]
            if not sl and any(refines(t_info, d) for d in ds):
                m[:] = True
            in_u |= m
            overlap.append((int(m.sum()), o))
        rest = rows[~in_u]
        y = views.indicator(view, c.slice, c.signal)[rest]
        crossed, start = views.still_anomalous(y, c.slice, c.signal)
        if crossed:
            cp = int(view.ts[rest[start]]) if start >= 0 else c.cp
            return False, cp, None
        overlap.sort(key=lambda t: -t[0])
        # nothing anomalous beyond the open waves: explained by the one sharing most
        # events with the slice (none shares any: nothing to attach it to)
        return True, c.cp, overlap[0][1] if overlap[0][0] > 0 else None

    def common_cause(self, c: Crossing, seq: int, a: Alert, tries: int = 3) -> int | None:
        """A slice of other dimensions that explains both the crossing's slice and
        every rate slice of wave ``a``'s scope, or ``None``.

        Two waves in disjoint slices of one dimension (``os=android`` then
        ``os=ios``) are one fault when a third slice holds the failures of both
        (``app_version=8.2.0``): the same removal test as inhibition, with that
        slice's events taken out of each. Candidates are, per slice set, the
        slice holding most of the crossing slice's recent failures (``tries`` of
        them, most failures first); a big slice that merely holds many events
        explains nothing, since the rest still fails."""
        infos = self.registry.infos
        views = self.views
        view = self.recent.view(c.ts - self.explain_us, seq)
        if view.size == 0:
            return None
        rows = views.rows(view, c.slice)
        fail = rows[views.indicator(view, c.slice, c.signal)[rows]]
        if fail.size == 0:
            return None
        own = infos[c.slice].mapping
        cands: list[tuple[int, int]] = []
        for j in range(view.member.shape[1]):
            col = view.member[fail, j]
            col = col[col >= 0]
            if col.size == 0:
                continue
            counts = np.bincount(col)
            t = int(np.argmax(counts))
            tm = infos[t].mapping
            if t == c.slice or not tm or refines(own, tm) or not set(tm) - set(own):
                continue  # the slice itself, the whole flow, or one of its parents
            cands.append((int(counts[t]), t))
        cands.sort(key=lambda x: (-x[0], infos[x[1]].key))
        for _n, t in cands[:tries]:
            in_t = views.mask(view, t)
            if self._left_anomalous(view, rows, in_t, c.slice, c.signal):
                continue
            if all(not self._left_anomalous(view, views.rows(view, m.slice), in_t, m.slice,
                                            m.signal)
                   for m in a.scope() if m.signal in RATE_SIGNALS):
                return t
        return None

    def _left_anomalous(self, view: View, rows: np.ndarray, out: np.ndarray, s: int,
                        sig: int) -> bool:
        """Is slice ``s`` still anomalous for ``sig`` on its ``rows`` outside ``out``?"""
        rest = rows[~out[rows]]
        y = self.views.indicator(view, s, sig)[rest]
        return self.views.still_anomalous(y, s, sig)[0]

    def change_point(self, s: int, sig: int, now: int, seq: int, fallback: int) -> int:
        """Maximum-likelihood start of a rate change in slice ``s`` (Bernoulli GLR).

        For every candidate start ``k`` among the slice's recent events, the
        log-likelihood ratio of "rate p-hat since k" against the expectation;
        the best ``k`` is the estimate. Better than a CUSUM's last reset, which
        for a low design ratio can lie minutes before the real start.
        """
        view = self.recent.view(now - self.explain_us, seq)
        in_s = self.views.mask(view, s)
        if not in_s.any():
            return fallback
        y = self.views.indicator(view, s, sig)[in_s].astype(np.float64)
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

    def same_wave(self, a: Alert, s: int, cp: int) -> bool:
        """Does a slice whose change began at ``cp`` belong to open wave ``a``?

        Yes if the slice lies inside the wave's scope (the same fault showing
        another symptom: slowness minutes after the timeouts of a network
        fault), or, for technical waves, if the change began within
        ``group_window`` of the wave (one outage seen in several slices, e.g. a
        card network's node serving two provinces). Decline waves are not grouped
        by time: bursts of declines come several an hour, so "began at about the
        same time" says nothing about a common cause.
        """
        if a.family == "technical" and abs(cp - a.started_us) <= self.group_us:
            return True
        inside = self.registry.infos[s].mapping
        infos = self.registry.infos
        return any(refines(inside, infos[m.slice].mapping) for m in a.scope()) or any(
            refines(inside, infos[p].mapping) for p in a.prior_scope if infos[p].mapping)

    def explained_by(self, s: int, sig: int, slices: list[int], now: int, seq: int) -> bool:
        """Is slice ``s``'s recent ``sig`` anomaly explained by ``slices`` (nothing
        anomalous left once their events are taken out), and does it share events
        with them at all?"""
        view = self.recent.view(now - self.explain_us, seq)
        if view.size == 0:
            return False
        rows = self.views.rows(view, s)
        out = np.zeros(view.size, dtype=bool)
        for t in slices:
            out |= self.views.mask(view, t)
        if not out[rows].any():
            return False
        return not self._left_anomalous(view, rows, out, s, sig)

    def minimize(self, a: Alert, now: int, seq: int, same_slice: bool = False) -> None:
        """Keep as the wave's scope only the slices the others do not explain.

        Slices join a wave in the order their tests happen to cross, often a
        small one first. Once a minute the scope members are ranked by the
        likelihood ratio of their counts over the recent window (Poisson:
        ``x ln(x/e) - (x - e)`` for ``x`` failures against ``e`` expected): the
        slice where the change concentrates ranks above both its diluted parents
        and its smaller children. Each is kept only if it is still anomalous with
        the better-ranked kept ones taken out, else it becomes an explained
        member. The alert is then named after its best slice. With
        ``same_slice``, a member in the slice of a kept one (another symptom of
        the same scope: declines where the channel fails) stays in the scope, so
        it goes on explaining its children.
        """
        views = self.views
        view = self.recent.view(now - self.explain_us, seq)
        if view.size == 0:
            return
        ranked: list[tuple[float, Member]] = []
        for m in a.scope():
            if m.signal not in RATE_SIGNALS:
                ranked.append((0.0, m))
                continue
            in_s = views.mask(view, m.slice)
            x = float((views.indicator(view, m.slice, m.signal) & in_s).sum())
            e = max(float(in_s.sum()) * float(self.bank.p_mean[m.slice, m.signal]), 1e-9)
            ranked.append((x * math.log(x / e) - (x - e) if x > e else 0.0, m))
        ranked.sort(key=lambda t: (-t[0], self.registry.infos[t[1].slice].key, t[1].signal))
        kept: list[Member] = []
        for _x, m in ranked:
            if not kept or m.signal not in RATE_SIGNALS or (
                    same_slice and any(k.slice == m.slice for k in kept)):
                kept.append(m)
                continue
            in_t = views.mask(view, m.slice)
            in_u = np.zeros(view.size, dtype=bool)
            for k in kept:
                in_u |= views.mask(view, k.slice)
            rest = in_t & ~in_u
            y = views.indicator(view, m.slice, m.signal)[rest]
            if views.still_anomalous(y, m.slice, m.signal)[0]:
                kept.append(m)
            else:
                a.set_role(m, "absorbed")
        a.slice, a.signal = kept[0].slice, kept[0].signal


def is_window(owner: str) -> bool:
    """Is this owner (from :meth:`Inhibitor.explain`) a maintenance window?"""
    return owner.startswith(WINDOW_PREFIX)


def window_key(owner: str) -> str:
    """The window key of a ``window:<key>`` owner."""
    return owner.split(":", 1)[1]


__all__ = ["Inhibitor", "is_window", "window_key"]
