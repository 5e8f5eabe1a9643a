"""``assess``: events + incidents + loan book -> what the outage did, and what to do.

The pipeline is a chain of pure stages over Polars frames:

1. one streaming pass over the events (:mod:`~tapshield.impact.collect`);
2. lost sales per incident, merchant, channel, region and day
   (:mod:`~tapshield.impact.sales`);
3. borrower stress and the operational label with recommended actions
   (:mod:`~tapshield.impact.stress`, :mod:`~tapshield.impact.actions`);
4. the regulatory classification of each incident
   (:mod:`~tapshield.impact.regulatory`).

:func:`~tapshield.report.impact.write_impact` turns the result into
``impact.json`` and ``impact.html``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tapshield.errors import ContractError
from tapshield.events.read import EventReader
from tapshield.impact.actions import label_borrowers
from tapshield.impact.collect import Collected, Collector, _merge_daily, _merge_hourly
from tapshield.impact.config import ImpactConfig
from tapshield.impact.portfolio import Portfolio, read_portfolio
from tapshield.impact.regulatory import (
    IncidentFacts,
    RegulatoryConfig,
    classify_dora,
    classify_prc,
    daily_average,
    downtime_of,
    interruption_buckets,
    load_regulatory,
    operator_inputs,
    peak_spans,
    province_minutes,
)
from tapshield.impact.sales import IncidentSales, history_hours, measure_lost_sales
from tapshield.impact.stress import Periods, periods_for, stress_borrowers, z_value
from tapshield.impact.windows import (
    ImpactWindow,
    contaminated_hours,
    local_naive,
    resolve_windows,
)
from tapshield.incident import Incident, read_incidents

EventsInput = pl.DataFrame | Iterable[pl.DataFrame] | Path | str
IncidentsInput = list[Incident] | Path | str
PortfolioInput = Portfolio | pl.DataFrame | Path | str | None


@dataclass(slots=True)
class IncidentImpact:
    """Lost sales and regulatory classification of one incident."""

    window: ImpactWindow
    sales: IncidentSales
    facts: IncidentFacts
    dora: dict[str, Any]
    prc: dict[str, Any]
    totals: dict[str, int]


@dataclass(slots=True)
class ImpactResult:
    """Everything ``tapshield impact`` reports; serialise with :func:`to_dict`."""

    config: ImpactConfig
    regulatory: RegulatoryConfig
    incidents: list[IncidentImpact]
    merchants: pl.DataFrame
    """Per (incident, merchant): gross, recaptured and net lost sales with band."""
    cells: pl.DataFrame
    """Per (incident, merchant, channel, region, day): the measurement itself."""
    borrowers: pl.DataFrame | None
    """Per borrower: stress figures, status, label and actions (``None`` without a portfolio)."""
    portfolio: dict[str, Any] | None
    periods: Periods | None
    inputs: dict[str, Any] = field(default_factory=dict)
    trust: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per incident id: whether its affected customers came back
    (:func:`tapshield.respond.trust.trust_impact`, filled by the use case that read
    the events; empty when none was computed)."""

    @property
    def net_lost_fen(self) -> int:
        return sum(i.totals["net_fen"] for i in self.incidents)


