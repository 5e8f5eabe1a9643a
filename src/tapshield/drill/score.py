"""Grade a pipeline's response against the simulator's ground truth.

Pure functions over ``(incidents, alerts, truth)``: no files, no pipeline, so
every rule below is testable on hand-made cases.

**Matching.** An incident *matches* a fault when their times overlap (the
incident's ``[start, end]``, open-ended if it is still open, against the
fault's ``[start - slack, end + slack]``; ``slack`` = 5 minutes because a
change-point estimate of the start may land a little before the truth) and
their scopes are *compatible* (some combination of one and some combination
of the other never give a dimension two different values; ``[]`` = everything
is compatible with all), and the incident was detected after the fault
began (an incident raised before a fault existed was about something else,
even if it is still open). An incident matching several faults (overlapping
waves) is assigned to one: the best scope F1, then the right cause, then the
closest start. Several incidents may be assigned to one fault (a wave
split in pieces; they are listed as duplicates).

**Per fault.** *Detected* = at least one assigned incident *paged* (level 1-3;
level 4 is a notice, reported as *noticed*). *Delay* = the earliest paging
incident's ``detected_at`` minus the fault's true start. *Cause* and *scope*
are read from that first paging incident (what the on-call engineer saw
first): cause right = equal to the true cause; scope F1 = the F1 score of the
exact combination sets (``{channel: nfc}`` is not ``{channel: nfc, region:
CN-GD}``), scope right = F1 of 1. *Failed payments* reported = the sum over
assigned incidents, against the true count and the exact-window count (see
:mod:`tapshield.simulate.truth`), counting once the incidents that overlap in
time and scope (the paging one first): they measured the same taps; incidents
put down to another cause are not counted.

**False pages.** A paging incident assigned to no must-page fault (to a decoy,
to a harmless change, or to nothing) is a false page; so is a notifying
``firing`` alert whose slice and time match no must-page fault. *Decoys paged*
counts the decoys that drew at least one page.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tapshield.incident import Incident
from tapshield.monitor.alerts import AlertEvent
from tapshield.simulate.truth import FaultTruth, Truth
from tapshield.timeutil import to_rfc3339

PAGING_LEVEL = 3
"""Levels 1 (red) to 3 (yellow) page a person; 4 (blue) is a notice."""
DEFAULT_SLACK = timedelta(minutes=5)

Scope = list[dict[str, str]]


def combo_key(combo: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset((str(k), str(v)) for k, v in combo.items())


def scope_f1(reported: Scope, truth: Scope) -> float:
    """F1 of the exact combination sets (``[]`` and ``[]`` agree: both mean everything)."""
    r = {combo_key(c) for c in reported} or {frozenset()}
    t = {combo_key(c) for c in truth} or {frozenset()}
    hit = len(r & t)
    return 2.0 * hit / (len(r) + len(t))


def compatible(a: Scope, b: Scope) -> bool:
    """Could the two scopes describe overlapping traffic?"""
    if not a or not b:
        return True
    for ca in a:
        for cb in b:
            if all(cb.get(k, v) == v for k, v in ca.items()):
                return True
    return False


def counted(incidents: Sequence[Incident]) -> list[Incident]:
    """The incidents whose failed payments are not already counted by another.

    Two incidents of one fault that overlap in time and in scope measured the
    same taps (a merchant's notice inside a region's attack, a second alert on
    the same wave): only one counts, the paging one before a notice, then the
    first detected. Pieces of a wave that follow one another all count.
    """
    far = datetime.max.replace(tzinfo=UTC)

    def overlap(a: Incident, b: Incident) -> bool:
        return (a.start <= (b.end or far) and b.start <= (a.end or far)
                and compatible(a.scope, b.scope))

    kept: list[Incident] = []
    for inc in sorted(incidents, key=lambda i: (not pages(i), i.detected_at, i.id)):
        if not any(overlap(inc, k) for k in kept):
            kept.append(inc)
    return kept


def pages(incident: Incident) -> bool:
    return 1 <= int(incident.level) <= PAGING_LEVEL


def time_match(incident: Incident, fault: FaultTruth, slack: timedelta = DEFAULT_SLACK) -> bool:
    lo, hi = fault.start - slack, fault.end + slack
    end = incident.end if incident.end is not None else hi
    end = max(end, incident.start)
    return incident.start <= hi and end >= lo


@dataclass(slots=True)
class FaultScore:
    fault_id: str
    cause: str
    must_page: bool
    decoy: bool
    start: datetime
    end: datetime
    detected: bool
    """For a must-page fault: paged. For a decoy or harmless change: it drew a page (bad)."""
    noticed: bool
    incident_ids: list[str] = field(default_factory=list)
    detected_at: datetime | None = None
    delay_s: float | None = None
    cause_reported: str | None = None
    cause_right: bool | None = None
    scope_truth: Scope = field(default_factory=list)
    scope_reported: Scope | None = None
    scope_f1: float | None = None
    scope_right: bool | None = None
    failed_payments_true: int = 0
    failed_payments_window: int | None = None
    failed_payments_reported: int | None = None
    saved_by_failover: int | None = None

    @property
    def duplicates(self) -> int:
        return max(0, len(self.incident_ids) - 1)

    def to_dict(self, tz: str | None = None) -> dict[str, Any]:
        d = asdict(self)
        d["start"] = to_rfc3339(self.start, tz)
        d["end"] = to_rfc3339(self.end, tz)
        d["detected_at"] = to_rfc3339(self.detected_at, tz) if self.detected_at else None
        d["duplicates"] = self.duplicates
        return d


@dataclass(slots=True)
class Scorecard:
    scenario: str
    faults: list[FaultScore]
    false_pages: list[str]
    """Ids of paging incidents that match no must-page fault."""
    false_alert_pages: list[str]
    """Ids of notifying alerts that match no must-page fault."""
    incidents: int
    paging_incidents: int

    @property
    def must_page(self) -> list[FaultScore]:
        return [f for f in self.faults if f.must_page]

    @property
    def decoys_paged(self) -> list[str]:
        return [f.fault_id for f in self.faults if not f.must_page and f.detected]

    def summary(self) -> dict[str, Any]:
        mp = self.must_page
        det = [f for f in mp if f.detected]
        delays = [f.delay_s for f in det if f.delay_s is not None]
        f1s = [f.scope_f1 for f in det if f.scope_f1 is not None]
        errs = [abs(f.failed_payments_reported - f.failed_payments_true)
                / max(f.failed_payments_true, 1)
                for f in det if f.failed_payments_reported is not None]
        return {
            "must_page_faults": len(mp),
            "detected": len(det),
            "detection_rate": round(len(det) / len(mp), 4) if mp else None,
            "median_delay_s": round(statistics.median(delays), 1) if delays else None,
            "max_delay_s": round(max(delays), 1) if delays else None,
            "cause_right": sum(1 for f in det if f.cause_right),
            "cause_accuracy": round(sum(1 for f in det if f.cause_right) / len(det), 4)
            if det else None,
            "scope_right": sum(1 for f in det if f.scope_right),
            "mean_scope_f1": round(statistics.fmean(f1s), 4) if f1s else None,
            "median_failed_payments_error": round(statistics.median(errs), 4) if errs else None,
            "false_pages": len(self.false_pages),
            "false_alert_pages": len(self.false_alert_pages),
            "decoys": sum(1 for f in self.faults if not f.must_page),
            "decoys_paged": len(self.decoys_paged),
            "incidents": self.incidents,
            "paging_incidents": self.paging_incidents,
            "saved_by_failover": sum(f.saved_by_failover for f in self.faults
                                     if f.saved_by_failover is not None)
            if any(f.saved_by_failover is not None for f in self.faults) else None,
        }

    def to_dict(self, tz: str | None = None) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "summary": self.summary(),
            "faults": [f.to_dict(tz) for f in self.faults],
            "false_pages": list(self.false_pages),
            "false_alert_pages": list(self.false_alert_pages),
        }


def _rank(incident: Incident, fault: FaultTruth) -> tuple[float, int, float]:
    return (
        scope_f1(incident.scope, fault.scope),
        int(incident.cause == fault.cause),
        -abs((incident.start - fault.start).total_seconds()),
    )


def assign(incidents: Sequence[Incident], truth: Truth, slack: timedelta = DEFAULT_SLACK
           ) -> dict[str, str | None]:
    """Incident id -> the id of the fault it is assigned to (``None`` = no match)."""
    out: dict[str, str | None] = {}
    for inc in incidents:
        cands = [f for f in truth.faults
                 if time_match(inc, f, slack) and compatible(inc.scope, f.scope)
                 and inc.detected_at >= f.start]
        # a real fault outranks a decoy for the same incident only on merit
        best = max(cands, key=lambda f: _rank(inc, f), default=None)
        out[inc.id] = best.id if best is not None else None
    return out


def alert_matches(alert: AlertEvent, fault: FaultTruth, slack: timedelta = DEFAULT_SLACK
                  ) -> bool:
    sl = [dict(alert.slice)] if alert.slice else []
    in_time = (fault.start - slack) <= alert.ts and alert.started_at <= fault.end + slack
    return in_time and compatible(sl, fault.scope)


def score(
    incidents: Sequence[Incident],
    truth: Truth,
    *,
    alerts: Iterable[AlertEvent] = (),
    saved_by_failover: dict[str, int] | None = None,
    slack: timedelta = DEFAULT_SLACK,
) -> Scorecard:
    """The scorecard of one drill (see the module docstring for every rule)."""
    assigned = assign(incidents, truth, slack)
    by_fault: dict[str, list[Incident]] = {f.id: [] for f in truth.faults}
    for inc in incidents:
        fid = assigned[inc.id]
        if fid is not None:
            by_fault[fid].append(inc)
    must = {f.id for f in truth.faults if f.must_page}
    scores: list[FaultScore] = []
    for f in truth.faults:
        mine = sorted(by_fault[f.id], key=lambda i: i.detected_at)
        paging = [i for i in mine if pages(i)]
        first = paging[0] if paging else None
        fs = FaultScore(
            fault_id=f.id, cause=f.cause, must_page=f.must_page, decoy=f.decoy,
            start=f.start, end=f.end, detected=bool(paging), noticed=bool(mine),
            incident_ids=[i.id for i in mine], scope_truth=[dict(c) for c in f.scope],
            failed_payments_true=f.failed_payments,
            failed_payments_window=f.window_failed_payments,
        )
        if first is not None:
            fs.detected_at = first.detected_at
            fs.delay_s = (first.detected_at - f.start).total_seconds()
            fs.cause_reported = first.cause
            fs.cause_right = first.cause == f.cause
            fs.scope_reported = [dict(c) for c in first.scope]
            fs.scope_f1 = round(scope_f1(first.scope, f.scope), 4)
            fs.scope_right = fs.scope_f1 >= 1.0 - 1e-9
            # the pipeline's own claim about this fault: not incidents it put down
            # to another cause (a fraud notice at a merchant during a network fault)
            claims = [i for i in mine if i.cause in (f.cause, "unknown")]
            fs.failed_payments_reported = sum(i.failed_payments for i in counted(claims))
        if saved_by_failover is not None:
            fs.saved_by_failover = int(saved_by_failover.get(f.id, 0))
        scores.append(fs)
    false_pages = [i.id for i in incidents if pages(i) and assigned[i.id] not in must]
    must_faults = [f for f in truth.faults if f.must_page]
    false_alerts = sorted({
        a.alert_id for a in alerts
        if a.state == "firing" and a.notify
        and not any(alert_matches(a, f, slack) for f in must_faults)
    })
    return Scorecard(
        scenario=truth.scenario, faults=scores, false_pages=false_pages,
        false_alert_pages=false_alerts, incidents=len(incidents),
        paging_incidents=sum(1 for i in incidents if pages(i)),
    )
