"""How fast does the simulator make events, against the I/O floor?

Three timings on the same scenario (quiet-week scaled to ``--events``):

* ``generate``: canonical batches in memory (``tapshield.simulate.generate``);
* ``write floor``: writing exactly those batches to Parquet with the contract's
  ``EventWriter`` (what any producer of these rows must pay at least);
* ``simulate``: the end-to-end command path (generate + truth + write, streaming,
  memory bounded), without ``labels.parquet``, then with the next batches
  generated in a background thread while one is written, then with labels.

The ratio ``simulate / write floor`` is the simulator's own overhead. Wall
time depends on what else runs on the machine, so process CPU time (all
threads) is reported too: on an idle machine wall time is at most that. Run:

    .venv/bin/python benchmarks/simulate_speed.py --events 10000000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
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
                                    "simulate, background thread": [], "simulate + labels": []}
    cpu: dict[str, list[float]] = {k: [] for k in rows}

    def timed(name: str, t0: float, c0: float) -> None:
        rows[name].append(time.perf_counter() - t0)
        cpu[name].append(time.process_time() - c0)

    n = 0
    try:
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            frames = list(generate(sc))
            timed("generate", t0, c0)
            n = sum(f.height for f in frames)
            t0, c0 = time.perf_counter(), time.process_time()
            with EventWriter(work / "floor.parquet") as w:
                for f in frames:
                    w.write(f)
            timed("write floor", t0, c0)
            del frames
            t0, c0 = time.perf_counter(), time.process_time()
            res = simulate(sc, work / "sim", labels=False)
            timed("simulate", t0, c0)
            assert res.events == n
            t0, c0 = time.perf_counter(), time.process_time()
            simulate(sc, work / "sim-1", labels=False, background=True)
            timed("simulate, background thread", t0, c0)
            t0, c0 = time.perf_counter(), time.process_time()
            simulate(sc, work / "sim-labels", labels=True)
            timed("simulate + labels", t0, c0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    mcpu = {k: statistics.median(v) for k, v in cpu.items()}
    load = os.getloadavg()[0]
    print(f"scenario {sc.name} x{sc.scale:.2f}: {n:,} events, {args.repeat} run(s), median; "
          f"load average {load:.1f} on {os.cpu_count()} cores")
    print("| step | wall s | CPU s | events/s (wall) | wall vs write floor |")
    print("|---|---|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.1f} | {mcpu[k]:.1f} | {n / v:,.0f} | {v / med['write floor']:.2f}x |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:,.0f} MB (includes the in-memory batches of the floor measurement)")


if __name__ == "__main__":
    main()