def assess(
    events: EventsInput,
    incidents: IncidentsInput,
    portfolio: PortfolioInput = None,
    *,
    config: ImpactConfig | None = None,
    regulatory: RegulatoryConfig | Path | str | None = None,
    history: pl.DataFrame | pl.LazyFrame | None = None,
    schedule: Path | str | pl.DataFrame | None = None,
) -> ImpactResult:
    """Measure what the incidents did to merchants, borrowers and the loan book.

    ``events``: a canonical frame, an iterable of canonical batches (any cut:
    the result does not depend on it) or an events file. ``incidents``: a list
    or an ``incidents.json``. ``portfolio``: a :class:`Portfolio`, a portfolio
    frame or file, or ``None`` for lost sales and classification only.
    ``history``: optional precomputed hourly sales (the
    :data:`~tapshield.impact.collect.HOURLY_SCHEMA` columns, ``hour`` as naive
    local time) for the hours before the events start, e.g. a warehouse table
    scanned lazily, so the events need only cover the incident.
    """
    cfg = config or ImpactConfig()
    reg = regulatory if isinstance(regulatory, RegulatoryConfig) else load_regulatory(regulatory)
    incs = read_incidents(incidents) if isinstance(incidents, str | Path) else list(incidents)
    for inc in incs:
        operator_inputs(inc.extra)
    inputs: dict[str, Any] = {"incidents": len(incs)}
    pf = _portfolio(portfolio, schedule, inputs)
    provisional = resolve_windows(incs, cfg, None)
    collector = Collector(provisional, cfg.tz)
    reader: EventReader | None = None
    for batch in _batches(events, inputs):
        if isinstance(batch, EventReader):
            reader = batch
            continue
        collector.add(batch)
    if reader is not None:
        inputs["events"] = reader.stats.as_dict()
    got = collector.finish()
    inputs.setdefault("events", {"rows": got.rows})
    windows = resolve_windows(incs, cfg, got.data_end)
    if history is not None:
        got = _with_history(got, history, windows, cfg)
    contaminated = contaminated_hours(windows)
    z = z_value(float(cfg.confidence))
    results = []
    for w in windows:
        sales = measure_lost_sales(w, got.events, got.hourly[w.id], got.coverage_start,
                                   contaminated, cfg)
        results.append(_incident_impact(w, sales, got, cfg, reg, z))
    cells = pl.concat([r.sales.cells for r in results]) if results else pl.DataFrame()
    merchants = _merchant_table(results, z)
    borrowers: pl.DataFrame | None = None
    totals: dict[str, Any] | None = None
    periods: Periods | None = None
    if pf is not None and windows:
        periods = periods_for(windows, cfg)
        recap = pl.concat([r.sales.recaptured_to for r in results])
        stressed = stress_borrowers(pf, cells, recap, windows, cfg)
        borrowers = label_borrowers(stressed, periods.day0)
        totals = portfolio_totals(borrowers)
    return ImpactResult(cfg, reg, results, merchants, cells, borrowers, totals, periods, inputs)


def _portfolio(
    portfolio: PortfolioInput, schedule: Path | str | pl.DataFrame | None, inputs: dict[str, Any]
) -> Portfolio | None:
    if portfolio is None:
        return None
    pf = portfolio if isinstance(portfolio, Portfolio) else read_portfolio(portfolio,
                                                                            schedule=schedule)
    inputs["portfolio"] = {
        "facilities": pf.facilities.height, "borrowers": pf.borrowers.height,
        "rejected": pf.rejected, "errors": [str(e) for e in pf.errors],
    }
    return pf


def _batches(events: EventsInput, inputs: dict[str, Any]) -> Iterator[Any]:
    if isinstance(events, str | Path):
        reader = EventReader(events)
        yield from reader
        yield reader
    elif isinstance(events, pl.DataFrame):
        yield events
    else:
        yield from events


def _with_history(
    got: Collected, history: pl.DataFrame | pl.LazyFrame, windows: list[ImpactWindow],
    cfg: ImpactConfig,
) -> Collected:
    """Add precomputed hourly sales for the hours before the events begin.

    Only the hours the counterfactuals read, in the incidents' slices, are
    loaded (a lazy Parquet scan prunes the rest); the daily totals and the
    first hour of the table are aggregates the scan answers cheaply.
    """
    lf = history.lazy()
    names = lf.collect_schema().names()
    missing = {"merchant_id", "channel", "region", "hour", "sales_fen"} - set(names)
    if missing:
        raise ContractError(f"history: missing column(s) {', '.join(sorted(missing))}")
    cut = got.coverage_start
    sq = pl.col("sales_sq") if "sales_sq" in names else pl.col("sales_fen").cast(pl.Float64) ** 2
    taps = pl.col("taps") if "taps" in names else pl.lit(1)
    queries: list[pl.LazyFrame] = []
    served = [w for w in windows if w.stable and w.history_servable]
    for w in served:
        needed = [h for h in history_hours(w, cfg) if cut is None or h < cut]
        queries.append(
            lf.filter(pl.col("hour").is_in(pl.Series(needed, dtype=pl.Datetime("us")).implode())
                      & w.in_slice())
            .select("merchant_id", "channel", "region", pl.col("hour").cast(pl.Datetime("us")),
                    pl.col("sales_fen").cast(pl.Int64), sq.cast(pl.Float64).alias("sales_sq"),
                    taps.cast(pl.UInt32).alias("taps"))
        )
    daily = lf.group_by(pl.col("hour").dt.date().alias("day")).agg(
        taps.sum().cast(pl.Int64).alias("approved_n"),
        pl.col("sales_fen").sum().cast(pl.Int64).alias("approved_fen"),
    )
    if cut is not None:
        daily = daily.filter(pl.col("day") < cut.date())
    first = lf.select(pl.col("hour").min().cast(pl.Datetime("us")))
    *parts, daily_df, first_df = pl.collect_all([*queries, daily, first])
    hourly = dict(got.hourly)
    for w, part in zip(served, parts, strict=True):
        if part.height:
            hourly[w.id] = _merge_hourly([hourly[w.id], part])
    starts = [h for h in (got.coverage_start, first_df.item()) if h is not None]
    return Collected(
        hourly=hourly, events=got.events,
        coverage_start=min(starts) if starts else None,
        data_start=got.data_start, data_end=got.data_end,
        daily=_merge_daily([got.daily, daily_df]), clients=got.clients, rows=got.rows,
    )


