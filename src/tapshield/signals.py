"""The monitor's signals, named once: what broke away from normal.

An alert (:class:`tapshield.monitor.alerts.AlertEvent`) carries one of these;
silences in the monitoring config may name one; incidents map each to the
failures they count (:mod:`tapshield.respond.incidents`) and diagnosis to the
signature it localises (:mod:`tapshield.diagnose.diagnosis`). Tests check that
every such map covers exactly :data:`SIGNALS`.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Signal = Literal["technical", "decline", "risk_decline", "latency", "traffic_drop"]
"""Technical failures (failed / timeout / a technical code, see
:func:`tapshield.events.codes.is_technical`), business declines, risk declines
(59 / risk_decision=decline), latency, or traffic volume (a dead channel shows
as silence)."""

SIGNALS: Final[tuple[Signal, ...]] = get_args(Signal)
