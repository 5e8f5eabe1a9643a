"""How fast does the simulator make events, against the I/O floor?

Three timings on the same scenario (quiet-week scaled to ``--events``):

* ``generate``: canonical batches in memory (``tapshield.simulate.generate``);
* ``write floor``: writing exactly those batches to Parquet with the contract's
  ``EventWriter`` (what any producer of these rows must pay at least);
* ``simulate``: the end-to-end command path (generate + truth + write, streaming,
  memory bounded), without ``labels.parquet`` and then with it.

The ratio ``simulate / write floor`` is the simulator's own overhead. Run:

    .venv/bin/python benchmarks/simulate_speed.py --events 10000000 --repeat 3
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tapshield.events.write import EventWriter
from tapshield.simulate import expected_events, generate, load_scenario, simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--scenario", default="quiet-week")
    args = ap.parse_args()
    base = load_scenario(args.scenario)
    sc = base.with_changes(scale=base.scale * args.events / expected_events(base))
    work = Path(tempfile.mkdtemp(prefix="simspeed-"))
    rows: dict[str, list[float]] = {"generate": [], "write floor": [], "simulate": [],
                                    "simulate + labels": []}
    n = 0
    try:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            frames = list(generate(sc))
            rows["generate"].append(time.perf_counter() - t0)
            n = sum(f.height for f in frames)
            t0 = time.perf_counter()
            with EventWriter(work / "floor.parquet") as w:
                for f in frames:
                    w.write(f)
            rows["write floor"].append(time.perf_counter() - t0)
            del frames
            t0 = time.perf_counter()
            res = simulate(sc, work / "sim", labels=False)
            rows["simulate"].append(time.perf_counter() - t0)
            assert res.events == n
            t0 = time.perf_counter()
            simulate(sc, work / "sim-labels", labels=True)
            rows["simulate + labels"].append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"scenario {sc.name} x{sc.scale:.2f}: {n:,} events, {args.repeat} run(s), median")
    print("| step | seconds | events/s | vs write floor |")
    print("|---|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.1f} | {n / v:,.0f} | {v / med['write floor']:.2f}x |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:,.0f} MB (includes the in-memory batches of the floor measurement)")


if __name__ == "__main__":
    main()