def _incident_impact(
    w: ImpactWindow, sales: IncidentSales, got: Collected, cfg: ImpactConfig,
    reg: RegulatoryConfig, z: float,
) -> IncidentImpact:
    cells = sales.cells
    var = float(cells["var"].sum() or 0.0)
    half = int(np.rint(z * var ** 0.5))
    net = int(cells["net_fen"].sum() or 0)
    totals = {
        "counterfactual_fen": int(cells["counterfactual_fen"].sum() or 0),
        "actual_fen": int(cells["actual_fen"].sum() or 0),
        "gross_fen": int(cells["gross_fen"].sum() or 0),
        "recaptured_fen": int(cells["recaptured_fen"].sum() or 0),
        "net_fen": net,
        "net_low_fen": max(0, net - half),
        "net_high_fen": net + half,
        "hours_week": int(cells["hours_week"].sum() or 0),
        "hours_day": int(cells["hours_day"].sum() or 0),
        "hours_attempts": int(cells["hours_attempts"].sum() or 0),
        **sales.taps,
    }
    raw = operator_inputs(w.incident.extra)
    failure = w.signature if w.signature is not None else pl.lit(False)
    buckets = interruption_buckets(w, got.events, cfg.tz, failure)
    share_down = Decimal(str(reg.dora["downtime_failure_share"].value))
    share_int = Decimal(str(reg.prc["interruption_failure_share"].value))
    day0 = local_naive(w.start, cfg.tz).date()
    span_days = Decimal(0)
    if got.data_start is not None and got.data_end is not None:
        span_days = Decimal(int((got.data_end - got.data_start).total_seconds())) / 86_400
    daily_n, daily_fen, daily_basis = daily_average(got.daily, got.coverage_start, day0, span_days)
    clients_total = int(raw.get("clients_total") or got.clients)
    regions = sales.failed_taps["region"].unique().to_list() if sales.failed_taps.height else []
    facts = IncidentFacts(
        incident_id=w.id,
        duration=w.duration,
        downtime=downtime_of(buckets, share_down, w, cfg.tz),
        clients_affected=sales.taps["affected_users"],
        clients_total=clients_total,
        transactions_affected=sales.taps["affected_payments"],
        transactions_affected_fen=sales.taps["affected_fen"],
        daily_transactions=daily_n,
        daily_value_fen=daily_fen,
        net_lost_fen=net,
        regions=sorted(r for r in regions if r is not None),
        province_minutes=province_minutes(buckets, share_int, peak_spans(reg), w, cfg.tz),
        critical_service=raw.get("critical_service"),
        data_losses=bool(raw.get("data_losses", False)),
        malicious_access=bool(raw.get("malicious_access", False)),
        reputational_impact=bool(raw.get("reputational_impact", False)),
        counterparts_share=(Decimal(str(raw["counterparts_share"]))
                            if raw.get("counterparts_share") is not None else None),
        other_costs_fen=int(Decimal(str(raw.get("costs_cny", 0))) * 100),
        personal_info_records=int(raw.get("personal_info_records", 0)),
        basis={
            "clients_total": "operator input" if raw.get("clients_total")
            else "distinct customers in the events",
            "daily": daily_basis,
        },
    )
    return IncidentImpact(w, sales, facts, classify_dora(facts, reg), classify_prc(facts, reg),
                          totals)


