"""An alert's state change as the :class:`~tapshield.monitor.alerts.AlertEvent` handed on.

The event is built from a snapshot of the alert (its figures are copied), so
nothing that happens to the alert later changes an event already emitted.
"""

from __future__ import annotations

from typing import Any

from tapshield.levels import LEVEL_NAMES
from tapshield.monitor.alerting.waves import Alert
from tapshield.monitor.alerts import AlertEvent, AlertState
from tapshield.monitor.detectors import SIGNAL_NAMES
from tapshield.monitor.slices import SliceInfo, slice_key
from tapshield.signals import Signal
from tapshield.timeutil import from_epoch_us


def alert_event(a: Alert, info: SliceInfo, now: int, state: AlertState, notify: bool,
                extra: dict[str, Any] | None = None) -> AlertEvent:
    """The event of alert ``a`` changing to ``state`` at ``now`` (``info``: its slice;
    ``extra``: figures known only at this change, e.g. ``ended_at``)."""
    level = a.tracker.level
    sig_name: Signal = SIGNAL_NAMES[a.signal]
    figures = dict(a.figures)
    figures["level_name"] = LEVEL_NAMES[level]
    if a.tracker.reasons:
        figures["level_reasons"] = list(a.tracker.reasons)
    if a.suppressed_by:
        figures["suppressed_by"] = a.suppressed_by
    flaps = a.flaps()
    if flaps:
        figures["flaps"] = flaps
    if extra:
        figures.update(extra)
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
        "description": describe(figures),
    }
    return AlertEvent(
        alert_id=a.alert_id,
        ts=from_epoch_us(now),
        state=state,
        level=level,
        started_at=from_epoch_us(a.started_us),
        slice=info.as_dict,
        signal=sig_name,
        notify=notify,
        figures=figures,
        labels=labels,
        annotations=annotations,
    )


def describe(f: dict[str, Any]) -> str:
    """One line a person reads first: the share failing, taps and money per minute."""
    parts = [f"{f.get('share_affected', 0) * 100:.2f}% of national attempts failing in excess",
             f"{f.get('failed_payments_per_min', 0):.1f} failed taps/min",
             f"{f.get('lost_amount_per_min', '0.00')} yuan/min"]
    for m in f.get("members", [])[:3]:
        if m.get("rate") is not None:
            parts.append(f"{m['signal']} {m['rate'] * 100:.2f}% vs expected "
                         f"{m['expected_rate'] * 100:.2f}% in "
                         + (slice_key(m["slice"]) if m["slice"] else "all"))
    return "; ".join(parts)


__all__ = ["alert_event", "describe"]
