"""Borrower stress: from lost sales to DSCR, liquidity and each facility's repayment.

For each borrower whose merchants lost sales:

* **lost cash flow** = net lost GMV x contribution margin (half-even, once,
  on the borrower's total; per-day amounts are allocated by cumulative
  rounding so they add up to the total exactly);
* **DSCR** of the current period (the calendar month the first incident
  began in) and the next = (monthly CFADS - lost cash flow falling in that
  month) / debt service due in that month, before and after the outage,
  against the covenant minimum (compared exactly, in integers);
* **liquidity**: day by day from the incident, cash + reserve + undrawn
  lines + CFADS accrued - instalments due, with and without the lost cash
  flow (which reaches the account ``settlement_lag_days`` later). The test at
  the recovery date (end of the incident + recovery tail + settlement lag) is
  the issue's "cash + reserve + undrawn + stressed CFADS against instalments
  due before recovery"; the first due date with a negative balance is the
  first likely missed payment;
* **revenue-based** facilities: holdback share x lost sales on the channels
  the holdback is taken from (a sale recaptured on a channel without holdback
  pays the lender nothing), capped at what is still owed;
* **receivables** facilities: the eligible receivables fall by the lost
  sales on the financed channels, the borrowing base by the advance rate on
  that, and any outstanding above the new base is an over-advance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl
from scipy.stats import norm

from tapshield.impact.config import ImpactConfig
from tapshield.impact.exact import (
    PPM,
    RATIO_SCALE,
    mul_ppm,
    np_div_half_even,
    ratio_e4,
)
from tapshield.impact.portfolio import Portfolio, due_schedule
from tapshield.impact.windows import ImpactWindow, local_naive

_LCM_DAYS = 377_580
"""lcm(28, 29, 30, 31): a day's share of any month is an exact multiple of 1/377,580."""


def z_value(confidence: float) -> float:
    """Two-sided normal quantile for a central band of ``confidence``."""
    return float(norm.ppf(0.5 + confidence / 2))


@dataclass(frozen=True, slots=True)
class Periods:
    day0: date
    """Local date the first incident began: day 0 of the cash projection."""
    current: tuple[date, date]
    next: tuple[date, date]
    horizon_end: date


def periods_for(windows: list[ImpactWindow], config: ImpactConfig) -> Periods:
    day0 = min(local_naive(w.start, config.tz).date() for w in windows)
    cur_start = day0.replace(day=1)
    nxt_start = (cur_start + timedelta(days=32)).replace(day=1)
    after = (nxt_start + timedelta(days=32)).replace(day=1)
    return Periods(
        day0=day0,
        current=(cur_start, nxt_start - timedelta(days=1)),
        next=(nxt_start, after - timedelta(days=1)),
        horizon_end=day0 + timedelta(days=config.horizon_days - 1),
    )


def recovery_dates(windows: list[ImpactWindow], config: ImpactConfig) -> pl.DataFrame:
    """(incident_id, recovery_date): local date of end + tail, plus the settlement lag."""
    return pl.DataFrame({
        "incident_id": [w.id for w in windows],
        "recovery_date": [
            local_naive(w.end + config.recovery_tail, config.tz).date()
            + timedelta(days=config.settlement_lag_days)
            for w in windows
        ],
    }, schema={"incident_id": pl.String(), "recovery_date": pl.Date()})


