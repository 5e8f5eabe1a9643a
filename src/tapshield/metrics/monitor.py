"""Prometheus exposition of the monitor's state (an edge adapter: ``/metrics`` in live mode).

A custom collector reads the monitor's counters at scrape time instead of
updating ``prometheus_client`` metrics per event: the hot path stays
vectorised, and a scrape costs one pass over the watched slices. Per-slice
series are exported for the single dimensions in ``dims`` (not merchants:
thousands of label values would overwhelm a Prometheus server), as
``dimension``/``value`` labels, plus ``dimension="all"`` for the whole flow::

    sum by (value) (rate(tapshield_outcomes_total{dimension="channel",outcome="technical"}[1m]))
      / sum by (value) (rate(tapshield_attempts_total{dimension="channel"}[1m]))
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from tapshield.levels import LEVEL_NAMES
from tapshield.monitor import _kernels as kn
from tapshield.monitor.detectors import SIGNAL_NAMES
from tapshield.monitor.sketch import EDGES, prometheus_bounds

if TYPE_CHECKING:
    from tapshield.monitor.monitor import Monitor
    from tapshield.notify.base import Notifier

DEFAULT_DIMS = ("channel", "region", "carrier", "os", "app_version", "server_version",
                "device_model", "merchant_category")
_OUTCOMES = (("approved", kn.F_APPROVED), ("technical", kn.F_TECHNICAL),
             ("decline", kn.F_DECLINE), ("risk_decline", kn.F_RISK))


class MonitorCollector(Collector):
    def __init__(self, monitor: Monitor, *, dims: Sequence[str] = DEFAULT_DIMS,
                 lock: threading.Lock | None = None,
                 notifiers: Sequence[Notifier] = ()) -> None:
        self.monitor = monitor
        self.dims = tuple(dims)
        self.lock = lock
        self.notifiers = tuple(notifiers)

    def _slices(self) -> list[tuple[int, str, str]]:
        out = [(0, "all", "all")]
        for info in self.monitor.registry.infos[1:]:
            if len(info.dims) == 1 and info.dims[0] in self.dims:
                out.append((info.index, info.dims[0], info.values[0]))
        return out

    def collect(self) -> Iterator[Any]:
        with self.lock if self.lock is not None else nullcontext():
            yield from self._collect()

    def _collect(self) -> Iterator[Any]:
        m = self.monitor
        bank = m.bank.snapshot()  # read-only views: metrics never write detector state
        slices = self._slices()
        idx = np.array([s for s, _, _ in slices], dtype=np.int64)
        totals = bank.cum[idx] + bank.acc[idx]
        labels = ["dimension", "value"]

        events = CounterMetricFamily("tapshield_events", "Events processed by the monitor.")
        events.add_metric([], float(m.events))
        yield events
        late = CounterMetricFamily(
            "tapshield_late_events",
            "Events that arrived after their time bucket closed (counted into the open one).")
        late.add_metric([], float(m.late_events))
        yield late

        attempts = CounterMetricFamily(
            "tapshield_attempts",
            "Payment attempts (a slice counts from its min_slice_events-th event on).",
            labels=labels)
        outcomes = CounterMetricFamily("tapshield_outcomes", "Payment attempts by outcome kind.",
                                       labels=[*labels, "outcome"])
        slow = CounterMetricFamily("tapshield_slow_payments",
                                   "Answers slower than twice the slice's recent p95.",
                                   labels=labels)
        failed_fen = CounterMetricFamily("tapshield_technical_failed_amount_fen",
                                         "Amount of technically failed attempts, fen.",
                                         labels=labels)
        for (_s, dim, val), row in zip(slices, totals, strict=True):
            attempts.add_metric([dim, val], float(row[kn.F_ATTEMPTS]))
            for name, f in _OUTCOMES:
                outcomes.add_metric([dim, val, name], float(row[f]))
            slow.add_metric([dim, val], float(row[kn.F_SLOW]))
            failed_fen.add_metric([dim, val], float(row[kn.F_TECH_FEN]))
        yield attempts
        yield outcomes
        yield slow
        yield failed_fen

        # Prometheus' base unit is the second (promtool refuses a family named in
        # ms); the sketch's bins are in ms, so bounds and sum are divided by 1,000
        hist = HistogramMetricFamily("tapshield_latency_seconds", "Payment latency (seconds).",
                                     labels=labels)
        bounds = prometheus_bounds()
        for s, dim, val in slices:
            lat = bank.lat_total[s] + bank.hist[s]
            cum = np.cumsum(lat)
            buckets = [(repr(le / 1000.0), float(cum[b - 1])) for le, b in bounds]
            total = float(cum[-1])
            buckets.append(("+Inf", total))
            mids = np.sqrt(EDGES[:-1] * EDGES[1:])
            hist.add_metric([dim, val], buckets, float((lat * mids).sum()) / 1000.0)
        yield hist

        expected = GaugeMetricFamily("tapshield_expected_rate",
                                     "Expected rate of each failure signal (the baseline).",
                                     labels=[*labels, "signal"])
        stat = GaugeMetricFamily(
            "tapshield_detector_statistic",
            "CUSUM statistic / its threshold (>= 1 fires); 0 while a test is not armed.",
            labels=[*labels, "signal"])
        h = bank.h_rate if np.isfinite(bank.h_rate) else np.inf
        for s, dim, val in slices:
            for sig in range(kn.N_RATE):
                expected.add_metric([dim, val, SIGNAL_NAMES[sig]], float(bank.p_mean[s, sig]))
                w = float(bank.rw[s, sig].max())
                stat.add_metric([dim, val, SIGNAL_NAMES[sig]],
                                w / h if np.isfinite(h) and h > 0 else 0.0)
        yield expected
        yield stat

        open_alerts = GaugeMetricFamily("tapshield_open_alerts", "Open failure waves.",
                                        labels=["level", "signal", "state"])
        per: dict[tuple[str, str, str], int] = {}
        for a in m.open_alerts():
            key: tuple[str, str, str] = (LEVEL_NAMES[a.tracker.level], SIGNAL_NAMES[a.signal],
                                         str(a.state))
            per[key] = per.get(key, 0) + 1
        for key, count in sorted(per.items()):
            open_alerts.add_metric(list(key), float(count))
        yield open_alerts

        changes = CounterMetricFamily("tapshield_alert_changes", "Alert state changes.",
                                      labels=["state"])
        for state, count in sorted(m.lifecycle.changes.items()):
            changes.add_metric([state], float(count))
        yield changes

        watched = GaugeMetricFamily("tapshield_watched_slices", "Slices with detectors.")
        watched.add_metric([], float(len(m.registry)))
        yield watched
        if m.max_ts is not None:
            wm = GaugeMetricFamily("tapshield_event_time_seconds",
                                   "Event time reached by the monitor (Unix seconds).")
            wm.add_metric([], m.max_ts / 1e6)
            yield wm

        if self.notifiers:
            sent = CounterMetricFamily("tapshield_notifications",
                                       "Notifier requests by result.",
                                       labels=["notifier", "result"])
            for notifier in self.notifiers:
                st = notifier.stats
                for result, value in (("sent", st.sent), ("failed", st.failed),
                                      ("retried", st.retried), ("dropped", st.dropped)):
                    sent.add_metric([notifier.name, result], float(value))
            yield sent
