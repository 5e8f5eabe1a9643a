"""Read + validate throughput of the event contract, against raw readers, in one run.

Measures, on the same file and in the same run (interleaved rounds, each
measurement in a fresh subprocess so peak memory is its own):

* ``pandas.read_csv`` (no validation),
* ``polars.read_csv`` (Polars' own raw read, no validation),
* tapshield's validated CSV reader (every contract rule, exact fen, UTC
  timestamps, duplicate ids, rejects),
* ``polars.read_parquet`` (raw) and tapshield's validated Parquet reader.

Events come from the simulator when it is installed (realistic contract
events), else from a vectorised synthetic generator of the same layout.
Usage::

    .venv/bin/python benchmarks/read_validate.py --rows 10000000 --rounds 3

Prints a Markdown table (events/s, ratio to the raw Polars read and to pandas,
CPU seconds of all the process's threads, peak memory over the data's
in-memory Arrow size) and writes JSON next to it with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"

REGIONS = [f"CN-{c}" for c in (
    "GD", "JS", "ZJ", "SD", "HA", "SC", "HB", "HN", "FJ", "AH", "HE", "SH", "BJ", "SN", "LN",
    "JX", "CQ", "YN", "GX", "SX", "GZ", "TJ", "JL", "NM", "HL", "XJ", "GS", "HI", "NX", "QH", "XZ",
)]


def synthetic(n: int, seed: int = 7) -> pl.DataFrame:
    """Contract events with realistic cardinalities (vectorised, seconds for 10M)."""
    rng = np.random.default_rng(seed)
    t0 = 1_795_737_600_000
    ts = np.sort(t0 + rng.integers(0, 86_400_000, n))
    outcome = rng.choice(["approved", "declined", "failed", "timeout"], n, p=[.95, .03, .015, .005])
    code = np.select(
        [outcome == "approved", outcome == "declined", outcome == "failed"],
        ["00", "51", "96"], "68",
    )
    ids = pl.int_range(0, n, eager=True).cast(pl.String)
    return pl.DataFrame({
        "event_id": "e" + ids,
        "ts": pl.Series(ts).cast(pl.Datetime("ms", "UTC")).dt.convert_time_zone("Asia/Shanghai")
        .dt.strftime("%Y-%m-%dT%H:%M:%S%.3f%:z"),
        "payment_id": "p" + ids,
        "user_id": "u" + pl.Series(rng.integers(0, 2_000_000, n)).cast(pl.String),
        "device_id": "d" + pl.Series(rng.integers(0, 2_500_000, n)).cast(pl.String),
        "merchant_id": "m" + pl.Series(rng.zipf(1.3, n) % 200_000).cast(pl.String),
        "channel": rng.choice(["nfc", "qr", "debit_card", "wallet"], n, p=[.6, .25, .1, .05]),
        "region": rng.choice(REGIONS, n),
        "amount": (pl.Series(rng.integers(1, 500_000, n)) // 100).cast(pl.String) + "."
        + (pl.Series(rng.integers(0, 100, n))).cast(pl.String).str.zfill(2),
        "outcome": outcome,
        "response_code": code,
        "latency_ms": np.round(rng.lognormal(5.3, 0.45, n), 1),
        "carrier": rng.choice(["china_mobile", "china_unicom", "china_telecom"], n),
        "os": rng.choice(["android", "ios", "harmonyos"], n),
        "app_version": rng.choice(["8.1.0", "8.0.1", "7.9.4", "8.1.2"], n),
        "device_model": rng.choice([f"M-{i}" for i in range(80)], n),
        "server_version": rng.choice(["gw-2026.11.1", "gw-2026.10.2"], n),
        "merchant_category": rng.choice(["5999", "5812", "5691", "5411", "4121"], n),
        "risk_decision": rng.choice(["approve", "review", "decline"], n, p=[.97, .02, .01]),
    })


def ensure_data(rows: int) -> tuple[Path, Path, Path, str]:
    DATA.mkdir(parents=True, exist_ok=True)
    csv = DATA / f"events-{rows}.csv"
    quoted = DATA / f"events-{rows}-quoted.csv"
    parquet = DATA / f"events-{rows}.parquet"
    source = "synthetic"
    if not quoted.exists():
        # Every field quoted: each piece goes through tapshield's own tokenizer
        # (the path for quoted fields, CR line ends and broken records).
        synthetic(rows).write_csv(quoted, quote_style="always")
    if not (csv.exists() and parquet.exists()):
        from tapshield.events.read import EventReader
        from tapshield.events.write import EventWriter

        frame = synthetic(rows)
        frame.write_csv(csv)
        with EventWriter(parquet) as w:
            for batch in EventReader(csv):
                w.write(batch)
    return csv, parquet, quoted, source


SNIPPETS = {
    "pandas.read_csv": "import pandas as pd; n = len(pd.read_csv(P))",
    "polars.read_csv (raw)": "import polars as pl; n = pl.read_csv(P).height",
    "tapshield CSV (validated)": "r = EventReader(P); n = sum(b.height for b in r)",
    "polars.read_csv (raw), all fields quoted":
        "import polars as pl; n = pl.read_csv(P).height",
    "tapshield CSV (validated), all fields quoted":
        "r = EventReader(P); n = sum(b.height for b in r)",
    "polars.read_parquet (raw)": "import polars as pl; n = pl.read_parquet(P).height",
    "tapshield Parquet (validated)": "r = EventReader(P); n = sum(b.height for b in r)",
}

# Memory comes from /proc/self/status: VmHWM is this process image's own peak
# (getrusage's ru_maxrss would carry the parent's peak across exec on Linux).
RUNNER = textwrap.dedent("""
    import json, resource, sys, time
    def vm(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1])
    def cpu():
        u = resource.getrusage(resource.RUSAGE_SELF)
        return u.ru_utime + u.ru_stime
    P = sys.argv[1]
    import polars, numpy  # imports are not part of the measurement
    {warm}
    base = vm("VmRSS:")
    c = cpu()
    t = time.perf_counter()
    {body}
    dt = time.perf_counter() - t
    dc = cpu() - c
    if "r" in dir() and hasattr(r, "stats"):
        assert r.stats.rejected == 0, r.stats.errors
    peak = vm("VmHWM:")
    print(json.dumps({{"rows": n, "seconds": dt, "cpu_seconds": dc, "peak_kb": peak,
                      "base_kb": base}}))
