"""Financing impact of one incident on a large loan book, against a naive loop.

The question (issue 7): how long does ``tapshield.impact.assess`` take for one
incident, a portfolio of 100,000 borrowers and 1 million merchants' history?

Setup (not timed):

* 1,000,000 merchants in 31 provinces (traffic shares of the simulator's
  traffic model), every one taking QR, 75% also NFC, Pareto-sized;
* their seasonal history: hourly sales per (merchant, channel, region) for
  the 10 local hours the incident's counterfactual reads (the impact window
  plus 3 hours of context each side) in each of the 4 weeks before, stored as
  a Parquet table sorted by channel, region and hour (what a sales warehouse
  holds) and read lazily, so only the incident's slice is loaded;
* the events of the incident day for those 10 hours (every merchant, every
  channel): an NFC interface outage in CN-GD and CN-JS from 11:00 to 14:00
  that fails 70% of NFC taps there, 30% of the failed customers paying again
  by QR within minutes;
* a loan book generated for the merchants (``generate_portfolio``): ~100,000
  borrowers, four facility types.

Timed: ``assess(events, [incident], portfolio_frame, history=scan_parquet(...))``
end to end (portfolio validation, the event pass, lost sales with recapture
and bands, borrower stress, labels and actions, DORA and PBOC classification).
Then ``write_impact`` separately.

Baseline, in the same run: the same lost-sales and DSCR computation written
as a per-borrower Python loop (per-merchant filters, Python arithmetic),
timed on a sample of borrowers and extrapolated linearly to the whole book.
Its results on the sample are checked against ``assess`` (same net loss).

Run: ``.venv/bin/python benchmarks/impact_scale.py`` (defaults: 1,000,000
merchants, 100,000 borrowers, 3 repeats, a 300-borrower baseline sample).
Development sizes: ``--merchants 50000 --borrowers 5000``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from tempfile import mkdtemp

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tapshield.events.schema import CANONICAL_SCHEMA
from tapshield.impact import ImpactConfig, assess, read_portfolio
from tapshield.incident import Incident
from tapshield.report.impact import write_impact
from tapshield.simulate.portfolio import generate_portfolio

TZ_OFFSET = timedelta(hours=8)
DAY = date(2026, 11, 27)  # a Friday
OUT_START_LOCAL = datetime(2026, 11, 27, 11, 0)
OUT_END_LOCAL = datetime(2026, 11, 27, 14, 0)
PLOT_HOURS = list(range(8, 18))  # 11..14 window (+1 h tail) and 3 h of context each side
REGIONS = {
    "CN-GD": 11.5, "CN-JS": 8.6, "CN-ZJ": 7.6, "CN-SD": 6.6, "CN-HA": 5.2, "CN-SC": 5.1,
    "CN-HB": 4.3, "CN-HN": 4.1, "CN-FJ": 3.8, "CN-SH": 3.9, "CN-BJ": 3.7, "CN-HE": 4.3,
    "CN-AH": 3.9, "CN-HL": 1.9, "CN-LN": 2.6, "CN-SN": 2.6, "CN-JX": 2.6, "CN-CQ": 2.5,
    "CN-GX": 2.5, "CN-YN": 2.3, "CN-SX": 1.9, "CN-GZ": 1.9, "CN-NM": 1.4, "CN-JL": 1.3,
    "CN-TJ": 1.3, "CN-XJ": 1.2, "CN-GS": 1.0, "CN-HI": 0.7, "CN-NX": 0.3, "CN-QH": 0.3,
    "CN-XZ": 0.2,
}
HOURLY = [0.30, 0.18, 0.11, 0.08, 0.08, 0.13, 0.35, 0.80, 1.10, 1.00, 1.10, 1.60,
          1.85, 1.35, 1.00, 0.95, 1.00, 1.25, 1.75, 1.95, 1.75, 1.35, 0.90, 0.55]
SCOPE_REGIONS = ("CN-GD", "CN-JS")
MCC = ["5812", "5814", "5411", "5999", "5691", "4121", "5541", "5311", "5732"]


def utc(local: datetime) -> datetime:
    return (local - TZ_OFFSET).replace(tzinfo=UTC)


class World:
    def __init__(self, n: int, events_per_merchant: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.n = n
        names = list(REGIONS)
        p = np.array([REGIONS[r] for r in names])
        self.region = np.array(names)[rng.choice(len(names), n, p=p / p.sum())]
        self.nfc = rng.random(n) < 0.75
        size = rng.pareto(1.16, n) + 1.0
        size = np.minimum(size, 200.0)
        # taps per hour at relative rate 1.0, scaled to the target event count
        plot_weight = sum(HOURLY[h] for h in PLOT_HOURS)
        self.rate = size / size.mean() * events_per_merchant / plot_weight
        self.amount = np.exp(rng.normal(np.log(6_000), 0.6, n)).astype(np.int64) + 100
        self.mcc = np.array(MCC)[rng.integers(0, len(MCC), n)]
        self.ids = np.array([f"m{i}" for i in range(n)], dtype=object)

    def stats(self) -> pl.DataFrame:
        daily = (self.rate * sum(HOURLY) * self.amount).astype(np.int64)
        return pl.DataFrame({
            "merchant_id": self.ids, "region": self.region, "merchant_category": self.mcc,
            "daily_sales_fen": daily, "start_date": [DAY - timedelta(days=28)] * self.n,
        })


def write_history(w: World, path: Path, seed: int) -> int:
    """Hourly sales of the 4 previous weeks at the plot hours: one row group per hour slot."""
    rng = np.random.default_rng(seed)
    writer: pq.ParquetWriter | None = None
    rows = 0
    order = None
    for k in range(4, 0, -1):
        for h in PLOT_HOURS:
            hour = datetime(DAY.year, DAY.month, DAY.day, h) - timedelta(days=7 * k)
            parts = []
            for channel, mask, share in (("nfc", w.nfc, 0.55), ("qr", np.ones(w.n, bool), 0.45)):
                lam = w.rate * HOURLY[h] * np.where(w.nfc, share, 1.0 if channel == "qr" else 0)
                cnt = rng.poisson(lam * mask)
                keep = cnt > 0
                sales = cnt[keep] * w.amount[keep]
                parts.append(pa.table({
                    "merchant_id": pa.array(w.ids[keep].tolist(), pa.string()),
                    "channel": pa.array([channel] * int(keep.sum()), pa.string()),
                    "region": pa.array(w.region[keep].tolist(), pa.string()),
                    "hour": pa.array([hour] * int(keep.sum()), pa.timestamp("us")),
                    "sales_fen": pa.array(sales, pa.int64()),
                    "sales_sq": pa.array(cnt[keep] * (w.amount[keep].astype(float) ** 2) * 1.4,
                                         pa.float64()),
                    "taps": pa.array(cnt[keep], pa.uint32()),
                }))
            table = pa.concat_tables(parts)
            order = pl.from_arrow(table).sort("channel", "region").to_arrow()  # type: ignore[union-attr]
            if writer is None:
                writer = pq.ParquetWriter(path, order.schema)
            writer.write_table(order, row_group_size=200_000)
            rows += order.num_rows
    assert writer is not None
    writer.close()
    return rows


def day_events(w: World, seed: int) -> pl.DataFrame:
    """Every tap of the 10 plot hours; the outage fails 70% of NFC in CN-GD/CN-JS."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                         ("ts", "m", "channel", "amount", "user", "fail",
                                          "rescue")}
    in_scope_region = np.isin(w.region, SCOPE_REGIONS)
    for h in PLOT_HOURS:
        for channel, share in (("nfc", 0.55), ("qr", 0.45)):
            lam = w.rate * HOURLY[h] * np.where(w.nfc, share, 1.0 if channel == "qr" else 0.0)
            cnt = rng.poisson(lam)
            m = np.repeat(np.arange(w.n), cnt)
            base = int(utc(datetime(DAY.year, DAY.month, DAY.day, h)).timestamp() * 1e6)
            ts = base + rng.integers(0, 3_600_000_000, m.size)
            amount = np.maximum(100, (w.amount[m] * rng.lognormal(0, 0.3, m.size))
                                .astype(np.int64))
            local_h = h
            outage = (channel == "nfc") & (11 <= local_h < 14)
            fail = outage & in_scope_region[m] & (rng.random(m.size) < 0.7)
            rescue = fail & (rng.random(m.size) < 0.3)
            cols["ts"].append(ts)
            cols["m"].append(m)
            cols["channel"].append(np.full(m.size, channel, dtype=object))
            cols["amount"].append(amount)
            cols["user"].append(rng.integers(0, 5_000_000, m.size))
            cols["fail"].append(np.full(m.size, fail) if np.isscalar(fail) else fail)
            cols["rescue"].append(rescue if not np.isscalar(rescue) else np.zeros(m.size, bool))
    ts = np.concatenate(cols["ts"])
    m = np.concatenate(cols["m"])
    channel = np.concatenate(cols["channel"])
    amount = np.concatenate(cols["amount"])
    user = np.concatenate(cols["user"])
    fail = np.concatenate(cols["fail"]).astype(bool)
    rescue = np.concatenate(cols["rescue"]).astype(bool)
    r_idx = np.flatnonzero(rescue)
    ts = np.concatenate([ts, ts[r_idx] + rng.integers(60_000_000, 600_000_000, r_idx.size)])
    m = np.concatenate([m, m[r_idx]])
    channel = np.concatenate([channel, np.full(r_idx.size, "qr", dtype=object)])
    amount = np.concatenate([amount, amount[r_idx]])
    user = np.concatenate([user, user[r_idx]])
    fail = np.concatenate([fail, np.zeros(r_idx.size, bool)])
    n = ts.size
    frame = pl.DataFrame({
        "_i": np.arange(n), "_u": user,
        "ts": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
        "merchant_id": pl.Series(w.ids[m].tolist(), dtype=pl.String),
        "channel": pl.Series(channel.tolist(), dtype=pl.String),
        "region": pl.Series(w.region[m].tolist(), dtype=pl.String),
        "amount_fen": pl.Series(amount),
        "outcome": pl.Series(np.where(fail, "failed", "approved")).cast(
            CANONICAL_SCHEMA["outcome"]),
        "response_code": pl.Series(np.where(fail, "96", "00")),
        "latency_ms": pl.Series(np.full(n, 250.0)),
        "merchant_category": pl.Series(w.mcc[m].tolist(), dtype=pl.String),
    }).with_columns(
        pl.format("e{}", "_i").alias("event_id"),
        pl.format("p{}", "_i").alias("payment_id"),
        pl.format("u{}", "_u").alias("user_id"),
        pl.format("d{}", "_u").alias("device_id"),
        pl.lit("china_mobile").alias("carrier"), pl.lit("android").alias("os"),
        pl.lit("8.1.0").alias("app_version"), pl.lit("HW-4").alias("device_model"),
        pl.lit("gw-1").alias("server_version"),
        pl.lit("approve").cast(CANONICAL_SCHEMA["risk_decision"]).alias("risk_decision"),
    )
    return frame.select(list(CANONICAL_SCHEMA)).sort("ts")


