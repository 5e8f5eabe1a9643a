"""Replay throughput of the Monitor (metrics + every detector + lifecycle) vs pandas.

Data: the simulator's ``demo-day`` scenario (a day of traffic with an NFC
outage) at ``--scale`` times its normal rate, generated once into
``benchmarks/data/throughput-<scale>/events.parquet``.

Measured in the same run, each ``--repeat`` times (median reported):

* **monitor, in memory**: canonical frames already in memory, fed to
  ``Monitor.process`` in ``--batch-rows`` micro-batches, then ``close()``;
* **monitor, from Parquet**: ``EventReader`` (validated, chunked) feeding the
  Monitor, i.e. reading included;
* **pandas baseline**: the plain approach a dashboard job takes: a pandas
  DataFrame in memory, ``groupby([minute, dimension])`` for each of the
  monitor's single dimensions, counting attempts and technical failures and
  flagging buckets above 3x the dimension value's mean rate. No sequential
  test, no lifecycle, no latency sketch: much less work than the monitor does.

Events per second are wall-clock (and CPU seconds are shown, since this
2-core machine is shared; the load average before and after the runs says how
shared it was). Run:
``.venv/bin/python benchmarks/monitor_throughput.py --scale 10 --repeat 3``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl

from tapshield.events.read import EventReader
from tapshield.monitor import Monitor
from tapshield.simulate import load_scenario, simulate

DATA = Path(__file__).resolve().parent / "data"
DIMS = ("channel", "region", "carrier", "os", "app_version", "device_model", "server_version",
        "merchant_category", "merchant_id")


def ensure(scale: float) -> Path:
    out = DATA / f"throughput-{scale:g}"
    if not (out / "events.parquet").exists():
        print(f"generating demo-day at scale {scale:g} ...", file=sys.stderr)
        sc = load_scenario("demo-day").with_changes(scale=scale)
        simulate(sc, out, labels=False)
    return out / "events.parquet"


def timed(fn: Any) -> tuple[float, float, Any]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def run_memory(frames: list[pl.DataFrame]) -> int:
    m = Monitor()
    n = 0
    for f in frames:
        n += len(m.process(f))
    n += len(m.close())
    return n


def run_parquet(path: Path, chunk: int) -> int:
    m = Monitor()
    n = 0
    for f in EventReader(path, chunk_rows=chunk):
        n += len(m.process(f))
    n += len(m.close())
    return n


def run_pandas(df: pd.DataFrame) -> int:
    minute = df["ts"].dt.floor("min")
    tech = df["outcome"].isin(["failed", "timeout"])
    flagged = 0
    for dim in DIMS:
        g = pd.DataFrame({"minute": minute, "key": df[dim], "tech": tech}).groupby(
            ["minute", "key"], observed=True)["tech"].agg(["size", "sum"])
        rate = g["sum"] / g["size"]
        mean = rate.groupby(level="key").transform("mean")
        flagged += int((rate > 3 * mean).sum())
    return flagged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-rows", type=int, default=200_000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    path = ensure(args.scale)
    frame = EventReader(path).read_all().sort("ts", maintain_order=True)
    n = frame.height
    frames = [frame.slice(i, args.batch_rows) for i in range(0, n, args.batch_rows)]
    pdf = frame.select("ts", "outcome", *DIMS).with_columns(
        pl.col("outcome").cast(pl.String)).to_pandas()
    run_memory(frames[:2])  # compile / warm the caches once
    load_before = os.getloadavg()
    rows: dict[str, list[tuple[float, float]]] = {"memory": [], "parquet": [], "pandas": []}
    alerts = 0
    for _ in range(args.repeat):
        w, c, alerts = timed(lambda: run_memory(frames))
        rows["memory"].append((w, c))
        w, c, _ = timed(lambda: run_parquet(path, args.batch_rows))
        rows["parquet"].append((w, c))
        w, c, _ = timed(lambda: run_pandas(pdf))
        rows["pandas"].append((w, c))
    out: dict[str, Any] = {"events": n, "scale": args.scale, "alert_changes": alerts,
                           "batch_rows": args.batch_rows, "repeat": args.repeat,
                           "load_avg_1m_before_after": [round(load_before[0], 2),
                                                        round(os.getloadavg()[0], 2)]}
    for k, v in rows.items():
        wall = statistics.median(x[0] for x in v)
        cpu = statistics.median(x[1] for x in v)
        out[k] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                  "events_per_s": round(n / wall), "events_per_cpu_s": round(n / cpu)}
    out["ratio_memory_vs_pandas"] = round(out["memory"]["events_per_s"]
                                          / out["pandas"]["events_per_s"], 2)
    out["ratio_parquet_vs_pandas"] = round(out["parquet"]["events_per_s"]
                                           / out["pandas"]["events_per_s"], 2)
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
