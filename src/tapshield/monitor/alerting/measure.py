"""Measuring a wave: its excess failures, taps and amount over the last minute.

A level is set from what a wave costs *beyond what normal traffic gives*
(:mod:`tapshield.monitor.levels`). :meth:`WaveMeter.measure` counts, over the
last ``level_window`` of recent events, each scope member's failures beyond
the Poisson noise of its expectation (rows already counted for a stronger
concurrent wave are left to it), the traffic a silent slice is missing, the
payments and amount they stand for, and whether the primary channel is hit.
It returns the :class:`~tapshield.monitor.levels.Impact` the level tracker
reads and the figures an alert event carries.

The only alert fields it writes are the excess bookkeeping
(``excess_since``/``last_excess_us``) that :meth:`WaveMeter.excess_for` keeps.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np

from tapshield.monitor import _kernels as kn
from tapshield.monitor.alerting.views import SliceViews
from tapshield.monitor.alerting.waves import RATE_SIGNALS, Alert
from tapshield.monitor.config import MonitorConfig
from tapshield.monitor.detectors import SIGNAL_NAMES, DetectorBank
from tapshield.monitor.levels import Impact
from tapshield.monitor.recent import RecentEvents, View
from tapshield.monitor.slices import SliceRegistry
from tapshield.timeutil import from_epoch_us

NOISE_QUANTILE = 0.999
"""Level figures count only the excess beyond the 99.9th percentile of what normal
traffic gives: a level is re-evaluated every bucket, so a per-evaluation error of
0.1 % keeps noise-driven escalations to about one per 1,000 buckets of a wave."""


def noise(expected: float) -> float:
    """The count normal traffic stays below with probability ``NOISE_QUANTILE`` (Poisson)."""
    return float(kn.poisson_quantile(NOISE_QUANTILE, expected)) if expected > 0 else 0.0


class WaveMeter:
    """Measures open waves over the last ``level_window`` of recent events."""

    def __init__(self, cfg: MonitorConfig, registry: SliceRegistry, bank: DetectorBank,
                 recent: RecentEvents, views: SliceViews, *, level_us: int,
                 hold_us: int) -> None:
        self.cfg = cfg
        self.registry = registry
        self.bank = bank
        self.recent = recent
        self.views = views
        self.level_us = level_us
        self.hold_us = hold_us
        self.primary = cfg.levels.primary_channel
        self._lv: View | None = None
        self._lv_key: tuple[int, int, int] = (-1, -1, -1)
        self._primary_idx: int | None = None

    def measure(self, a: Alert, now: int, seq: int, alerts: Iterable[Alert],
                late_events: int) -> tuple[Impact, dict[str, Any]]:
        """Excess failed attempts, taps and amount of wave ``a`` over the last minute
        (``alerts``: every open wave, for contested events; in the order they opened)."""
        views = self.views
        start = max(a.started_us, now - self.level_us)
        view = self.level_view(now, seq, start)
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
        on_primary = views.mask(view, primary_idx) if (
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
                rows = views.rows(view, m.slice)
                rows = rows[~used[rows] & ~self._others(a, alerts, m.signal, view, rows)]
                fail = rows[views.indicator(view, m.slice, m.signal)[rows]]
                n = int(rows.size)
                x = int(fail.size)
                p0 = float(bank.p_mean[m.slice, m.signal])
                exp = n * p0
                # the excess beyond what normal traffic can give: noise must not set a level
                ex = max(0.0, x - noise(exp))
                one_actor, top = self.one_actor(view.dev[fail], exp)
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
                in_s = views.mask(view, m.slice)
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
            excess_for=self.excess_for(a, now, excess > 0 or missing_total > 0),
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
        figures["late_events"] = late_events
        return impact, figures

    def level_view(self, now: int, seq: int, start: int) -> View:
        """The last ``level_window`` of events from ``start``, built once per evaluation point."""
        key = (now, seq, self.recent.generation)
        if self._lv_key != key or self._lv is None:
            self._lv = self.recent.view(now - self.level_us, seq)
            self._lv_key = key
        v = self._lv
        return v.tail(int(np.searchsorted(v.ts, start, side="left")))

    def failing_beyond_noise(self, now: int, seq: int, s: int, sig: int) -> bool:
        """Is slice ``s`` failing for ``sig`` beyond noise over the last ``level_window``?"""
        recent = self.level_view(now, seq, now - self.level_us)
        rows = self.views.rows(recent, s)
        x = int(self.views.indicator(recent, s, sig)[rows].sum())
        exp = float(rows.size) * float(self.bank.p_mean[s, sig])
        return x > noise(exp)

    def _others(self, a: Alert, alerts: Iterable[Alert], sig: int, view: View,
                rows: np.ndarray) -> np.ndarray:
        """Which of the view's ``rows`` are in the scope of stronger open waves with the
        same signal (larger last share affected; the older on a tie): contested
        events are the larger wave's impact, so a notice is not levelled by a
        concurrent outage's failures."""
        out = np.zeros(rows.size, dtype=bool)
        older = True
        for b in alerts:
            if b is a:
                older = False
                continue
            stronger = b.last_share > a.last_share or (b.last_share == a.last_share and older)
            if b.state == "resolved" or not stronger:
                continue
            for m in b.scope():
                if m.signal == sig:
                    out |= self.views.mask(view, m.slice)[rows]
        return out

    def excess_for(self, a: Alert, now: int, excess: bool) -> timedelta:
        """Since when the wave has shown excess, forgiving breaks shorter than the
        resolve hold (a minute where the count dips is not the end of a wave)."""
        if excess:
            if a.excess_since is None or (a.last_excess_us is not None
                                          and now - a.last_excess_us > self.hold_us):
                a.excess_since = min(a.started_us, now) if a.last_review_us == 0 else now
            a.last_excess_us = now
        elif a.last_excess_us is None or now - a.last_excess_us > self.hold_us:
            a.excess_since = None
        if a.excess_since is None:
            return timedelta(0)
        return from_epoch_us(now) - from_epoch_us(a.excess_since)

    def one_actor(self, devs: np.ndarray, expected: float) -> tuple[bool, float]:
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
                or rest - noise(expected) <= 0.0), share

    def _primary_index(self) -> int | None:
        """The primary channel's slice (looked up until it exists, then cached)."""
        if self._primary_idx is None:
            self._primary_idx = self.registry.index_of({"channel": self.primary})
        return self._primary_idx


__all__ = ["NOISE_QUANTILE", "WaveMeter", "noise"]