def stress_borrowers(
    portfolio: Portfolio,
    cells: pl.DataFrame,
    recaptured_to: pl.DataFrame,
    windows: list[ImpactWindow],
    config: ImpactConfig,
) -> pl.DataFrame:
    """One row per borrower with every figure of the stress test (see module doc)."""
    per = periods_for(windows, config)
    z = z_value(float(config.confidence))
    b = portfolio.borrowers.select(
        "borrower_id", "region", "industry", "merchant_ids", "facilities",
        pl.col("outstanding").alias("outstanding_fen"),
        pl.col("cfads").alias("cfads_fen"),
        (pl.col("cash") + pl.col("reserve") + pl.col("undrawn")).alias("liquid_fen"),
        pl.col("cash").alias("cash_fen"), pl.col("reserve").alias("reserve_fen"),
        pl.col("undrawn").alias("undrawn_fen"),
    ).join(
        portfolio.facilities.group_by("borrower_id").agg(
            pl.col("margin_ppm").first(), pl.col("covenant_e4").first()
        ),
        on="borrower_id", how="left",
    )
    # -- lost sales of each borrower's merchants
    bc = cells.join(portfolio.merchants, on="merchant_id", how="inner")
    per_borrower = bc.group_by("borrower_id").agg(
        pl.col("gross_fen").sum().alias("lost_gross_fen"),
        pl.col("recaptured_fen").sum(),
        pl.col("net_fen").sum().alias("lost_net_fen"),
        pl.col("var").sum().alias("_var"),
        pl.col("merchant_id").filter(pl.col("gross_fen") > 0).n_unique()
        .alias("merchants_affected"),
        pl.col("incident_id").filter(pl.col("gross_fen") > 0).unique().sort().alias("incidents"),
    )
    b = b.join(per_borrower, on="borrower_id", how="left").with_columns(
        pl.col("lost_gross_fen", "recaptured_fen", "lost_net_fen").fill_null(0),
        pl.col("_var").fill_null(0.0),
        pl.col("merchants_affected").fill_null(0),
    )
    sd = b["_var"].sqrt() * z
    b = b.with_columns(
        pl.Series("_half", np.rint(sd.to_numpy()).astype(np.int64)),
    ).with_columns(
        (pl.col("lost_net_fen") - pl.col("_half")).clip(lower_bound=0).alias("lost_low_fen"),
        (pl.col("lost_net_fen") + pl.col("_half")).alias("lost_high_fen"),
        mul_ppm(pl.col("lost_net_fen"), pl.col("margin_ppm")).alias("lost_cf_fen"),
    ).with_columns(
        mul_ppm(pl.col("lost_high_fen"), pl.col("margin_ppm")).alias("lost_cf_high_fen"),
    )
    # -- lost cash flow per day (cumulative rounding keeps the total exact)
    daily = (
        bc.group_by("borrower_id", "day").agg(pl.col("net_fen").sum())
        .join(b.select("borrower_id", "margin_ppm"), on="borrower_id")
        .sort("borrower_id", "day")
        .with_columns(pl.col("net_fen").cum_sum().over("borrower_id").alias("_cum"))
        .with_columns(mul_ppm(pl.col("_cum"), pl.col("margin_ppm")).alias("_cum_cf"))
        .with_columns(
            (pl.col("_cum_cf") - pl.col("_cum_cf").shift(1, fill_value=0).over("borrower_id"))
            .alias("cf_fen")
        )
    )
    cur_end, nxt_end = per.current[1], per.next[1]
    by_period = daily.group_by("borrower_id").agg(
        pl.col("cf_fen").filter(pl.col("day") <= cur_end).sum().alias("lost_cf_current_fen"),
        pl.col("cf_fen").filter((pl.col("day") > cur_end) & (pl.col("day") <= nxt_end)).sum()
        .alias("lost_cf_next_fen"),
    )
    b = b.join(by_period, on="borrower_id", how="left").with_columns(
        pl.col("lost_cf_current_fen", "lost_cf_next_fen").fill_null(0)
    )
    # -- debt service per period and the DSCRs
    sched_end = max(per.next[1], per.horizon_end)
    sched = due_schedule(portfolio, per.current[0], sched_end)
    ds = sched.group_by("borrower_id").agg(
        pl.col("amount_fen").filter(pl.col("due_date") <= cur_end).sum().alias("ds_current_fen"),
        pl.col("amount_fen").filter((pl.col("due_date") > cur_end)
                                    & (pl.col("due_date") <= nxt_end)).sum()
        .alias("ds_next_fen"),
    )
    b = b.join(ds, on="borrower_id", how="left").with_columns(
        pl.col("ds_current_fen", "ds_next_fen").fill_null(0)
    )
    # An instalment fell due before the incident and is still unpaid: arrears the
    # outage cannot have caused.
    arrears = portfolio.facilities.filter(
        pl.col("instalment").is_not_null() & (pl.col("next_due_date") < pl.lit(per.day0))
    ).select("borrower_id").unique().with_columns(pl.lit(True).alias("arrears_before"))
    b = b.join(arrears, on="borrower_id", how="left").with_columns(
        pl.col("arrears_before").fill_null(False))
    cf_after = pl.col("cfads_fen") - pl.col("lost_cf_current_fen")
    cf_next_after = pl.col("cfads_fen") - pl.col("lost_cf_next_fen")

    def below(num: pl.Expr, den: str, threshold_e4: pl.Expr) -> pl.Expr:
        # num/den < threshold, exactly: num * 10^4 < threshold_e4 * den (den > 0)
        return pl.when((pl.col(den) > 0) & threshold_e4.is_not_null()).then(
            num.cast(pl.Int128) * RATIO_SCALE < threshold_e4.cast(pl.Int128) * pl.col(den)
        ).otherwise(False)

    reage_e4 = int(config.reage_below_dscr * RATIO_SCALE)
    b = b.with_columns(
        ratio_e4(pl.col("cfads_fen"), pl.col("ds_current_fen")).alias("dscr_before_e4"),
        ratio_e4(cf_after, pl.col("ds_current_fen")).alias("dscr_after_e4"),
        ratio_e4(pl.col("cfads_fen"), pl.col("ds_next_fen")).alias("dscr_next_before_e4"),
        ratio_e4(cf_next_after, pl.col("ds_next_fen")).alias("dscr_next_after_e4"),
        below(pl.col("cfads_fen"), "ds_current_fen", pl.col("covenant_e4"))
        .alias("breach_before"),
        below(cf_after, "ds_current_fen", pl.col("covenant_e4")).alias("breach_after"),
        below(pl.col("cfads_fen"), "ds_next_fen", pl.col("covenant_e4"))
        .alias("breach_next_before"),
        below(cf_next_after, "ds_next_fen", pl.col("covenant_e4")).alias("breach_next_after"),
        below(cf_next_after, "ds_next_fen", pl.lit(reage_e4)).alias("_next_below_reage"),
        below(pl.col("cfads_fen"), "ds_next_fen", pl.lit(reage_e4)).alias("_next_base_below_reage"),
    )
    # -- facility-level: revenue-based holdback and receivables borrowing base
    b = b.join(_facility_effects(portfolio, bc, recaptured_to), on="borrower_id", how="left")
    b = b.with_columns(
        pl.col("rbf_shortfall_fen", "borrowing_base_drop_fen", "over_advance_before_fen",
               "over_advance_after_fen").fill_null(0)
    )
    # -- liquidity, day by day
    rec = recovery_dates(windows, config)
    b = b.join(
        bc.filter(pl.col("gross_fen") > 0).select("borrower_id", "incident_id").unique()
        .join(rec, on="incident_id").group_by("borrower_id")
        .agg(pl.col("recovery_date").max()),
        on="borrower_id", how="left",
    )
    b = _liquidity(b, daily, sched, per, config)
    return b.drop("_var", "_half").sort("borrower_id")


