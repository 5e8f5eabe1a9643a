"""Trust impact: do the customers an incident failed come back?

**Method (difference in differences).** *Affected* customers are those with a
tap lost in the incident (:func:`~tapshield.respond.responder.affected_customers`).
*Comparable* customers are those who tapped in the incident's scope and
window and were not affected (same place, same time, same habit of paying
that way: the closest control the events offer). For each customer, ``d`` =
(paid at least once in the ``horizon`` after the incident ended) - (paid at
least once in the ``horizon`` before it started). The estimate is
``mean(d | affected) - mean(d | comparable)``: the change in the share of
customers who pay, beyond the change everybody saw (time of day, weekday).
Its standard error is ``sqrt(var_A / n_A + var_C / n_C)`` (customers are
independent units; a 95 % interval is +-1.96 SE), so an estimate whose
interval covers 0 says "no measurable loss of trust", not "no loss".

**Value.** Customers lost = ``-estimate * n_A`` (when negative); the lost
future spending over the horizon = customers lost x the mean spending of a
comparable customer active after the incident (integer fen, half-even).
Flash pay is paid from the credit line, so this is also the credit-line use
forgone over the horizon (interest and fees follow from it at the lender's
own rates).

**Notices.** The same per-customer change ``d`` compared between affected
customers who were notified and those who were not (no contact, daily cap),
with its own interval: "did notified customers return more?"

Assumption stated: without the incident the two groups' shares would have
moved alike (parallel trends); the pre-period is shown so a reader can see
whether they were alike before.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import polars as pl

from tapshield.incident import Incident, scope_expr
from tapshield.money import format_fen

Z95 = 1.96
MIN_HORIZON = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class GroupChange:
    n: int
    active_before: float
    active_after: float
    mean_change: float
    var_change: float


@dataclass(frozen=True, slots=True)
class TrustImpact:
    incident_id: str
    horizon_minutes: int
    affected: GroupChange
    comparable: GroupChange
    estimate: float
    """Change in the share of affected customers who pay, beyond the comparable change."""
    ci95: tuple[float, float]
    customers_lost: float
    lost_spending_fen: int
    notified: GroupChange | None = None
    not_notified: GroupChange | None = None
    notified_minus_not: float | None = None
    notified_ci95: tuple[float, float] | None = None
    method: str = "difference in differences of the share paying, per customer"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lost_spending"] = format_fen(self.lost_spending_fen)
        return d


def _change(frame: pl.DataFrame) -> GroupChange | None:
    n = frame.height
    if n == 0:
        return None
    before = [int(b) for b in frame["before"].to_list()]
    after = [int(a) for a in frame["after"].to_list()]
    d = [a - b for a, b in zip(after, before, strict=True)]
    var = statistics.variance(d) if n > 1 else 0.0
    return GroupChange(n, sum(before) / n, sum(after) / n, sum(d) / n, float(var))


def _diff(a: GroupChange, b: GroupChange) -> tuple[float, tuple[float, float]]:
    est = a.mean_change - b.mean_change
    se = math.sqrt(a.var_change / max(a.n, 1) + b.var_change / max(b.n, 1))
    return est, (est - Z95 * se, est + Z95 * se)


def trust_impact(events: pl.DataFrame, incident: Incident, affected: Collection[str], *,
                 notified: Collection[str] | None = None,
                 horizon: timedelta = timedelta(hours=2)) -> TrustImpact | None:
    """The trust estimate for one ended incident, or ``None`` when the events do not
    reach far enough around it (less than 15 minutes on either side) or a group is empty."""
    if incident.end is None or events.height == 0:
        return None
    first, last = events["ts"].min(), events["ts"].max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    h = min(horizon, incident.start - first, last - incident.end)
    if h < MIN_HORIZON:
        return None
    users = pl.col("user_id").cast(pl.String)
    during = events.filter((pl.col("ts") >= incident.start) & (pl.col("ts") <= incident.end)
                           & scope_expr(incident.scope))
    present = set(during.select(users).to_series().unique().to_list())
    hit = set(affected) & present if present else set(affected)
    control = present - hit
    before = set(events.filter((pl.col("ts") >= incident.start - h)
                               & (pl.col("ts") < incident.start)
                               & (pl.col("outcome").cast(pl.String) == "approved"))
                 .select(users).to_series().unique().to_list())
    after_ev = events.filter((pl.col("ts") > incident.end) & (pl.col("ts") <= incident.end + h)
                             & (pl.col("outcome").cast(pl.String) == "approved"))
    after = set(after_ev.select(users).to_series().unique().to_list())

    def frame(ids: Collection[str]) -> pl.DataFrame:
        ids = sorted(ids)
        return pl.DataFrame({"user_id": ids, "before": [u in before for u in ids],
                             "after": [u in after for u in ids]},
                            schema={"user_id": pl.String, "before": pl.Boolean,
                                    "after": pl.Boolean})

    a, c = _change(frame(hit)), _change(frame(control))
    if a is None or c is None:
        return None
    est, ci = _diff(a, c)
    lost = max(0.0, -est * a.n)
    spenders = after_ev.filter(users.is_in(sorted(control)))
    per_customer = Decimal(int(spenders["amount_fen"].sum() or 0)) / max(
        spenders.select(users).to_series().n_unique(), 1)
    value = int((Decimal(repr(lost)) * per_customer).quantize(Decimal(1), ROUND_HALF_EVEN))
    out = TrustImpact(incident.id, int(h.total_seconds() // 60), a, c, round(est, 6),
                      (round(ci[0], 6), round(ci[1], 6)), round(lost, 2), value)
    if notified is not None:
        told = _change(frame(hit & set(notified)))
        untold = _change(frame(hit - set(notified)))
        if told is not None and untold is not None:
            diff, dci = _diff(told, untold)
            out = TrustImpact(**{**asdict(out), "affected": a, "comparable": c,
                                 "notified": told, "not_notified": untold,
                                 "notified_minus_not": round(diff, 6),
                                 "notified_ci95": (round(dci[0], 6), round(dci[1], 6))})
        elif told is not None:
            out = TrustImpact(**{**asdict(out), "affected": a, "comparable": c,
                                 "notified": told})
    return out
