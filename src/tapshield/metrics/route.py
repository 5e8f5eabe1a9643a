"""Prometheus view of a router (an edge adapter): what on-call sees on the dashboard.

:class:`RouterCollector` is a custom collector (nothing is updated on the
decision path; values are read when Prometheus scrapes):

* ``tapshield_route_key_eliminated{channel,region}`` 1 while a key is out;
* ``tapshield_route_key_score{channel,region}`` estimated success probability;
* ``tapshield_route_key_cusum{channel,region}`` elimination statistic and
  ``tapshield_route_key_cusum_threshold`` its threshold, so a panel shows how
  close a channel is to elimination;
* ``tapshield_route_eliminations_total``, ``..._readmissions_total``,
  ``..._probes_total`` counters.

``region`` is empty for a channel's all-regions key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from tapshield.route.router import Router


class RouterCollector:
    """Register with ``prometheus_client.REGISTRY.register(RouterCollector(router))``."""

    def __init__(self, router: Router, clock: Callable[[], float] = time.time) -> None:
        self.router = router
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        now = self.clock()
        labels = ["channel", "region"]
        out = GaugeMetricFamily("tapshield_route_key_eliminated",
                                "1 while the key is eliminated from routing", labels=labels)
        score = GaugeMetricFamily("tapshield_route_key_score",
                                  "Estimated success probability of the key", labels=labels)
        cusum = GaugeMetricFamily("tapshield_route_key_cusum",
                                  "Elimination CUSUM statistic of the key", labels=labels)
        thr = GaugeMetricFamily("tapshield_route_key_cusum_threshold",
                                "CUSUM value at which the key is eliminated", labels=labels)
        for row in self.router.snapshot(now):
            lv = [str(row["channel"]), str(row["region"] or "")]
            out.add_metric(lv, 1.0 if row["eliminated"] else 0.0)
            score.add_metric(lv, float(row["score"]))
            cusum.add_metric(lv, float(row["cusum"]))
            thr.add_metric(lv, float(row["threshold"]))
        yield from (out, score, cusum, thr)
        r = self.router
        yield CounterMetricFamily("tapshield_route_eliminations",
                                  "Keys eliminated since start", value=r.eliminations)
        yield CounterMetricFamily("tapshield_route_readmissions",
                                  "Keys readmitted by probes since start", value=r.readmissions)
        yield CounterMetricFamily("tapshield_route_probes", "Probes requested since start",
                                  value=r.probes_sent)