def _restricted_loss(
    fac: pl.DataFrame, bc: pl.DataFrame, recaptured_to: pl.DataFrame
) -> pl.DataFrame:
    """Lost sales on the facility's own channels: (facility_id, lost_fen).

    ``channels`` empty = every channel: the borrower's net lost sales. Else
    the gross loss on those channels, less what was recaptured *onto* them
    from them (recapture onto other channels does not flow through the
    facility).
    """
    all_ch = fac.filter(pl.col("channel_list").is_null()).join(
        bc.group_by("borrower_id").agg(pl.col("net_fen").sum().alias("lost_fen")),
        on="borrower_id", how="left",
    ).select("facility_id", pl.col("lost_fen").fill_null(0))
    some = fac.filter(pl.col("channel_list").is_not_null())
    if some.height == 0:
        return all_ch
    ex = some.select("facility_id", "borrower_id", "channel_list",
                     pl.col("channel_list").alias("channel")).explode("channel")
    gross = ex.join(
        bc.group_by("borrower_id", "channel").agg(pl.col("gross_fen").sum()),
        on=["borrower_id", "channel"], how="inner",
    ).group_by("facility_id").agg(pl.col("gross_fen").sum())
    rt = recaptured_to.join(
        bc.select("merchant_id", "borrower_id").unique(), on="merchant_id", how="inner"
    )
    back = ex.join(rt, on=["borrower_id", "channel"], how="inner").filter(
        pl.col("channel_list").list.contains(pl.col("to_channel"))
    ).group_by("facility_id").agg(pl.col("recaptured_fen").sum())
    lost = some.select("facility_id").join(gross, on="facility_id", how="left").join(
        back, on="facility_id", how="left"
    ).select(
        "facility_id",
        (pl.col("gross_fen").fill_null(0) - pl.col("recaptured_fen").fill_null(0))
        .clip(lower_bound=0).alias("lost_fen"),
    )
    return pl.concat([all_ch, lost])


