"""``/metrics``: the service's own figures next to the router's and the process's.

Names follow Prometheus' conventions (``promtool check metrics`` passes, a
test runs it): base units in the name (``_seconds``, ``_bytes``), counters end
in ``_total``, every family has help text. Labels stay low-cardinality: the
route *template* (``/v1/attempts/{attempt_id}/result``), never a raw path, and
no customer, payment or key identifiers.

With several workers (``workers > 1``) prometheus_client's multiprocess mode
sums the counters and histograms of all workers; the router's and the
Redis share's gauges are read from the worker that answers the scrape (their
state is shared through Redis, so the workers agree up to one sync interval).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from tapshield import __version__

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServiceMetrics:
    """The service's metric objects (one set per worker process)."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        # In multiprocess mode values live in files shared by the workers and are
        # collected by MultiProcessCollector, so the objects are not registered.
        self.own: CollectorRegistry | None = None if self.multiprocess else CollectorRegistry()
        reg = self.own
        self.requests = Counter("tapshield_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=reg)
        self.duration = Histogram("tapshield_http_request_duration_seconds",
                                  "Time from the request's arrival to the end of its answer",
                                  ["method", "route"], buckets=_LATENCY_BUCKETS, registry=reg)
        gauge_kw: dict[str, Any] = {"multiprocess_mode": "livesum"} if self.multiprocess else {}
        self.in_flight = Gauge("tapshield_http_requests_in_flight",
                               "Requests being handled now", registry=reg, **gauge_kw)
        self.decisions = Counter("tapshield_authorize_decisions",
                                 "New authorize answers by decision and routed channel "
                                 "(channel 'none': use another method)",
                                 ["decision", "channel"], registry=reg)
        self.replays = Counter("tapshield_authorize_replays",
                               "Authorize requests answered from the tap book (same attempt_id)",
                               registry=reg)
        self.conflicts = Counter("tapshield_authorize_conflicts",
                                 "Requests refused because the tap's state forbids them",
                                 ["code"], registry=reg)
        self.results = Counter("tapshield_attempt_results",
                               "Attempt outcomes reported by the gateway",
                               ["channel", "outcome"], registry=reg)
        self.rate_limited = Counter("tapshield_rate_limited_requests",
                                    "Requests refused with 429 by the per-key rate limit",
                                    ["role"], registry=reg)
        self.rejected_bodies = Counter("tapshield_http_request_body_rejected",
                                       "Requests refused with 413 (body over the limit)",
                                       registry=reg)
        self.batch_size = Histogram("tapshield_tapbook_batch_operations",
                                    "Operations handled per tap-book transaction (group commit)",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                                    registry=reg)
        self.batch_duration = Histogram("tapshield_tapbook_batch_duration_seconds",
                                        "Time of one tap-book transaction",
                                        buckets=_LATENCY_BUCKETS, registry=reg)
        self.checkpoints = Counter("tapshield_checkpoints",
                                   "Router health checkpoints written", ["outcome"],
                                   registry=reg)

        # Known label values start at 0, so rates and alerts see them before the
        # first event (an absent series is not a zero).
        from tapshield.service.config import ROLES

        for role in ROLES:
            self.rate_limited.labels(role)
        for code in ("attempt_pending", "attempt_unresolved", "tap_closed", "attempt_id_reused",
                     "not_routed", "no_inquiry_pending"):
            self.conflicts.labels(code)
        for outcome in ("ok", "error"):
            self.checkpoints.labels(outcome)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_duration.observe(seconds)


class ServiceCollector:
    """Read at scrape time: readiness, checkpoint age, Redis share, build info."""

    def __init__(self, runtime: Any, clock: Callable[[], float] = time.time) -> None:
        self.runtime = runtime
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        rt = self.runtime
        info = GaugeMetricFamily("tapshield_build_info", "Version of the running tapshield",
                                 labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info
        yield GaugeMetricFamily("tapshield_ready", "1 while the worker accepts traffic",
                                value=1.0 if rt.ready and not rt.draining else 0.0)
        yield GaugeMetricFamily("tapshield_start_time_seconds",
                                "When this worker started (Unix time)", value=rt.started_at)
        last = rt.last_checkpoint
        yield GaugeMetricFamily("tapshield_checkpoint_last_success_timestamp_seconds",
                                "When router health was last checkpointed (Unix time; 0: never)",
                                value=last or 0.0)
        share = rt.share
        yield GaugeMetricFamily("tapshield_route_share_configured",
                                "1 when router health is shared through Redis",
                                value=1.0 if share is not None else 0.0)
        if share is not None:
            st = share.stats
            yield GaugeMetricFamily("tapshield_route_share_up",
                                    "1 when the last contact with Redis succeeded",
                                    value=1.0 if st.healthy else 0.0)
            yield GaugeMetricFamily("tapshield_route_share_pending_observations",
                                    "Observations waiting for Redis", value=share.pending)
            for name, help_, v in (
                    ("sent", "Observations written to Redis", st.sent),
                    ("received", "Peers' observations applied", st.received),
                    ("errors", "Failed contacts with Redis", st.errors),
                    ("dropped", "Observations lost while Redis was down (buffer full)",
                     st.dropped)):
                yield CounterMetricFamily(f"tapshield_route_share_{name}_observations"
                                          if name != "errors" else "tapshield_route_share_errors",
                                          help_, value=v)


def build_registry(runtime: Any, router_collector: Any) -> CollectorRegistry:
    """The registry ``/metrics`` exposes for this worker."""
    reg = CollectorRegistry()
    mp = multiprocess_dir()
    if mp is not None:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(reg, path=mp)  # type: ignore[no-untyped-call]
    else:
        own = runtime.metrics.own
        assert own is not None
        reg.register(_Forward(own))
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    reg.register(router_collector)
    reg.register(ServiceCollector(runtime))
    return reg


class _Forward:
    """Expose another registry's metrics through this one."""

    def __init__(self, inner: CollectorRegistry) -> None:
        self.inner = inner

    def collect(self) -> Iterator[Any]:
        yield from self.inner.collect()


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
