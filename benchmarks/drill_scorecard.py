"""The project's end-to-end benchmark: the drill scorecard over the scenario library.

Each scenario is simulated, replayed through the analysis pipeline
(``tapshield.pipeline.analyze_frames``: monitoring, diagnosis, incidents) and
graded against its truth with ``tapshield.drill.score``. As a baseline measured
in the same run, the same events are graded for a *naive monitor*: one global
technical-failure rate per minute, paging when it exceeds the previous hour's
mean by four standard deviations of a binomial (a one-sided z-test at about
3e-5 false-alarm probability per minute), scope "everything", cause unknown.
A pipeline worth running must beat it on detection, delay, scope and cause
without paging more.

    .venv/bin/python benchmarks/drill_scorecard.py            # whole library
    .venv/bin/python benchmarks/drill_scorecard.py demo-day qr-flapping --no-failover
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from tapshield.app.drill import run_drill
from tapshield.drill import Scorecard, score
from tapshield.events.codes import technical_expr
from tapshield.events.read import EventReader
from tapshield.incident import Incident
from tapshield.simulate import scenario_names
from tapshield.simulate.truth import Truth

NAIVE_Z = 4.0


def naive_incidents(events_path: Path) -> list[Incident]:
    """The baseline monitor described in the module docstring."""
    per_min = (
        pl.concat([b.select("ts", technical_expr().alias("bad"))
                   for b in EventReader(events_path)])
        .group_by_dynamic("ts", every="1m").agg(pl.len().alias("n"), pl.col("bad").sum())
        .with_columns((pl.col("bad") / pl.col("n")).alias("rate"))
        .with_columns(pl.col("rate").shift(1).rolling_mean(60).alias("base"))
    )
    out: list[Incident] = []
    open_: Incident | None = None
    for row in per_min.iter_rows(named=True):
        base, n = row["base"], row["n"]
        if base is None or n == 0:
            continue
        sd = math.sqrt(max(base * (1 - base), 1e-6) / n)
        firing = row["rate"] > base + NAIVE_Z * sd
        end = row["ts"] + timedelta(minutes=1)
        if firing and open_ is None:
            open_ = Incident(id=f"naive-{len(out) + 1}", start=row["ts"], detected_at=end,
                             level=2, scope=[], cause="unknown")
            out.append(open_)
        elif not firing and open_ is not None:
            open_.end = row["ts"]
            open_ = None
    return out


def _row(name: str, card: Scorecard, events: int, seconds: float) -> dict[str, Any]:
    s = card.summary()
    return {"scenario": name, "events": events, "seconds": round(seconds, 1), **s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenarios", nargs="*")
    ap.add_argument("--no-failover", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    names = args.scenarios or scenario_names()
    rows: list[dict[str, Any]] = []
    base_rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="drills-"))
    for name in names:
        t0 = time.perf_counter()
        try:
            result = run_drill(name, work / name, failover=not args.no_failover)
        except Exception as exc:  # report the failure in the table, keep going
            rows.append({"scenario": name, "error": f"{type(exc).__name__}: {exc}"[:160]})
            print(f"{name}: FAILED {rows[-1]['error']}", flush=True)
            continue
        rows.append(_row(name, result.scorecard, result.events, time.perf_counter() - t0))
        truth: Truth = result.truth
        naive = score(naive_incidents(work / name / "simulation" / "events.parquet"), truth)
        base_rows.append(_row(name, naive, result.events, 0.0))
        print(json.dumps(rows[-1]), flush=True)
    print()
    print("| scenario | must page | detected (naive) | median delay min (naive) | cause right "
          "| scope right (mean F1) | false pages (naive) | decoys paged | saved by failover |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = {r["scenario"]: r for r in base_rows}
    for r in rows:
        if "error" in r:
            print(f"| {r['scenario']} | error: {r['error']} |||||||")
            continue
        b = base[r["scenario"]]

        def mins(v: float | None) -> str:
            return "-" if v is None else f"{v / 60:.1f}"

        f1 = "-" if r["mean_scope_f1"] is None else f"{r['mean_scope_f1']:.2f}"
        print(f"| {r['scenario']} | {r['must_page_faults']} | {r['detected']} ({b['detected']}) "
              f"| {mins(r['median_delay_s'])} ({mins(b['median_delay_s'])}) "
              f"| {r['cause_right']}/{r['detected']} | {r['scope_right']}/{r['detected']} ({f1}) "
              f"| {r['false_pages']} ({b['false_pages']}) | {r['decoys_paged']}/{r['decoys']} "
              f"| {r['saved_by_failover'] if r['saved_by_failover'] is not None else '-'} |")
    ok = [r for r in rows if "error" not in r]
    if ok:
        mp = sum(r["must_page_faults"] for r in ok)
        det = sum(r["detected"] for r in ok)
        bdet = sum(b["detected"] for b in base_rows)
        delays = [r["median_delay_s"] for r in ok if r["median_delay_s"] is not None]
        print(f"\ntotal: detected {det}/{mp} (naive {bdet}/{mp}); cause right "
              f"{sum(r['cause_right'] for r in ok)}/{det}; scope right "
              f"{sum(r['scope_right'] for r in ok)}/{det}; false pages "
              f"{sum(r['false_pages'] for r in ok)} (naive "
              f"{sum(b['false_pages'] for b in base_rows)}); median of median delays "
              f"{statistics.median(delays) / 60 if delays else float('nan'):.1f} min")
    if args.json:
        args.json.write_text(json.dumps({"pipeline": rows, "naive": base_rows}, indent=2))


if __name__ == "__main__":
    main()