def _facility_effects(
    portfolio: Portfolio, bc: pl.DataFrame, recaptured_to: pl.DataFrame
) -> pl.DataFrame:
    fac = portfolio.facilities.filter(
        pl.col("facility_type").is_in(["revenue_based", "receivables"])
    ).select(
        "facility_id", "borrower_id", "facility_type", "channel_list", "outstanding",
        "holdback_ppm", "advance_ppm", "eligible_receivables",
    )
    schema = {"borrower_id": pl.String(), "rbf_shortfall_fen": pl.Int64(),
              "borrowing_base_drop_fen": pl.Int64(), "over_advance_before_fen": pl.Int64(),
              "over_advance_after_fen": pl.Int64()}
    if fac.height == 0:
        return pl.DataFrame(schema=schema)
    f = fac.join(_restricted_loss(fac, bc, recaptured_to), on="facility_id", how="left")
    f = f.with_columns(pl.col("lost_fen").fill_null(0))
    rbf = pl.col("facility_type") == "revenue_based"
    recv = pl.col("facility_type") == "receivables"
    elig = pl.col("eligible_receivables").fill_null(0)
    elig_after = elig - pl.min_horizontal(elig, pl.col("lost_fen"))
    base_before = mul_ppm(elig, pl.col("advance_ppm").fill_null(0))
    base_after = mul_ppm(elig_after, pl.col("advance_ppm").fill_null(0))
    f = f.with_columns(
        pl.when(rbf).then(pl.min_horizontal(
            mul_ppm(pl.col("lost_fen"), pl.col("holdback_ppm").fill_null(0)), pl.col("outstanding")
        )).otherwise(0).alias("rbf_shortfall_fen"),
        pl.when(recv).then(base_before - base_after).otherwise(0).alias("borrowing_base_drop_fen"),
        pl.when(recv).then((pl.col("outstanding") - base_before).clip(lower_bound=0)).otherwise(0)
        .alias("over_advance_before_fen"),
        pl.when(recv).then((pl.col("outstanding") - base_after).clip(lower_bound=0)).otherwise(0)
        .alias("over_advance_after_fen"),
    )
    return f.group_by("borrower_id").agg(
        pl.col(c).sum() for c in list(schema)[1:]
    )


