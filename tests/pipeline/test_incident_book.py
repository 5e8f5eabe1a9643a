"""The incident book: one incident per alert, diagnosed on firing, measured while streaming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from tapshield.diagnose.types import Diagnosis, DiagnosisRequest
from tapshield.events.changes import empty_changes
from tapshield.events.validate import validate_frame
from tapshield.monitor.alerts import AlertEvent
from tapshield.pipeline import EventWindow
from tapshield.respond import IncidentBook
from tests.events.helpers import rows

T0 = datetime(2026, 11, 11, 12, 0, tzinfo=UTC)


def ev(state: str, minute: float, level: int = 2, **kw: object) -> AlertEvent:
    return AlertEvent(
        alert_id="wave-1", ts=T0 + timedelta(minutes=minute), state=state,  # type: ignore[arg-type]
        level=level, started_at=T0 + timedelta(minutes=1), slice={"channel": "nfc"},
        signal="technical", notify=level <= 3, **kw,  # type: ignore[arg-type]
    )


def attempts(specs: list[tuple[float, str, str, str, str]]) -> pl.DataFrame:
    """(minute, payment_id, channel, outcome, amount) -> canonical events."""
    codes = {"approved": "00", "failed": "96", "timeout": "68", "declined": "51"}
    frame = rows(*[
        {"event_id": f"e{i}", "payment_id": p, "channel": c, "outcome": o, "amount": a,
         "response_code": codes[o], "user_id": f"u-{p}", "merchant_id": f"m-{p}",
         "ts": (T0 + timedelta(minutes=m)).isoformat()}
        for i, (m, p, c, o, a) in enumerate(specs)
    ])
    result = validate_frame(frame)
    assert result.rejects.height == 0, result.errors()
    return result.valid.sort("ts")


class Recorder:
    def __init__(self, scope: list[dict[str, str]]) -> None:
        self.scope = scope
        self.requests: list[DiagnosisRequest] = []

    def __call__(self, request: DiagnosisRequest) -> Diagnosis:
        self.requests.append(request)
        return Diagnosis(scope=self.scope, cause="interface", confidence=0.8,
                         evidence=["91/96 up"], failure="technical")


def test_incident_lifecycle_and_measured_cost() -> None:
    window = EventWindow(timedelta(hours=2))
    diag = Recorder([{"channel": "nfc"}])
    book = IncidentBook(diagnose=diag, window=window, changes=empty_changes())

    before = attempts([
        (0.5, "p0", "nfc", "approved", "5.00"), (1.5, "p1", "nfc", "failed", "10.00"),
        (1.6, "p2", "nfc", "timeout", "20.00"), (1.7, "p3", "qr", "failed", "1.00"),
    ])
    book.observe(before, T0 + timedelta(minutes=2))
    window.add(before)
    book.on_alerts([ev("firing", 2.0)])
    inc = book.incidents()[0]
    assert inc.id.startswith("INC-20261111-")
    assert inc.start == T0 + timedelta(minutes=1) and inc.detected_at == T0 + timedelta(minutes=2)
    assert inc.cause == "interface" and inc.scope == [{"channel": "nfc"}]
    req = diag.requests[0]
    assert req.baseline_start == inc.start - timedelta(minutes=30)
    assert req.events.height == 4 and req.fired_slice == {"channel": "nfc"}
    # backfilled from the window: p1 and p2 failed on nfc; p3 is out of scope
    assert (inc.failed_attempts, inc.failed_payments, inc.lost_fen) == (2, 2, 3000)

    later = attempts([(3.0, "p2", "qr", "approved", "20.00"), (4.0, "p4", "nfc", "failed", "7.00")])
    book.observe(later, T0 + timedelta(minutes=4))
    window.add(later)
    assert (inc.failed_attempts, inc.failed_payments, inc.lost_fen) == (3, 2, 1700), (
        "p2 was rescued by a failover to qr; p4 is new"
    )
    book.on_alerts([ev("escalated", 4.5, level=1)])
    assert inc.level == 1 and len(diag.requests) == 2, "escalation re-diagnoses"
    book.on_alerts([ev("resolved", 6.0, level=1, figures={"ended_at": T0 + timedelta(minutes=5)})])
    assert inc.end == T0 + timedelta(minutes=5)
    tail = attempts([(6.5, "p4", "nfc", "approved", "7.00"), (6.6, "p9", "nfc", "failed", "3.00")])
    book.observe(tail, T0 + timedelta(minutes=6.6))
    assert (inc.failed_attempts, inc.failed_payments, inc.lost_fen) == (3, 1, 1000), (
        "a retry after the fix rescues p4; failures after the end are not this incident's"
    )
    states = [h["state"] for h in inc.extra["level_history"]]
    assert states == ["firing", "escalated", "resolved"]


def test_suppressed_alerts_open_no_incident_and_resolve_without_open_is_ignored() -> None:
    book = IncidentBook(diagnose=None, window=EventWindow(timedelta(hours=1)),
                        changes=empty_changes())
    book.on_alerts([ev("suppressed", 2.0, level=3), ev("resolved", 3.0)])
    assert book.incidents() == []


def test_without_diagnosis_the_fired_slice_is_the_scope() -> None:
    book = IncidentBook(diagnose=None, window=EventWindow(timedelta(hours=1)),
                        changes=empty_changes())
    book.on_alerts([ev("firing", 2.0, level=4)])
    inc = book.incidents()[0]
    assert inc.scope == [{"channel": "nfc"}] and inc.cause == "unknown" and inc.level == 4
    assert "monitor fired on technical" in inc.evidence[0]


def test_a_wave_opened_and_resolved_inside_one_long_batch_counts_only_its_own_taps() -> None:
    """A replay chunk spans hours: the taps after the wave's end are not the wave's."""
    window = EventWindow(timedelta(hours=2))
    book = IncidentBook(diagnose=Recorder([{"channel": "nfc"}]), window=window,
                        changes=empty_changes())
    batch = attempts([
        (1.5, "p1", "nfc", "failed", "10.00"),
        (2.5, "p2", "nfc", "failed", "20.00"),
        (4.0, "p1", "qr", "approved", "10.00"),   # rescued within the tail
        (30.0, "p2", "qr", "approved", "20.00"),  # too late to call it a rescue
        (50.0, "p3", "nfc", "failed", "7.00"),    # long after the wave
    ])
    book.observe(batch, T0 + timedelta(minutes=50))
    window.add(batch)
    ended = {"ended_at": T0 + timedelta(minutes=3)}
    book.on_alerts([ev("firing", 2.0), ev("resolved", 3.0, figures=ended)])
    inc = book.incidents()[0]
    assert inc.end == T0 + timedelta(minutes=3)
    assert (inc.failed_attempts, inc.failed_payments, inc.lost_fen) == (2, 1, 2000)
