"""Trust impact: do the customers an incident failed come back?

**Method (difference in differences, matched).** *Affected* customers are
those with a tap lost in the incident
(:func:`~tapshield.respond.responder.affected_customers`). *Comparable*
customers tapped in the incident's scope and window and were not affected:
same place (region x channel of the scope), same time, same habit of paying
that way. They are matched on activity too, because a heavy payer is both
likelier to meet the outage and likelier to pay again, whatever the outage
did: both groups are cut into strata by the payments each made in the
incident's scope and window (1, 2, 3+: given that number, whether a tap failed
is chance, so the groups' habits are alike) and by the approved payments each
made in the ``lookback`` before it (0, 1, 2, 3-4, 5+; merged from the top
down until a stratum has ``MIN_CONTROLS`` comparable customers). Matching on
prior activity alone leaves a bias: it evens out the pre-period while the
affected stay the busier customers (measured without churn: mean +0.013 on 18
seeds; with both, -0.001 on 12 held-out seeds, BENCHMARKS.md). For each
customer, ``d`` = (paid at least once in the ``horizon`` after the incident
ended) - (paid at least once in the ``horizon`` before it started). In each
stratum the estimate is ``mean(d | affected) - mean(d | comparable)``; the
strata are weighted by their affected customers (the effect on the affected,
ATT). Standard error ``sqrt(sum w_s^2 (var_A,s / n_A,s + var_C,s / n_C,s))``
(customers are independent units; 95 % interval +-1.96 SE), so an interval
covering 0 says "no measurable loss of trust", not "no loss". Affected
customers of a stratum without two comparable customers are left out (counted
in ``unmatched_affected``).

**Value.** Customers lost = ``-estimate x n_A`` (when negative); the lost
spending over the horizon = customers lost x the mean spending of an active
comparable customer of the same stratum (weighted like the estimate), in
integer fen rounded half-even, with the interval's ends valued the same way.
Flash pay is paid from the credit line, so each lost payment is also
credit-line use forgone: ``lost_credit_line_use_fen`` is the same sum (the
interest and fees it would have earned follow at the lender's own rates).

**Notices.** The same matched comparison between affected customers who were
notified and those who were not (no contact, daily cap), with its own
interval: "did notified customers return more?"

Assumption stated: without the incident the two groups' shares would have
moved alike within a stratum (parallel trends); the pre-period shares are
shown so a reader can see whether they were alike before. Validated on the
simulator's churn model, whose true effect is exact (docs/respond.md).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import polars as pl

from tapshield.incident import Incident, scope_expr
from tapshield.money import format_fen

Z95 = 1.96
MIN_HORIZON = timedelta(minutes=15)
ACTIVITY_EDGES = (1, 2, 3, 5)
"""Prior approved payments: strata 0, 1, 2, 3-4, 5+."""
BUSY_CAP = 3
"""Payments in the incident: strata 1, 2, 3+."""
MIN_CONTROLS = 20
"""A stratum with fewer comparable customers is merged with its neighbour below (a
variance from a handful of customers is too often 0, and the interval too narrow)."""


@dataclass(frozen=True, slots=True)
class GroupChange:
    n: int
    active_before: float
    active_after: float
    mean_change: float
    var_change: float


@dataclass(frozen=True, slots=True)
class Comparison:
    """A matched difference in differences of two groups of customers."""

    estimate: float
    ci95: tuple[float, float]
    treated: int
    """Treated customers in strata with controls (those the estimate is about)."""
    unmatched: int
    strata: tuple[dict[str, Any], ...]
    spend_per_active_fen: Decimal
    """Mean spending after the incident of an active control, weighted like the estimate."""
    treated_ids: tuple[str, ...] = ()
    """The treated customers the estimate is about (their stratum had controls)."""


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
    lost_spending_ci_fen: tuple[int, int] = (0, 0)
    """Lost spending at the interval's ends (the upper end of the loss first)."""
    lost_credit_line_use_fen: int = 0
    matched_affected: int = 0
    unmatched_affected: int = 0
    strata: tuple[dict[str, Any], ...] = ()
    notified: GroupChange | None = None
    not_notified: GroupChange | None = None
    notified_minus_not: float | None = None
    notified_ci95: tuple[float, float] | None = None
    after_from: datetime | None = None
    after_to: datetime | None = None
    affected_ids: tuple[str, ...] = field(default=(), repr=False)
    """The matched affected customers (for grading against a simulator's truth)."""
    notified_ids: tuple[str, ...] = field(default=(), repr=False)
    method: str = ("difference in differences of the share paying, per customer, matched on "
                   "prior activity (strata weighted by affected customers)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("affected_ids", "notified_ids"):
            d.pop(k)
        d["lost_spending"] = format_fen(self.lost_spending_fen)
        d["lost_credit_line_use"] = format_fen(self.lost_credit_line_use_fen)
        d["lost_spending_ci"] = [format_fen(v) for v in self.lost_spending_ci_fen]
        for k in ("after_from", "after_to"):
            if d[k] is not None:
                d[k] = d[k].isoformat()
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


def _stratum(prior: int) -> str:
    lo = 0
    for edge in ACTIVITY_EDGES:
        if prior < edge:
            return str(lo) if edge - lo == 1 else f"{lo}-{edge - 1}"
        lo = edge
    return f"{lo}+"


def _order(key: str) -> int:
    return int(key.split("-", maxsplit=1)[0].rstrip("+"))


def _coarsen(control: pl.DataFrame) -> dict[str, str]:
    """Stratum -> merged stratum, from the top down, so that each merged stratum has
    ``MIN_CONTROLS`` comparable customers where the data allow."""
    keys = sorted({_stratum(p) for p in (0, *ACTIVITY_EDGES)}, key=_order, reverse=True)
    sizes = dict(control.group_by("stratum").len().iter_rows())
    out: dict[str, str] = {}
    group: list[str] = []
    count = 0
    for key in keys:
        group.append(key)
        count += int(sizes.get(key, 0))
        if count >= MIN_CONTROLS:
            label = _label(group)
            out.update(dict.fromkeys(group, label))
            group, count = [], 0
    if group:  # what is left at the bottom joins the last merged stratum
        last = min(set(out.values()), key=_order, default=None)
        members = [k for k, v in out.items() if v == last] + group
        out.update(dict.fromkeys(members, _label(members)))
    return out


def _label(keys: list[str]) -> str:
    lo = min(keys, key=_order)
    hi = max(keys, key=_order)
    if lo == hi:
        return lo
    top = hi if hi.endswith("+") else hi.split("-")[-1]
    start = lo.split("-")[0]
    return f"{start}+" if top.endswith("+") else f"{start}-{top}"


def compare(treated: pl.DataFrame, control: pl.DataFrame) -> Comparison | None:
    """Matched difference in differences: frames of ``user_id, busy, stratum, before,
    after, spend`` (one row per customer; ``busy``: payments in the incident, ``stratum``:
    prior activity); ``None`` when no stratum has both groups."""
    total = 0
    used: list[str] = []
    parts: list[tuple[int, GroupChange, GroupChange, Decimal, str, str]] = []
    for busy in sorted(set(treated["busy"].to_list())):
        tb = treated.filter(pl.col("busy") == busy)
        cb = control.filter(pl.col("busy") == busy)
        merged = _coarsen(cb)
        tb = tb.with_columns(pl.col("stratum").replace(merged))
        cb = cb.with_columns(pl.col("stratum").replace(merged))
        for key in sorted(set(tb["stratum"].to_list())):
            t = tb.filter(pl.col("stratum") == key)
            c = cb.filter(pl.col("stratum") == key)
            if c.height < 2:
                continue
            a, b = _change(t), _change(c)
            assert a is not None and b is not None
            active = c.filter(pl.col("after"))
            spend = (Decimal(int(active["spend"].sum() or 0)) / active.height
                     if active.height else Decimal(0))
            parts.append((t.height, a, b, spend, busy, key))
            total += t.height
            used += t["user_id"].to_list()
    if not total:
        return None
    est = 0.0
    var = 0.0
    spend_w = Decimal(0)
    strata = []
    for n, a, b, spend, busy, key in parts:
        w = n / total
        est += w * (a.mean_change - b.mean_change)
        var += w * w * (a.var_change / a.n + b.var_change / b.n)
        spend_w += Decimal(n) * spend / Decimal(total)
        strata.append({"incident_payments": busy, "prior_payments": key,
                       "affected": a.n, "comparable": b.n,
                       "affected_change": round(a.mean_change, 6),
                       "comparable_change": round(b.mean_change, 6)})
    se = math.sqrt(var)
    return Comparison(est, (est - Z95 * se, est + Z95 * se), total, treated.height - total,
                      tuple(strata), spend_w, tuple(sorted(used)))


def _fen(customers: float, per_customer: Decimal) -> int:
    return int((Decimal(repr(max(0.0, customers))) * per_customer)
               .quantize(Decimal(1), ROUND_HALF_EVEN))


def trust_impact(events: pl.DataFrame, incident: Incident, affected: Collection[str], *,
                 notified: Collection[str] | None = None,
                 horizon: timedelta = timedelta(hours=2),
                 lookback: timedelta = timedelta(hours=24)) -> TrustImpact | None:
    """The trust estimate for one ended incident, or ``None`` when the events do not
    reach far enough around it (less than 15 minutes on either side) or no stratum has
    both affected and comparable customers."""
    if incident.end is None or events.height == 0:
        return None
    first, last = events["ts"].min(), events["ts"].max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    h = min(horizon, incident.start - first, last - incident.end)
    if h < MIN_HORIZON:
        return None
    users = pl.col("user_id").cast(pl.String)
    approved = pl.col("outcome").cast(pl.String) == "approved"
    during = events.filter((pl.col("ts") >= incident.start) & (pl.col("ts") <= incident.end)
                           & scope_expr(incident.scope))
    present = set(during.select(users).to_series().unique().to_list())
    hit = set(affected) & present if present else set(affected)
    control = present - hit
    ids = sorted(hit | control)
    prior = (events.filter(approved & (pl.col("ts") < incident.start)
                           & (pl.col("ts") >= incident.start - lookback)
                           & users.is_in(ids))
             .group_by(users.alias("user_id")).agg(pl.len().alias("prior")))
    before = set(events.filter((pl.col("ts") >= incident.start - h)
                               & (pl.col("ts") < incident.start) & approved)
                 .select(users).to_series().unique().to_list())
    after_to = incident.end + h
    spend = (events.filter((pl.col("ts") > incident.end) & (pl.col("ts") <= after_to)
                           & approved & users.is_in(ids))
             .group_by(users.alias("user_id")).agg(pl.col("amount_fen").sum().alias("spend")))
    busy = (during.group_by(users.alias("user_id"))
            .agg((pl.col("payment_id").n_unique() if "payment_id" in events.columns
                  else pl.len()).alias("busy")))
    table = (pl.DataFrame({"user_id": ids}, schema={"user_id": pl.String})
             .join(prior, on="user_id", how="left").join(spend, on="user_id", how="left")
             .join(busy, on="user_id", how="left")
             .with_columns(pl.col("prior").fill_null(0), pl.col("spend").fill_null(0),
                           pl.col("busy").fill_null(1)))
    table = table.with_columns(
        pl.col("prior").map_elements(_stratum, return_dtype=pl.String).alias("stratum"),
        pl.when(pl.col("busy") >= BUSY_CAP).then(pl.lit(f"{BUSY_CAP}+"))
        .otherwise(pl.col("busy").cast(pl.String)).alias("busy"),
        pl.col("user_id").is_in(sorted(before)).alias("before"),
        (pl.col("spend") > 0).alias("after"))

    def rows(group: Collection[str]) -> pl.DataFrame:
        return table.filter(pl.col("user_id").is_in(sorted(group)))

    a_rows, c_rows = rows(hit), rows(control)
    a, c = _change(a_rows), _change(c_rows)
    cmp = compare(a_rows, c_rows)
    if a is None or c is None or cmp is None:
        return None
    matched = a_rows.filter(pl.col("user_id").is_in(list(cmp.treated_ids)))
    n_a = cmp.treated
    lost = max(0.0, -cmp.estimate * n_a)
    value = _fen(lost, cmp.spend_per_active_fen)
    lo_ci, hi_ci = cmp.ci95
    out = TrustImpact(
        incident.id, int(h.total_seconds() // 60), a, c, round(cmp.estimate, 6),
        (round(lo_ci, 6), round(hi_ci, 6)), round(lost, 2), value,
        (_fen(-lo_ci * n_a, cmp.spend_per_active_fen), _fen(-hi_ci * n_a,
                                                            cmp.spend_per_active_fen)),
        value, n_a, cmp.unmatched, cmp.strata, after_from=incident.end, after_to=after_to,
        affected_ids=tuple(matched["user_id"].to_list()))
    if notified is not None:
        told_ids = set(matched["user_id"].to_list()) & set(notified)
        told_rows = matched.filter(pl.col("user_id").is_in(sorted(told_ids)))
        untold_rows = matched.filter(~pl.col("user_id").is_in(sorted(told_ids)))
        told, untold = _change(told_rows), _change(untold_rows)
        extra: dict[str, Any] = {"notified": told, "not_notified": untold,
                                 "notified_ids": tuple(sorted(told_ids))}
        vs = compare(told_rows, untold_rows) if told is not None and untold is not None \
            else None
        if vs is not None:
            extra["notified_minus_not"] = round(vs.estimate, 6)
            extra["notified_ci95"] = (round(vs.ci95[0], 6), round(vs.ci95[1], 6))
        out = replace(out, **extra)
    return out
