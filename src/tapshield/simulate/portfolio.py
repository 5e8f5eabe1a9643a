"""A realistic loan book for the merchants seen in simulated events.

Rehearsing the financing impact needs borrowers whose repayments come out of
the simulated merchants' sales. :func:`generate_portfolio` sizes every
facility from its merchants' own sales, so an outage that removes a day of
sales moves the figures the way it would in a real book:

* a share of merchants are borrowers; some borrowers own several stores
  (chains in one region);
* facility mix: term loans, revolving lines, revenue-based advances (holdback
  of daily sales, often only on the lender's own flash-pay channels) and
  receivables facilities (advance rate on eligible receivables);
* contribution margins by industry (the merchant category), CFADS = sales x
  margin less fixed costs, and debt service set from a DSCR drawn around the
  covenant levels lenders use (1.20-1.35x): most borrowers comfortable, a
  quarter close to their covenant, a few already weak (so the "credit, not
  operational" label has cases to find);
* cash, reserves and undrawn lines consistent with the repayment calendar.

Randomness comes from a seeded NumPy generator; every amount is produced as
integer fen and every share as an exact decimal (drawn on a grid), so the
output passes the portfolio contract unchanged. Deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from tapshield.events.read import EventReader
from tapshield.impact.exact import PPM, np_div_half_even
from tapshield.impact.portfolio import PORTFOLIO
from tapshield.timeutil import DEFAULT_TZ

INDUSTRIES: dict[str, tuple[str, float, float]] = {
    # MCC: (industry, contribution margin low, high)
    "5812": ("restaurants", 0.25, 0.40),
    "5814": ("fast_food", 0.25, 0.35),
    "5411": ("supermarkets", 0.12, 0.22),
    "5999": ("misc_retail", 0.25, 0.45),
    "5691": ("clothing", 0.40, 0.60),
    "4121": ("taxis_ride_hailing", 0.20, 0.35),
    "5541": ("fuel", 0.06, 0.12),
    "5311": ("department_stores", 0.25, 0.40),
    "5732": ("electronics", 0.10, 0.20),
}
OTHER = ("other", 0.20, 0.40)

FACILITY_MIX: dict[str, float] = {
    "term": 0.40, "revolving": 0.25, "revenue_based": 0.20, "receivables": 0.15,
}
COVENANTS: dict[str, float] = {"1.20": 0.40, "1.25": 0.25, "1.30": 0.20, "1.35": 0.15}
LENDER_CHANNELS = "nfc;qr"
"""Channels the lender's own flash pay settles through: where a holdback is taken."""

DAYS_PER_MONTH = 30


