"""The Prometheus exposition of the monitor."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tapshield.metrics.monitor import MonitorCollector
from tapshield.monitor import Monitor
from tests.monitor.synth import Fault, events


def test_metrics_exposition_matches_the_stream() -> None:
    fault = Fault(700, 1200, {"channel": "qr"}, "technical", 0.8)
    frame = events(1200, rate=20, faults=(fault,), seed=21)
    m = Monitor()
    m.process(frame)
    reg = CollectorRegistry()
    reg.register(MonitorCollector(m))
    text = generate_latest(reg).decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def sample(name: str, **labels: str) -> float:
        for s in samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
        raise AssertionError(f"no {name} {labels}")

    assert sample("tapshield_events_total") == frame.height

    assert sample("tapshield_attempts_total", dimension="all", value="all") == frame.height
    # a slice is watched (and counted) from its 30th event on
    qr = frame.filter(frame["channel"] == "qr").slice(29)
    assert sample("tapshield_attempts_total", dimension="channel", value="qr") == qr.height
    failed = qr.filter(qr["outcome"].cast(str).is_in(["failed", "timeout"])).height
    assert sample("tapshield_outcomes_total", dimension="channel", value="qr",
                  outcome="technical") == failed
    count = sample("tapshield_latency_seconds_count", dimension="all", value="all")
    assert count == frame["latency_ms"].drop_nulls().len()
    assert sample("tapshield_latency_seconds_bucket", dimension="all", value="all",
                  le="+Inf") == count
    assert sum(s.value for s in samples if s.name == "tapshield_open_alerts") >= 1
    assert sample("tapshield_alert_changes_total", state="firing") >= 1
    # merchants are not exported: thousands of label values
    assert 'dimension="merchant_id"' not in text