""")
# CPU time is every thread of the process (user + system): on a shared machine
# wall time moves with other people's jobs, CPU time much less.

# Imports (and loading the compiled parsing kernels from their cache) happen
# before the clock starts, for every reader alike.
_TS_WARM = (
    "from tapshield.events.read import EventReader; "
    "from tapshield.events.validate import validate_frame; "
    "from tapshield.parsing import parse_timestamps; import polars as _pl; "
    "parse_timestamps(_pl.Series(['2026-01-01T00:00:00Z'])); "
    # the CSV kernels too (loading a compiled kernel from its cache is not reading)
    "import numpy as _np; from tapshield.csvgrammar import Tokens, polars_safe; "
    "polars_safe(_np.frombuffer(b'\"a\",b\\r\\n', _np.uint8)); "
    "Tokens(b'\"a\",b\\n', _np.arange(2), 2, True)"
)
WARM = {
    "pandas.read_csv": "import pandas",
    "tapshield CSV (validated)": _TS_WARM,
    "tapshield CSV (validated), all fields quoted": _TS_WARM,
    "tapshield Parquet (validated)": _TS_WARM,
}


def measure(name: str, path: Path) -> dict[str, float]:
    code = RUNNER.format(warm=WARM.get(name, "pass"), body=SNIPPETS[name])
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-pandas", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    csv, parquet, quoted, source = ensure_data(args.rows)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    arrow_bytes = pl.read_parquet(parquet).estimated_size()
    from tapshield.events.read import EventReader

    canonical_bytes = EventReader(parquet).read_all().estimated_size()
    names = [n for n in SNIPPETS if not (args.skip_pandas and n.startswith("pandas"))]
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names:
            path = parquet if "parquet" in n.lower() else quoted if "quoted" in n else csv
            runs[n].append(measure(n, path))
            print(f"round {r + 1}: {n}: {runs[n][-1]['seconds']:.2f}s wall, "
                  f"{runs[n][-1]['cpu_seconds']:.2f}s CPU", file=sys.stderr)

    def eps(n: str) -> float:
        return args.rows / statistics.median(x["seconds"] for x in runs[n])

    results = {
        n: {
            "median_seconds": statistics.median(x["seconds"] for x in runs[n]),
            "median_cpu_seconds": statistics.median(x["cpu_seconds"] for x in runs[n]),
            "events_per_second": eps(n),
            # MiB (VmHWM is in KiB); compared with arrow_bytes in bytes below
            "peak_extra_mb": max(x["peak_kb"] - x["base_kb"] for x in runs[n]) / 1024,
        }
        for n in names
    }
    raw_csv = eps("polars.read_csv (raw)")
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    pandas = eps("pandas.read_csv") if "pandas.read_csv" in results else float("nan")
    print(f"\n{args.rows:,} events ({source}); CSV {csv.stat().st_size / 1e6:,.0f} MB, "
          f"Parquet {parquet.stat().st_size / 1e6:,.0f} MB; in-memory Arrow size "
          f"{arrow_bytes / 1e6:,.0f} MB (wire), {canonical_bytes / 1e6:,.0f} MB (canonical); "
          f"median of {args.rounds} rounds\n")
    print("| reader | events/s | vs raw Polars CSV | vs pandas | CPU s (all threads) "
          "| peak memory / Arrow size |")
    print("|---|---:|---:|---:|---:|---:|")
    for n, r in results.items():
        print(f"| {n} | {r['events_per_second']:,.0f} | {r['events_per_second'] / raw_csv:.2f}x "
              f"| {r['events_per_second'] / pandas:.2f}x | {r['median_cpu_seconds']:.2f} | "
              f"{r['peak_extra_mb'] * 2**20 / arrow_bytes:.2f}x |")
    quoted_ratio = eps("tapshield CSV (validated), all fields quoted") / eps(
        "polars.read_csv (raw), all fields quoted"
    )
    print(f"\nvalidated CSV / raw Polars CSV: {eps('tapshield CSV (validated)') / raw_csv:.2f}x "
          f"(all fields quoted: {quoted_ratio:.2f}x of Polars' raw read of the quoted file); "
          f"load average {' '.join(load_before)} before, {' '.join(load_after)} after")
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "source": source,
                                         "arrow_bytes": arrow_bytes, "results": results,
                                         "load_average": [load_before, load_after]},
                                        indent=2))


if __name__ == "__main__":
    main()