def _merchant_table(results: list[IncidentImpact], z: float) -> pl.DataFrame:
    schema = {"incident_id": pl.String(), "merchant_id": pl.String(), "region": pl.String(),
              "channels": pl.String(), "counterfactual_fen": pl.Int64(),
              "actual_fen": pl.Int64(), "gross_fen": pl.Int64(), "recaptured_fen": pl.Int64(),
              "net_fen": pl.Int64(), "net_low_fen": pl.Int64(), "net_high_fen": pl.Int64()}
    frames = [r.sales.cells for r in results if r.sales.cells.height]
    if not frames:
        return pl.DataFrame(schema=schema)
    cells = pl.concat(frames)
    m = cells.group_by("incident_id", "merchant_id").agg(
        pl.col("region").sort_by("gross_fen", descending=True).first(),
        pl.col("channel").filter(pl.col("gross_fen") > 0).unique().sort().str.join(";")
        .alias("channels"),
        pl.col("counterfactual_fen").sum(), pl.col("actual_fen").sum(),
        pl.col("gross_fen").sum(), pl.col("recaptured_fen").sum(), pl.col("net_fen").sum(),
        pl.col("var").sum(),
    )
    half = pl.Series(np.rint(z * np.sqrt(m["var"].to_numpy())).astype(np.int64))
    return m.with_columns(half.alias("_h")).with_columns(
        (pl.col("net_fen") - pl.col("_h")).clip(lower_bound=0).alias("net_low_fen"),
        (pl.col("net_fen") + pl.col("_h")).alias("net_high_fen"),
    ).select(list(schema)).sort("incident_id", "net_fen", "merchant_id",
                                descending=[False, True, False])


def portfolio_totals(b: pl.DataFrame) -> dict[str, Any]:
    """Loan-book totals, overall and by region and industry."""
    def agg(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(
            pl.len().alias("borrowers"),
            (pl.col("lost_net_fen") > 0).sum().alias("borrowers_affected"),
            (pl.col("status") == "operational_stress").sum().alias("operational_stress"),
            (pl.col("status") == "pre_existing_credit").sum().alias("pre_existing_credit"),
            pl.col("outstanding_fen").filter(pl.col("lost_net_fen") > 0).sum()
            .alias("exposure_affected_fen"),
            pl.col("outstanding_fen").filter(pl.col("status") == "operational_stress").sum()
            .alias("exposure_at_risk_fen"),
            pl.col("breach_before").sum().alias("covenant_breaches_before"),
            (pl.col("breach_after") | pl.col("breach_next_after")).sum()
            .alias("covenant_breaches_after"),
            pl.col("covenant_breach_caused").sum().alias("covenant_breaches_caused"),
            (pl.col("liquidity_gap_fen").fill_null(0) > 0).sum().alias("liquidity_shortfalls"),
            pl.col("first_operational_miss_day").is_not_null().sum()
            .alias("operational_missed_payments"),
            pl.col("lost_net_fen").sum().alias("lost_net_fen"),
            pl.col("lost_cf_fen").sum().alias("lost_cf_fen"),
            pl.col("rbf_shortfall_fen").sum().alias("rbf_shortfall_fen"),
            (pl.col("over_advance_after_fen") - pl.col("over_advance_before_fen")).sum()
            .alias("over_advance_increase_fen"),
            pl.col("bridge_fen").fill_null(0).filter(pl.col("status") == "operational_stress")
            .sum().alias("bridge_lines_fen"),
            pl.col("actions").list.eval(pl.element().struct.field("action") == "grace_period")
            .list.any().sum().alias("grace_periods"),
            pl.col("actions").list.eval(pl.element().struct.field("action") == "re_age")
            .list.any().sum().alias("re_ageing"),
        )

    overall = agg(b).to_dicts()[0]

    def by(key: str) -> list[dict[str, Any]]:
        rows = []
        for (k,), g in b.filter(pl.col("lost_net_fen") > 0).group_by(key):
            rows.append({key: k, **agg(g).to_dicts()[0]})
        return sorted(rows, key=lambda r: (-int(r["exposure_at_risk_fen"] or 0),
                                           -int(r["lost_net_fen"] or 0), str(r[key])))

    return {"totals": {k: int(v or 0) for k, v in overall.items()},
            "by_region": by("region"), "by_industry": by("industry")}