# -- the naive baseline ---------------------------------------------------------


def naive(sample: list[dict[str, object]], hist: pl.DataFrame, events: pl.DataFrame,
          inc: Incident) -> dict[str, int]:
    """Per borrower, per merchant: filter, loop, sum. Returns net lost fen per borrower."""
    out: dict[str, int] = {}
    window_hours = [datetime(DAY.year, DAY.month, DAY.day, h) for h in range(11, 15)]
    start, end = inc.start, inc.end
    assert end is not None
    for b in sample:
        net_total = 0
        for m in str(b["merchant_ids"]).split(";"):
            mh = hist.filter(pl.col("merchant_id") == m)
            me = events.filter(pl.col("merchant_id") == m)
            rows_h = mh.rows(named=True)
            rows_e = me.rows(named=True)
            for region in SCOPE_REGIONS:
                mine = [r["hour"] for r in rows_h if r["channel"] == "nfc"
                        and r["region"] == region]
                # the slice's history starts the day of its first sale there
                first_day = min(mine).replace(hour=0) if mine else datetime.max
                cf_sum = 0
                actual = 0
                for hour in window_hours:
                    samples = []
                    for k in range(1, 5):
                        slot = hour - timedelta(days=7 * k)
                        if slot < first_day:
                            continue  # the merchant was not trading yet
                        samples.append(sum(r["sales_fen"] for r in rows_h
                                           if r["hour"] == slot and r["channel"] == "nfc"
                                           and r["region"] == region))
                    if len(samples) < 2:
                        continue
                    cf_sum += int((Decimal(sum(samples)) / len(samples)).quantize(
                        Decimal(1), rounding=ROUND_HALF_EVEN))
                    for r in rows_e:
                        local = r["ts"].astimezone(UTC).replace(tzinfo=None) + TZ_OFFSET
                        if (r["channel"] == "nfc" and r["region"] == region
                                and r["outcome"] == "approved"
                                and local.replace(minute=0, second=0, microsecond=0) == hour):
                            actual += r["amount_fen"]
                failed = [r for r in rows_e if r["channel"] == "nfc" and r["region"] == region
                          and r["outcome"] == "failed" and start <= r["ts"] <= end]
                failed_fen = sum(r["amount_fen"] for r in failed)
                recaptured = 0
                for f in failed:
                    for r in rows_e:
                        if (r["user_id"] == f["user_id"] and r["channel"] != "nfc"
                                and r["outcome"] == "approved"
                                and f["ts"] < r["ts"] <= f["ts"] + timedelta(minutes=30)):
                            recaptured += min(r["amount_fen"], f["amount_fen"])
                            break
                if failed:
                    net_total += max(cf_sum - actual, failed_fen) - recaptured
        margin = Decimal(str(b["contribution_margin"]))
        lost_cf = (Decimal(net_total) * margin).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
        _ = (Decimal(int(b["cfads"])) - lost_cf) / max(Decimal(1), Decimal(int(b["cfads"])))  # type: ignore[call-overload]
        out[str(b["borrower_id"])] = net_total
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--merchants", type=int, default=1_000_000)
    ap.add_argument("--borrowers", type=int, default=100_000)
    ap.add_argument("--events-per-merchant", type=float, default=3.0,
                    help="mean taps per merchant over the 10 hours")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sample", type=int, default=300, help="borrowers timed in the baseline")
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    work = args.dir or Path(mkdtemp(prefix="tapshield-impact-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    world = World(args.merchants, args.events_per_merchant, args.seed)
    hist_path = work / f"history-{args.merchants}.parquet"
    hist_rows = write_history(world, hist_path, args.seed + 1)
    events = day_events(world, args.seed + 2)
    share = args.borrowers / args.merchants * 1.257  # chains own several merchants
    book = generate_portfolio(world.stats(), seed=args.seed + 3, borrower_share=min(share, 1.0),
                              as_of=DAY)
    n_borrowers = book["borrower_id"].n_unique()
    inc = Incident(
        id="nfc-south", start=utc(OUT_START_LOCAL), end=utc(OUT_END_LOCAL),
        detected_at=utc(OUT_START_LOCAL) + timedelta(minutes=3), level=1,
        scope=[{"channel": "nfc", "region": r} for r in SCOPE_REGIONS], cause="interface",
    )
    print(f"setup {time.perf_counter() - t:.1f} s: {args.merchants:,} merchants, "
          f"{hist_rows:,} history rows ({hist_path.stat().st_size / 1e6:.0f} MB parquet), "
          f"{events.height:,} events, {n_borrowers:,} borrowers / {book.height:,} facilities")
    cfg = ImpactConfig()
    times, cpus = [], []
    result = None
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        result = assess(events, [inc], book, config=cfg, history=pl.scan_parquet(hist_path))
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    assert result is not None
    t = time.perf_counter()
    write_impact(result, work / "out")
    t_write = time.perf_counter() - t
    tot = result.incidents[0].totals
    print(f"assess: min {min(times):.2f} s, median {statistics.median(times):.2f} s wall "
          f"over {args.repeat} runs (CPU, all threads: min {min(cpus):.2f} s); "
          f"write_impact {t_write:.2f} s; machine load {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    print(f"  net lost {tot['net_fen'] / 100:,.2f} yuan, {tot['failed_merchants']:,} merchants, "
          f"{result.portfolio['totals']['borrowers_affected']:,} borrowers affected, "  # type: ignore[index]
          f"methods {tot['hours_week']:,}/{tot['hours_day']:,}/{tot['hours_attempts']:,}")
    # -- baseline on a sample of affected borrowers ---------------------------------
    assert result.borrowers is not None
    pf = read_portfolio(book)
    affected = result.borrowers.filter(pl.col("lost_net_fen") > 0)
    # a random sample of the whole book: the naive loop cannot know who is affected
    sample_ids = result.borrowers["borrower_id"].sample(
        min(args.sample, result.borrowers.height), seed=args.seed).to_list()
    sample = pf.borrowers.filter(pl.col("borrower_id").is_in(sample_ids)).with_columns(
        pl.col("contribution_margin").cast(pl.String), pl.col("cfads")).to_dicts()
    # the naive loop gets the incident's provinces of the history in memory: generous,
    # it never scans the file itself
    hist = pl.scan_parquet(hist_path).filter(pl.col("region").is_in(SCOPE_REGIONS)).collect()
    t, c = time.perf_counter(), time.process_time()
    nv = naive(sample, hist, events, inc)
    t_naive = time.perf_counter() - t
    c_naive = time.process_time() - c
    per = t_naive / len(sample)
    extrapolated = per * n_borrowers
    got = dict(zip(result.borrowers["borrower_id"], result.borrowers["lost_net_fen"],
                   strict=True))
    agree = sum(1 for k, v in nv.items() if got.get(k, 0) == v)
    for k, v in nv.items():
        if got.get(k, 0) != v:
            print("  differs:", k, "naive", v, "assess", got.get(k, 0))
    n_aff = sum(1 for v in nv.values() if v)
    print(f"naive loop: {t_naive:.1f} s for {len(sample)} random borrowers ({n_aff} affected, "
          f"{per * 1000:.1f} ms each) -> {extrapolated:,.0f} s for {n_borrowers:,} borrowers; "
          f"same net loss as assess on {agree}/{len(sample)}")
    ratio = extrapolated / min(times)
    cpu_ratio = c_naive / len(sample) * n_borrowers / min(cpus)
    print(f"speed-up over the naive loop: {ratio:,.0f}x wall, {cpu_ratio:,.0f}x CPU")
    print(f"| one incident, {args.merchants:,} merchants' history, {n_borrowers:,} borrowers "
          f"({affected.height:,} affected) | {min(times):.2f} s (median "
          f"{statistics.median(times):.2f}; CPU {min(cpus):.2f}) | naive per-borrower loop, "
          f"{len(sample)} sampled, extrapolated: {extrapolated:,.0f} s | {ratio:,.0f}x |")


if __name__ == "__main__":
    main()