def merchant_stats(
    events: pl.DataFrame | Iterable[pl.DataFrame] | Path | str, *, tz: str = DEFAULT_TZ
) -> pl.DataFrame:
    """Per merchant: region, category, daily approved sales (fen) and the first local date."""
    if isinstance(events, str | Path):
        batches: Iterable[pl.DataFrame] = EventReader(events)
    elif isinstance(events, pl.DataFrame):
        batches = [events]
    else:
        batches = events
    parts: list[pl.DataFrame] = []
    spans: list[pl.DataFrame] = []
    for b in batches:
        if b.height == 0:
            continue
        ok = pl.col("outcome").cast(pl.String) == "approved"
        parts.append(b.group_by("merchant_id", "region", "merchant_category").agg(
            pl.col("amount_fen").filter(ok).sum().alias("sales_fen"), pl.len().alias("n"),
        ))
        spans.append(b.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")))
    if not parts:
        raise ValueError("no events to build a portfolio from")
    span = pl.concat(spans)
    lo: datetime = span["lo"].min()  # type: ignore[assignment]
    hi: datetime = span["hi"].max()  # type: ignore[assignment]
    days = max(1.0, (hi - lo).total_seconds() / 86_400)
    start = lo.astimezone(ZoneInfo(tz)).date()
    agg = pl.concat(parts).group_by("merchant_id", "region", "merchant_category").agg(
        pl.col("sales_fen").sum(), pl.col("n").sum())
    per = agg.sort("n", descending=True).group_by("merchant_id").agg(
        pl.col("region").first(), pl.col("merchant_category").first(), pl.col("sales_fen").sum())
    # Integer fen per day: rounding a statistic of the simulation, not a payment.
    days_e6 = round(days * 1_000_000)
    return per.with_columns(
        pl.Series("daily_sales_fen", np_div_half_even(
            per["sales_fen"].to_numpy() * 1_000_000, days_e6)),
        pl.lit(start).alias("start_date"),
    ).select("merchant_id", "region", "merchant_category", "daily_sales_fen", "start_date")


def _annuity_factor(rate_bp: int, months: int) -> Decimal:
    """Present value of 1 per month for ``months`` at ``rate_bp``/10,000 a year."""
    with localcontext() as ctx:
        ctx.prec = 34
        i = Decimal(rate_bp) / 10_000 / 12
        if i == 0:
            return Decimal(months)
        return (1 - (1 + i) ** -months) / i


def _pick(rng: np.random.Generator, weights: dict[str, float], n: int) -> np.ndarray:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return np.array(keys, dtype=object)[rng.choice(len(keys), size=n, p=p / p.sum())]


def _grid(rng: np.random.Generator, lo: np.ndarray | float, hi: np.ndarray | float, n: int,
          step_ppm: int = 10_000) -> np.ndarray:
    """Uniform draws on a grid of ``step_ppm`` (default 0.01) as integer ppm."""
    lo_p = np.asarray(np.round(np.asarray(lo) * PPM / step_ppm), dtype=np.int64)
    hi_p = np.asarray(np.round(np.asarray(hi) * PPM / step_ppm), dtype=np.int64)
    return rng.integers(lo_p, hi_p + 1, size=n) * step_ppm


def _mul(fen: np.ndarray, ppm: np.ndarray) -> np.ndarray:
    return np_div_half_even(fen * ppm, PPM)


def _mul1(fen: int, ppm: int) -> int:
    """``fen x ppm / 10^6`` half-even, for one value."""
    return int(np_div_half_even(np.array([fen], dtype=np.int64) * ppm, PPM)[0])


def generate_portfolio(
    events_or_merchant_stats: pl.DataFrame | Iterable[pl.DataFrame] | Path | str,
    *,
    seed: int,
    borrower_share: float = 0.3,
    chain_share: float = 0.1,
    second_facility_share: float = 0.15,
    weak_share: float = 0.08,
    near_covenant_share: float = 0.25,
    as_of: date | None = None,
    tz: str = DEFAULT_TZ,
) -> pl.DataFrame:
    """A canonical portfolio frame (the contract's columns; money in fen).

    ``events_or_merchant_stats``: events (frame, batches or a file), or a
    frame with ``merchant_id, region, merchant_category, daily_sales_fen``
    (as from :func:`merchant_stats`). ``borrower_share`` of merchants borrow;
    ``chain_share`` of borrowers own 2-5 stores in one region;
    ``second_facility_share`` add a revolving line to their main facility;
    ``weak_share`` start below 1.2x DSCR (pre-existing credit weakness);
    ``near_covenant_share`` sit within 0.25x above their covenant.
    """
    src = events_or_merchant_stats
    if isinstance(src, pl.DataFrame) and "daily_sales_fen" in src.columns:
        stats = src
    else:
        stats = merchant_stats(src, tz=tz)
    if as_of is None:
        as_of = (stats["start_date"].min() if "start_date" in stats.columns
                 else date.today())  # type: ignore[assignment]
    assert as_of is not None
    rng = np.random.default_rng(seed)
    stats = stats.filter(pl.col("daily_sales_fen") > 0).sort("merchant_id")
    m = stats.height
    if m == 0:
        raise ValueError("no merchant with sales to lend to")
    # -- borrowers and their merchants
    chosen = np.flatnonzero(rng.random(m) < borrower_share)
    if chosen.size == 0:
        chosen = np.array([int(rng.integers(m))])
    stats_c = stats[chosen]
    nb_raw = stats_c.height
    size = np.where(rng.random(nb_raw) < chain_share, rng.integers(2, 6, nb_raw), 1)
    # Chains: group merchants of the same region consecutively.
    order = stats_c.with_row_index("_i").sort("region", "_i")
    region = order["region"].to_numpy()
    owner = np.empty(nb_raw, dtype=np.int64)
    b, i = 0, 0
    k = 0
    while i < nb_raw:
        j = min(nb_raw, i + int(size[k]))
        # keep a chain inside one region
        other = region[i:j] != region[i]
        same = i + int(np.argmax(other)) if other.any() else j
        owner[i:same] = b
        b, i, k = b + 1, same, k + 1
    ordered = order.with_columns(pl.Series("_b", owner))
    borrowers = ordered.group_by("_b").agg(
        pl.col("merchant_id").sort().str.join(";").alias("merchant_ids"),
        pl.col("region").first(),
        pl.col("merchant_category").sort_by("daily_sales_fen", descending=True).first(),
        pl.col("daily_sales_fen").sum(),
    ).sort("_b")
    n = borrowers.height
    ids = [f"b{v:06d}" for v in range(1, n + 1)]
    mcc = borrowers["merchant_category"].fill_null("").to_list()
    ind = [INDUSTRIES.get(c, OTHER) for c in mcc]
    industry = [x[0] for x in ind]
    margin = _grid(rng, np.array([x[1] for x in ind]), np.array([x[2] for x in ind]), n)
    daily = borrowers["daily_sales_fen"].to_numpy().astype(np.int64)
    monthly = daily * DAYS_PER_MONTH
    # CFADS: contribution less fixed costs (35-70% of the contribution is left).
    cfads = _mul(_mul(monthly, margin), _grid(rng, 0.35, 0.70, n))
    cfads = np.maximum(cfads, 100)
    # Base DSCR: weak / near covenant / comfortable.
    covenant_txt = _pick(rng, COVENANTS, n)
    cov_ppm = np.array([int(Decimal(c) * PPM) for c in covenant_txt], dtype=np.int64)
    u = rng.random(n)
    dscr = np.where(
        u < weak_share, _grid(rng, 0.80, 1.15, n),
        np.where(u < weak_share + near_covenant_share,
                 cov_ppm + _grid(rng, 0.01, 0.25, n),
                 _grid(rng, 1.60, 2.80, n)),
    )
    ds_total = np.maximum(np_div_half_even(cfads * PPM, dscr), 100)
    ftype = _pick(rng, FACILITY_MIX, n)
    second = rng.random(n) < second_facility_share
    frequency = np.where(rng.random(n) < 0.1, "weekly", "monthly")
    next_due = [as_of + timedelta(days=int(d)) for d in rng.integers(1, 29, n)]
    # Share of debt service on the main facility (the rest on the revolving line).
    main_share = np.where(second, _grid(rng, 0.6, 0.85, n), PPM)
    ds_main = _mul(ds_total, main_share)
    ds_second = ds_total - ds_main
    rate_bp = rng.integers(18, 49, n) * 25  # 4.50% .. 12.00% a year, 0.25% steps
    months = rng.integers(6, 49, n)
    factors: dict[tuple[int, int], Decimal] = {}
    rows: list[dict[str, object]] = []
    # Cash on hand: what accumulated since the last payment plus a cushion;
    # weak borrowers hold little.
    days_to_due = np.array([(d - as_of).days for d in next_due])
    accrued = np_div_half_even(cfads * (DAYS_PER_MONTH - days_to_due), DAYS_PER_MONTH)
    cushion = _mul(ds_total, np.where(u < weak_share, _grid(rng, 0.0, 0.1, n),
                                      _grid(rng, 0.2, 1.5, n)))
    cash = np.maximum(accrued + cushion, 0)
    reserve = np.where((ftype == "term") & (rng.random(n) < 0.4),
                       _mul(ds_total, _grid(rng, 1.0, 3.0, n)), 0)
    holdback = _grid(rng, 0.05, 0.20, n)  # cap on the holdback share, less 5 points
    lender_only = rng.random(n) < 0.6
    advance = _grid(rng, 0.70, 0.90, n)
    elig_days = rng.integers(10, 31, n)
    util = _grid(rng, 0.60, 1.02, n)
    for idx in range(n):
        t = str(ftype[idx])
        freq = str(frequency[idx])
        base = {
            "borrower_id": ids[idx], "merchant_ids": borrowers["merchant_ids"][idx],
            "industry": industry[idx], "region": borrowers["region"][idx],
            "contribution_margin": int(margin[idx]), "cfads": int(cfads[idx]),
            "cash": int(cash[idx]), "reserve": int(reserve[idx]),
            "covenant_min_dscr": None if t == "revenue_based" else str(covenant_txt[idx]),
        }
        fac: dict[str, object] = {
            "facility_type": t, "frequency": freq, "next_due_date": next_due[idx],
        }
        ds = int(ds_main[idx])
        if t == "term":
            key = (int(rate_bp[idx]), int(months[idx]))
            if key not in factors:
                factors[key] = _annuity_factor(*key)
            outstanding = int((Decimal(ds) * factors[key]).quantize(Decimal(1), ROUND_HALF_EVEN))
            fac.update(outstanding=outstanding, annual_rate=int(rate_bp[idx]) * 100,
                       remaining_term_months=int(months[idx]))
            if freq == "monthly" and idx % 2 == 0:
                fac["instalment"] = None  # generated from rate and term by the contract
            else:
                fac["instalment"] = _per_period(ds, freq)
        elif t == "revolving":
            limit = ds * int(rng.integers(8, 25))
            outstanding = _mul1(limit, int(util[idx]) * 9 // 10)
            fac.update(outstanding=outstanding, limit=limit, annual_rate=int(rate_bp[idx]) * 100,
                       instalment=_per_period(ds, freq))
        elif t == "revenue_based":
            # the lender's channels carry about three quarters of a merchant's sales
            sales_base = int(monthly[idx]) if not lender_only[idx] else _mul1(
                int(monthly[idx]), 750_000)
            # the holdback is sized so the expected remittance is the drawn debt
            # service (never above the cash flow the DSCR draw allows), on a 0.1% grid
            share = int(ds * PPM // max(sales_base, 1)) // 1_000 * 1_000
            share = min(max(share, 10_000), int(holdback[idx]) + 50_000, 250_000)
            remit = _mul1(sales_base, share)
            outstanding = remit * int(rng.integers(2, 9))
            cap = _mul1(outstanding, int(rng.integers(100, 116)) * 10_000)
            fac.update(outstanding=outstanding, holdback_share=share, repayment_cap=cap,
                       instalment=max(remit, 1), frequency="monthly",
                       channels=LENDER_CHANNELS if lender_only[idx] else None)
        else:  # receivables
            eligible = int(daily[idx]) * int(elig_days[idx])
            bb = _mul1(eligible, int(advance[idx]))
            outstanding = _mul1(bb, int(util[idx]))
            fac.update(outstanding=outstanding, advance_rate=int(advance[idx]),
                       eligible_receivables=eligible, limit=_mul1(bb, 1_200_000),
                       annual_rate=int(rate_bp[idx]) * 100, instalment=None,
                       channels=LENDER_CHANNELS if lender_only[idx] else None)
            if ds > 0:
                fac["instalment"] = _per_period(ds, freq)
        rows.append({**base, **fac})
        if second[idx]:
            limit2 = max(int(ds_second[idx]) * int(rng.integers(8, 25)), 100)
            out2 = _mul1(limit2, int(util[idx]) * 8 // 10)
            rows.append({**base, "facility_type": "revolving",
                         "frequency": "monthly", "next_due_date": next_due[idx],
                         "outstanding": out2, "limit": limit2,
                         "annual_rate": int(rate_bp[idx]) * 100,
                         "instalment": max(int(ds_second[idx]), 1)})
    # Undrawn is a borrower figure: total headroom on all its lines.
    frame = pl.DataFrame(rows, infer_schema_length=None)
    frame = frame.with_columns(
        pl.when(pl.col("facility_type") == "revolving")
        .then(pl.col("limit") - pl.col("outstanding")).otherwise(0).clip(lower_bound=0)
        .sum().over("borrower_id").alias("undrawn")
    )
    frame = frame.with_row_index("_n", offset=1).with_columns(
        pl.format("f{}", pl.col("_n").cast(pl.String).str.zfill(6)).alias("facility_id")
    )
    return _canonical(frame)


def _per_period(monthly_fen: int, frequency: str) -> int:
    if frequency == "weekly":
        return max(1, int((Decimal(monthly_fen) * 12 / 52).quantize(Decimal(1), ROUND_HALF_EVEN)))
    return max(1, monthly_fen)


def _canonical(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns in contract order; shares as exact Decimals; money as Int64 fen."""
    out: list[pl.Series] = []
    for f in PORTFOLIO.fields:
        if f.name not in frame.columns:
            dtype = PORTFOLIO.schema[f.name]
            out.append(pl.Series(f.name, [None] * frame.height, dtype=dtype))
            continue
        col = frame[f.name]
        if f.kind == "decimal" and f.name != "covenant_min_dscr":
            ppm = col.cast(pl.Int64)
            text = pl.Series([None if v is None else str(Decimal(int(v)) / PPM) for v in ppm],
                             dtype=pl.String)
            out.append(text.cast(pl.Decimal(38, f.scale)).alias(f.name))
        elif f.name == "covenant_min_dscr":
            out.append(col.cast(pl.String).cast(pl.Decimal(38, f.scale)).alias(f.name))
        elif f.kind in ("money", "integer"):
            out.append(col.cast(pl.Int64).alias(f.name))
        elif f.kind == "date":
            out.append(col.cast(pl.Date).alias(f.name))
        else:
            out.append(col.cast(pl.String).alias(f.name))
    return pl.DataFrame(out)
