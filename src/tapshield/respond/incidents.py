"""From alert lifecycle to incidents, with their cost measured while events stream.

The monitor decides *that* something is wrong and how badly (level); this
module keeps the incident record an on-call engineer works from: when it
started (the change point, not the page), when it was detected, its scope and
cause (from diagnosis), and what it cost so far: failed attempts, taps that
never succeeded, customers and merchants affected, amount lost.

Costs are measured incrementally (:class:`TapLedger`) because an incident can
outlast any in-memory window of events: each micro-batch adds the attempts in
scope that carry the incident's failure signature, and any later approval of
the same tap (a retry, a failover to another channel) rescues it. After the
incident ends the ledger keeps watching for a short tail, because customers
retry after the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import polars as pl

from tapshield.diagnose.types import Diagnosis, DiagnosisRequest
from tapshield.events.codes import business_decline_expr, risk_decline_expr, technical_expr
from tapshield.incident import Incident, scope_expr
from tapshield.monitor.alerts import AlertEvent
from tapshield.respond.digest import (
    AttackSizeBaseline,
    DigestPolicy,
    HourlyDigest,
    Wave,
    expected_rate_of,
)
from tapshield.signals import Signal
from tapshield.timeutil import DEFAULT_TZ, zone

Diagnoser = Callable[[DiagnosisRequest], Diagnosis]


class RecentEvents(Protocol):
    """The retained recent events (the pipeline's window)."""

    def since(self, start: datetime, until: datetime | None = None) -> pl.DataFrame:
        """Retained canonical events with ``start <= ts`` (``<= until``), time-ordered."""

    def holds_since(self, start: datetime) -> bool:
        """Are all events with ``ts >= start`` seen so far still retained?"""

FAILURE_EXPRS: dict[str, Callable[[], pl.Expr]] = {
    "technical": technical_expr,
    "decline": business_decline_expr,
    "risk_decline": risk_decline_expr,
}

_SIGNAL_FAILURE: dict[Signal, str] = {
    "technical": "technical",
    "latency": "technical",
    "traffic_drop": "technical",
    "decline": "decline",
    "risk_decline": "risk_decline",
}


@dataclass(frozen=True, slots=True)
class IncidentPolicy:
    """How incidents are kept. Defaults with their reasons."""

    baseline: timedelta = timedelta(minutes=30)
    """Normal past handed to diagnosis before the wave's start: long enough for
    thousands of attempts per slice at normal rates, short enough to stay in
    the same hour-of-day regime."""
    rescue_tail: timedelta = timedelta(minutes=5)
    """After an incident ends, approvals of its failed taps still rescue them:
    customers retry within minutes of a fix (the simulator's retry model and
    field data put nearly all retries within 2 minutes)."""
    open_suppressed: bool = False
    """Alerts suppressed by a maintenance window or silence do not open incidents."""
    id_prefix: str = "INC"
    """Incident ids are ``<prefix>-<day>-<n>``; the live service uses its own prefix so its
    incidents never collide with those of analysis runs in the same database."""
    digest: DigestPolicy = field(default_factory=DigestPolicy)
    """Blocked fraud (level-4 risk-decline waves) goes to the hourly digest and opens
    an incident only when it pages or is unusual for its baseline (respond/digest.py)."""


class TapLedger:
    """Failed taps of one incident, rescued by any later approval of the same tap.

    The taps are kept in a plain dict (payment id -> amount, user, merchant,
    rescued), in the order they first failed: an incident holds tens to a few
    thousand taps, and its figures are read after every batch and every alert,
    so a Python dict answers in microseconds where a frame of the same rows
    took several Polars calls (filter, unique, n_unique twice, sum) each time.
    Each :meth:`observe` asks Polars only two questions of the batch: which
    attempts hit the incident, and which of its taps were approved.
    ``tests/respond/test_tap_ledger.py`` checks it against the frame-based
    ledger it replaced on random batches.
    """

    def __init__(self, scope: list[dict[str, str]], failure: str) -> None:
        self.scope = scope
        self.failure = failure
        self.failed_attempts = 0
        self._taps: dict[str, list[Any]] = {}
        """payment_id -> [amount_fen, user_id, merchant_id, rescued], first failure first."""

    def observe(self, batch: pl.DataFrame, *, start: datetime, end: datetime | None,
                rescue_until: datetime | None = None) -> None:
        """Add a batch: failing attempts in scope and ``[start, end]``, then rescues
        by approvals up to ``rescue_until`` (``None``: any approval in the batch)."""
        if batch.height == 0:
            return
        window = pl.col("ts") >= start
        if end is not None:
            window = window & (pl.col("ts") <= end)
        hit = batch.filter(
            window & scope_expr(self.scope) & FAILURE_EXPRS[self.failure]().fill_null(False)
        ).select("payment_id", "amount_fen", "user_id", "merchant_id")
        taps = self._taps
        if hit.height:
            self.failed_attempts += hit.height
            for pid, amount, user, merchant in hit.iter_rows():
                if pid not in taps:
                    taps[pid] = [amount, user, merchant, False]
        open_ids = [pid for pid, t in taps.items() if not t[3] and pid is not None]
        if open_ids:
            ok = pl.col("outcome") == "approved"
            if rescue_until is not None:
                ok = ok & (pl.col("ts") <= rescue_until)
            approved = batch.filter(ok & pl.col("payment_id").is_in(open_ids))["payment_id"]
            for pid in approved.to_list():
                taps[pid][3] = True

    def figures(self) -> dict[str, int]:
        lost = [t for t in self._taps.values() if not t[3]]
        return {
            "failed_attempts": self.failed_attempts,
            "failed_payments": len(lost),
            "affected_users": len({t[1] for t in lost}),
            "affected_merchants": len({t[2] for t in lost}),
            "lost_fen": sum(t[0] for t in lost if t[0] is not None),
        }


@dataclass(slots=True)
class _Open:
    incident: Incident
    ledger: TapLedger
    diagnosed_at: datetime
    closed_at: datetime | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class IncidentBook:
    """One incident per alert; diagnosed on firing, re-diagnosed on escalation."""

    def __init__(
        self,
        *,
        diagnose: Diagnoser | None,
        window: RecentEvents,
        changes: pl.DataFrame,
        policy: IncidentPolicy | None = None,
        tz: str | None = None,
    ) -> None:
        self._diagnose = diagnose
        self._window = window
        self._changes = changes
        self.policy = policy or IncidentPolicy()
        self._tz = zone(tz)
        self._by_alert: dict[str, _Open] = {}
        self._incident_of: dict[str, str] = {}
        """Alert id -> incident id (alert events stay as the monitor emitted them)."""
        self._order: list[str] = []
        self._seq: dict[str, int] = {}
        self.changed: set[str] = set()
        """Incident ids changed since the caller last cleared it (for upserts)."""
        self._batch: pl.DataFrame | None = None
        self._until: dict[str, datetime] = {}
        self._pending: dict[str, Wave] = {}
        """Risk-decline notices held in the digest, by alert id, while they last."""
        self.waves: list[Wave] = []
        """Every risk-decline notice the digest held (promoted ones too), in firing order."""
        self.baseline = AttackSizeBaseline(self.policy.digest)
        self.hourly = HourlyDigest(self.policy.digest, tz or DEFAULT_TZ)

    # -- alert lifecycle ------------------------------------------------------

    def on_alerts(self, events: Sequence[AlertEvent]) -> list[AlertEvent]:
        """Place alert changes in incidents; returns them as handed on, each a new
        event carrying its incident id (the events given are not changed)."""
        out: list[AlertEvent] = []
        # A replay batch runs far past its alert changes: a wave counts events only
        # up to its resolution (known from this batch's changes), whatever the batch.
        self._until = {ev.alert_id: ev.ts for ev in events if ev.state == "resolved"}
        if self._batch is not None:
            self._count_pending(self._batch)
            self._batch = None
        for ev in events:
            if not self._digest(ev):
                self._on_alert(ev)
            out.append(ev.with_incident(self._incident_of.get(ev.alert_id)))
        self._promote_crossed()
        return out

    # -- blocked-fraud digest -------------------------------------------------

    def _digest(self, ev: AlertEvent) -> bool:
        """Hold a level-4 risk-decline wave in the digest; ``True`` if ``ev`` was taken."""
        wave = self._pending.get(ev.alert_id)
        if wave is None:
            if (not self.policy.digest.enabled or ev.alert_id in self._by_alert
                    or ev.state != "firing" or ev.signal != "risk_decline" or ev.level < 4):
                return False
            rate = expected_rate_of(ev)
            episodes = self._breadth(ev, rate)
            wave = Wave(first=ev, expected_rate=rate, span=self.policy.digest.span,
                        episodes=episodes,
                        threshold=self.baseline.threshold(ev.ts, episodes))
            wave.beside = next(iter(self._open_risk_incidents()), None)
            self._pending[ev.alert_id] = wave
            self.waves.append(wave)
            wave.events.append(ev)
            # the window already holds this batch: count the wave so far from it
            crossed = wave.count(self._window.since(ev.started_at, until=self._until.get(
                ev.alert_id)), self._exclusions())
            if crossed is not None:
                self._promote(wave, "attack_size", max(crossed, ev.ts))
            return True
        if ev.state in ("firing", "escalated") and ev.level <= 3:
            # the monitor pages for it: a person must look, the incident opens now
            self._promote(wave, "page", ev.ts)
            return False
        if ev.state == "resolved" and self._confirm(wave):
            return False  # it crossed before it ended: an incident, which now resolves
        wave.events.append(ev)
        if ev.state == "resolved":
            ended = ev.figures.get("ended_at")
            wave.end = ended if isinstance(ended, datetime) else ev.ts
            del self._pending[ev.alert_id]
            wave.settle()
            if self.baseline.ready:
                wave.p_value = self.baseline.model.sf(wave.excess_max)
            if wave.beside is None:
                self.baseline.add(wave.excess_max, wave.first.started_at)
        return True

    def _breadth(self, ev: AlertEvent, rate: float) -> float:
        """The fired slice's ordinary episodes at once, from its expected blocked
        attempts over one ``span`` just before the wave began (its attempts then times
        the expected rate; before the start, so an attack's own attempts do not
        widen its slice)."""
        if not self.baseline.ready:
            return 0.0
        span = self.policy.digest.span
        before = self._window.since(ev.started_at - span, until=ev.started_at)
        if before.height == 0:
            return 0.0
        n = before.filter(scope_expr([dict(ev.slice)]) & (pl.col("ts") < ev.started_at)).height
        return self.baseline.episodes_at_once(rate * n)

    def _open_risk_incidents(self) -> list[str]:
        return [e.incident.id for e in self._by_alert.values()
                if e.closed_at is None and e.incident.extra.get("signal") == "risk_decline"]

    def _exclusions(self) -> list[dict[str, str]]:
        """Scopes of open risk-decline incidents: their attempts are theirs, not a wave's."""
        out: list[dict[str, str]] = []
        for entry in self._by_alert.values():
            inc = entry.incident
            if entry.closed_at is None and inc.extra.get("signal") == "risk_decline":
                out.extend(dict(c) for c in inc.scope if c)
        return out

    def _count_pending(self, batch: pl.DataFrame) -> None:
        if not self._pending:
            return
        exclude = self._exclusions()
        for wave in self._pending.values():
            until = self._until.get(wave.alert_id)
            part = batch if until is None else batch.filter(pl.col("ts") <= until)
            crossed = wave.count(part, exclude)
            if crossed is not None and wave.opened_at is None:
                wave.opened_at = crossed  # a candidate: confirmed in _promote_crossed

    def _promote_crossed(self) -> None:
        for wave in list(self._pending.values()):
            self._confirm(wave)

    def _confirm(self, wave: Wave) -> bool:
        """A wave whose size crossed: recount it exactly and open its incident if it
        still crosses (incidents opened since may explain part of it)."""
        if wave.opened_at is None or wave.incident_id is not None:
            return False
        at: datetime | None = wave.opened_at
        start = wave.first.started_at
        if self._window.holds_since(start):
            wave.reset()
            at = wave.count(self._window.since(start, until=self._until.get(wave.alert_id)),
                            self._exclusions())
        if at is None:
            wave.opened_at = None
            return False
        self._promote(wave, "attack_size", max(at, wave.first.ts))
        return True

    def _promote(self, wave: Wave, by: str, at: datetime) -> None:
        """Open the incident of a digest wave: detected when the wave was first raised."""
        self._pending.pop(wave.alert_id, None)
        wave.settle()
        wave.opened_by, wave.opened_at = by, at
        if self.baseline.ready:
            wave.p_value = self.baseline.model.sf(wave.excess_max)
        first = wave.first
        entry = self._open(first, now=at, level=wave.level)
        entry.history.extend({"ts": e.ts, "state": e.state, "level": e.level}
                             for e in wave.events)
        wave.incident_id = entry.incident.id
        for other in self._pending.values():
            if other.beside is None:
                other.beside = entry.incident.id
        entry.incident.extra["digest"] = {
            "opened_by": by,
            "opened_at": at.astimezone(self._tz).isoformat(timespec="milliseconds"),
            "excess_blocked": round(wave.excess_max, 1),
            "threshold": wave.threshold,
            "p_value": None if wave.p_value is None else float(f"{wave.p_value:.4g}"),
        }
        self._history_extra(entry)
        self.changed.add(entry.incident.id)

    def digest_rows(self) -> list[dict[str, Any]]:
        """The hourly blocked-fraud digest (``fraud_digest.json``)."""
        return self.hourly.rows(self.waves)

    def digest_summary(self) -> dict[str, Any]:
        rows = self.digest_rows()
        fen = self.hourly.blocked_fen()
        now = max((w.first.ts for w in self.waves), default=None)
        out: dict[str, Any] = {
            "hours": len(rows),
            "blocked_attempts": sum(int(r["blocked_attempts"]) for r in rows),
            "blocked_fen": fen,
            "waves": len(self.waves),
            "waves_to_incidents": sum(1 for w in self.waves if w.incident_id is not None),
        }
        if now is not None and self.baseline.sizes:
            out["baseline"] = self.baseline.describe(now)
        return out

    def incident_of(self, alert_id: str) -> str | None:
        """The incident an alert's changes belong to (``None``: it opened none)."""
        return self._incident_of.get(alert_id)

    def _history_extra(self, entry: _Open) -> None:
        entry.incident.extra["level_history"] = [
            {"ts": h["ts"].astimezone(self._tz).isoformat(timespec="milliseconds"),
             "state": h["state"], "level": h["level"]}
            for h in entry.history
        ]

    def _on_alert(self, ev: AlertEvent) -> None:
        entry = self._by_alert.get(ev.alert_id)
        if entry is None:
            if ev.state == "resolved":
                return
            if ev.state == "suppressed" and not self.policy.open_suppressed:
                return
            entry = self._open(ev)
        inc = entry.incident
        entry.history.append({"ts": ev.ts, "state": ev.state, "level": ev.level})
        if ev.state in ("firing", "escalated", "deescalated", "reminder"):
            if ev.level < inc.level:
                inc.level = ev.level
                if ev.state == "escalated":
                    self._rediagnose(entry, ev)
            if entry.closed_at is not None and ev.state == "firing":
                # The same wave came back before the tail ended: reopen.
                inc.end = None
                entry.closed_at = None
        elif ev.state == "resolved":
            ended = ev.figures.get("ended_at")
            inc.end = ended if isinstance(ended, datetime) else ev.ts
            entry.closed_at = ev.ts
            # The batch this came in may run past the end (a replay chunk spans
            # hours): what was counted from it while the incident was open did
            # not know the end yet. Count again, now bounded.
            self._remeasure(entry, entry.ledger.failure)
            self._refresh(entry)
        self._history_extra(entry)
        self.changed.add(inc.id)

    def _open(self, ev: AlertEvent, *, now: datetime | None = None,
              level: int | None = None) -> _Open:
        day = ev.started_at.astimezone(self._tz).strftime("%Y%m%d")
        self._seq[day] = self._seq.get(day, 0) + 1
        inc = Incident(
            id=f"{self.policy.id_prefix}-{day}-{self._seq[day]:04d}",
            start=ev.started_at,
            detected_at=ev.ts,
            level=ev.level if level is None else level,
            scope=[dict(ev.slice)] if ev.slice else [],
            cause="unknown",
            confidence=0.0,
            evidence=[],
        )
        inc.extra["alert_id"] = ev.alert_id
        inc.extra["signal"] = ev.signal
        inc.extra["fired_slice"] = dict(ev.slice)
        failure = _SIGNAL_FAILURE.get(ev.signal, "technical")
        entry = _Open(inc, TapLedger(inc.scope, failure), diagnosed_at=ev.ts)
        self._by_alert[ev.alert_id] = entry
        self._incident_of[ev.alert_id] = inc.id
        self._order.append(ev.alert_id)
        self._diagnose_into(entry, ev, now)
        return entry

    def _diagnose_into(self, entry: _Open, ev: AlertEvent, now: datetime | None = None) -> None:
        """Diagnose as of ``now`` (default: the alert change's time)."""
        at = ev.ts if now is None else now
        inc = entry.incident
        diagnosis: Diagnosis | None = None
        failure: str
        if self._diagnose is not None:
            baseline_start = inc.start - self.policy.baseline
            request = DiagnosisRequest(
                # a replay batch runs past the alert: diagnosis looks no further
                events=self._window.since(baseline_start, until=at),
                changes=self._changes,
                baseline_start=baseline_start,
                start=inc.start,
                now=at,
                fired_slice=dict(ev.slice),
                signal=ev.signal,
            )
            diagnosis = self._diagnose(request)
        if diagnosis is not None:
            inc.scope = [dict(c) for c in diagnosis.scope]
            inc.cause = diagnosis.cause
            inc.confidence = float(diagnosis.confidence)
            inc.evidence = list(diagnosis.evidence)
            failure = diagnosis.failure
        else:
            failure = entry.ledger.failure
            inc.evidence = [
                f"monitor fired on {ev.signal} in "
                + (", ".join(f"{k}={v}" for k, v in ev.slice.items()) or "the whole flow")
            ]
        entry.diagnosed_at = at
        self._remeasure(entry, failure)
        self._refresh(entry)

    def _rescue_until(self, inc: Incident) -> datetime | None:
        return inc.end + self.policy.rescue_tail if inc.end is not None else None

    def _remeasure(self, entry: _Open, failure: str) -> None:
        inc = entry.incident
        if self._window.holds_since(inc.start):
            # The window still holds the whole wave: measure it afresh in the
            # (possibly new) scope. It already contains the current batch.
            ledger = TapLedger(inc.scope, failure)
            until = self._rescue_until(inc)
            ledger.observe(self._window.since(inc.start, until=until), start=inc.start,
                           end=inc.end, rescue_until=until)
            entry.ledger = ledger
        else:
            # A long wave outlived the window: keep what was counted, count
            # the new scope from here on.
            entry.ledger.scope, entry.ledger.failure = inc.scope, failure

    def _rediagnose(self, entry: _Open, ev: AlertEvent) -> None:
        self._diagnose_into(entry, ev)

    # -- streaming ------------------------------------------------------------

    def observe(self, batch: pl.DataFrame, now: datetime) -> None:
        """Count a time-ordered micro-batch into the incidents already open.

        Call it *before* :meth:`on_alerts` for the same batch and before the
        batch enters the window: incidents opened by this batch's alerts are
        measured from the window, which then includes it (no double count).
        """
        if self.policy.digest.enabled:
            self.hourly.observe(batch)
            self._batch = batch  # counted into the waves by on_alerts, which knows their ends
            cutoff = now - self.policy.digest.keep
            self.hourly.forget_before(cutoff)
            if self.waves and self.waves[0].first.started_at < cutoff:
                self.waves = [w for w in self.waves
                              if w.first.started_at >= cutoff or w.alert_id in self._pending]
        for alert_id in self._order:
            entry = self._by_alert[alert_id]
            if entry.closed_at is not None and now - entry.closed_at > self.policy.rescue_tail:
                continue
            inc = entry.incident
            entry.ledger.observe(batch, start=inc.start, end=inc.end,
                                 rescue_until=self._rescue_until(inc))
            self._refresh(entry)

    def _refresh(self, entry: _Open) -> None:
        f = entry.ledger.figures()
        inc = entry.incident
        before = (inc.failed_attempts, inc.failed_payments, inc.lost_fen)
        inc.failed_attempts = f["failed_attempts"]
        inc.failed_payments = f["failed_payments"]
        inc.affected_users = f["affected_users"]
        inc.affected_merchants = f["affected_merchants"]
        inc.lost_fen = f["lost_fen"]
        if before != (inc.failed_attempts, inc.failed_payments, inc.lost_fen):
            self.changed.add(inc.id)

    def incidents(self) -> list[Incident]:
        return [self._by_alert[a].incident for a in self._order]

    def get(self, incident_id: str) -> Incident | None:
        for a in self._order:
            if self._by_alert[a].incident.id == incident_id:
                return self._by_alert[a].incident
        return None