def _month_share_k(days: list[date]) -> np.ndarray:
    """Cumulative share of a month accrued by the end of each day, in 1/377,580."""
    per_day = np.array([_LCM_DAYS // _days_in_month(d) for d in days], dtype=np.int64)
    return np.cumsum(per_day)


def _days_in_month(d: date) -> int:
    nxt = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (nxt - d.replace(day=1)).days


def _liquidity(
    b: pl.DataFrame, daily: pl.DataFrame, sched: pl.DataFrame, per: Periods,
    config: ImpactConfig,
) -> pl.DataFrame:
    """Daily cash projection of the affected borrowers (NumPy, one row per borrower)."""
    horizon = config.horizon_days
    days = [per.day0 + timedelta(days=i) for i in range(horizon)]
    cols = {
        "liquidity_sources_fen": pl.Int64(), "dues_before_recovery_fen": pl.Int64(),
        "liquidity_gap_fen": pl.Int64(), "first_missed_base_day": pl.Int64(),
        "first_missed_day": pl.Int64(), "first_operational_miss_day": pl.Int64(),
        "operational_gap_fen": pl.Int64(), "bridge_fen": pl.Int64(),
        "grace_needed": pl.Boolean(),
    }
    aff = b.filter(pl.col("lost_net_fen") > 0)
    if aff.height == 0:
        return b.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in cols.items())
    ids = aff["borrower_id"]
    idx = pl.DataFrame({"borrower_id": ids, "_i": np.arange(aff.height)})
    n = aff.height
    # CFADS accrued since day 0: cumulative month shares, rounded half-even once per day.
    k = _month_share_k(days)
    cfads = aff["cfads_fen"].to_numpy().astype(np.int64)
    cum_cfads = np_div_half_even(cfads[:, None] * k[None, :], _LCM_DAYS)
    # Instalments due from day 0 on.
    dues = np.zeros((n, horizon), dtype=np.int64)
    s = sched.filter(
        (pl.col("due_date") >= per.day0) & ~pl.col("paid").fill_null(False)
    ).join(idx, on="borrower_id", how="inner")
    if s.height:
        d_idx = s.select((pl.col("due_date") - pl.lit(per.day0)).dt.total_days()).to_series(
        ).to_numpy()
        keep = d_idx < horizon
        np.add.at(dues, (s["_i"].to_numpy()[keep], d_idx[keep]), s["amount_fen"].to_numpy()[keep])
    cum_dues = np.cumsum(dues, axis=1)
    # Lost cash flow, arriving settlement_lag_days after the sale day.
    lost = np.zeros((n, horizon), dtype=np.int64)
    dl = daily.join(idx, on="borrower_id", how="inner").with_columns(
        ((pl.col("day") - pl.lit(per.day0)).dt.total_days() + config.settlement_lag_days)
        .alias("_d")
    ).filter(pl.col("_d") < horizon)
    if dl.height:
        np.add.at(lost, (dl["_i"].to_numpy(), dl["_d"].to_numpy()), dl["cf_fen"].to_numpy())
    cum_lost = np.cumsum(lost, axis=1)
    liquid = aff["liquid_fen"].to_numpy()[:, None]
    base = liquid + cum_cfads - cum_dues
    stressed = base - cum_lost
    due_day = dues > 0
    miss_base = due_day & (base < 0)
    miss_stress = due_day & (stressed < 0)
    first_base = _first(miss_base)
    first_stress = _first(miss_stress)
    # Recovery index (clipped into the horizon).
    rec = aff.select(
        (pl.col("recovery_date") - pl.lit(per.day0)).dt.total_days().fill_null(0)
    ).to_series().to_numpy().clip(0, horizon - 1)
    rows = np.arange(n)
    gap_rec = np.maximum(0, -stressed[rows, rec])
    # Operational gap: the shortfall the outage caused where the base case was fine.
    op = np.where(base >= 0, np.maximum(0, np.minimum(-stressed, cum_lost)), 0)
    check = due_day.copy()
    check[rows, rec] = True
    op_check = np.where(check, op, 0)
    cols_idx = np.arange(horizon)[None, :]
    before_rec = cols_idx <= rec[:, None]
    first_op = _first((op_check > 0) & due_day)
    grace = ((op_check > 0) & due_day & before_rec).any(axis=1)
    # Bridge: the gap that persists at or after recovery, at the upper band of the loss.
    delta = (aff["lost_cf_high_fen"] - aff["lost_cf_fen"]).to_numpy()[:, None]
    op_high = np.where(base >= 0, np.maximum(0, np.minimum(-(stressed - delta), cum_lost + delta)),
                       0)
    after = check & ~(cols_idx < rec[:, None])
    need = np.where(after, op_high, 0).max(axis=1)
    buf_ppm = int(config.bridge_buffer * PPM)
    bridge = np_div_half_even(need * (PPM + buf_ppm), PPM)
    out = pl.DataFrame({
        "borrower_id": ids,
        "liquidity_sources_fen": (liquid[:, 0] + cum_cfads[rows, rec] - cum_lost[rows, rec]),
        "dues_before_recovery_fen": cum_dues[rows, rec],
        "liquidity_gap_fen": gap_rec,
        "first_missed_base_day": first_base,
        "first_missed_day": first_stress,
        "first_operational_miss_day": first_op,
        "operational_gap_fen": op_check.max(axis=1),
        "bridge_fen": bridge,
        "grace_needed": grace,
    }).with_columns(
        pl.when(pl.col(c) >= 0).then(pl.col(c)).alias(c)
        for c in ("first_missed_base_day", "first_missed_day", "first_operational_miss_day")
    )
    return b.join(out, on="borrower_id", how="left")


def _first(mask: np.ndarray) -> np.ndarray:
    """Index of the first True per row, or -1."""
    any_ = mask.any(axis=1)
    return np.where(any_, mask.argmax(axis=1), -1).astype(np.int64)


def day_text(day0: date, offset: int | None) -> str | None:
    return None if offset is None else (day0 + timedelta(days=int(offset))).isoformat()

