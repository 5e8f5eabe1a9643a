"""``tapshield analyze`` end to end against the monitor-only replay of the same file.

Issue 15, item 5: analysis should run at least half as fast as monitoring
alone (``analyze events/s >= 0.5 x monitor events/s``), startup excluded from
the ratio and reported apart.

Data: the simulator's ``demo-day`` scenario (751,628 events with its changes
file; ``--scenario`` / ``--scale`` choose another), written once as Parquet and
as CSV into ``benchmarks/data/analyze-<scenario>-<scale>/``.

Measured in one process, in the same run, ``--rounds`` times, alternating,
for each format (median reported):

* **monitor-only replay** (the baseline): ``EventReader`` (validated,
  500,000-row chunks, as ``analyze`` reads) feeding a fresh
  :class:`~tapshield.monitor.Monitor` with the changes, then ``close()``;
* **analyze end to end**: :func:`tapshield.app.analyze.analyse_file`, what the
  command runs: the same read, the monitor, incidents, diagnosis, incident
  measurement, the SQLite store, and every output file (alerts.jsonl,
  incidents.json, report.html, summary.json) committed into a fresh folder.

Both see warm compiled kernels and imports (one analysis of the file runs
first): **startup** is measured apart, as fresh interpreters: ``tapshield
--version`` and importing the analysis use case, CPU and wall seconds.

Events per second are given per wall second and per CPU second (user + system
of the process, all threads): the 2-core machine is shared, so the CPU
figures are the steadier ones and the ratio is taken on both. Run::

    nice -n 10 .venv/bin/python benchmarks/analyze_vs_monitor.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


def ensure(scenario: str, scale: float) -> dict[str, Path]:
    """The scenario's events as Parquet and CSV (same seed: the same events)."""
    from tapshield.simulate import load_scenario, simulate

    base = DATA / f"analyze-{scenario}-{scale:g}"
    out: dict[str, Path] = {}
    for fmt in ("parquet", "csv"):
        folder = base / fmt
        path = folder / f"events.{fmt}"
        if not path.exists():
            print(f"simulating {scenario} x{scale:g} as {fmt} ...", file=sys.stderr, flush=True)
            sc = load_scenario(scenario)
            if scale != 1.0:
                sc = sc.with_changes(scale=scale)
            simulate(sc, folder, fmt=fmt, labels=False)
        out[fmt] = path
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def monitor_only(path: Path, changes: Path, chunk: int) -> int:
    from tapshield.events.changes import read_changes
    from tapshield.events.read import EventReader
    from tapshield.monitor import Monitor, MonitorConfig

    m = Monitor(MonitorConfig.load(None), changes=read_changes(changes).valid)
    n = 0
    for f in EventReader(path, chunk_rows=chunk):
        n += len(m.process(f))
    return n + len(m.close())


def analyze(path: Path, changes: Path, chunk: int) -> int:
    from tapshield.app.analyze import AnalyzeOptions, analyse_file

    out = Path(tempfile.mkdtemp(prefix="tapshield-avm-"))
    try:
        res = analyse_file(AnalyzeOptions(events=path, out=out / "out", changes=changes,
                                          chunk_rows=chunk, db=f"sqlite:///{out}/t.db"))
        return len(res.result.alerts)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def startup(rounds: int) -> dict[str, Any]:
    """Fresh interpreters: ``tapshield --version`` and importing the analyze use case."""
    import tapshield

    env = dict(os.environ)
    src = str(Path(tapshield.__file__).resolve().parent.parent)  # the tree being measured
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmds = {
        "tapshield --version": [sys.executable, "-m", "tapshield", "--version"],
        "import analyze + kernels": [
            sys.executable, "-c",
            "import tapshield.app.analyze, tapshield.storage, tapshield.diagnose, "
            "tapshield.report; from tapshield.monitor import Monitor; Monitor()"],
    }
    out: dict[str, Any] = {}
    for name, cmd in cmds.items():
        walls, cpus = [], []
        for _ in range(rounds):
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"{name} failed")
            walls.append(time.perf_counter() - t)
            cpus.append(usage.ru_utime + usage.ru_stime)
        out[name] = {"wall_s": round(statistics.median(walls), 2),
                     "cpu_s": round(statistics.median(cpus), 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="demo-day")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--formats", default="parquet,csv")
    ap.add_argument("--chunk-rows", type=int, default=500_000)
    ap.add_argument("--json", type=Path, default=HERE / "results-analyze_vs_monitor.json")
    args = ap.parse_args()
    import tapshield

    paths = ensure(args.scenario, args.scale)
    formats = [f for f in args.formats.split(",") if f]
    load_before = os.getloadavg()[0]
    start = startup(args.rounds)
    result: dict[str, Any] = {
        "scenario": args.scenario, "scale": args.scale, "rounds": args.rounds,
        "chunk_rows": args.chunk_rows, "src": str(Path(tapshield.__file__).parent),
        "startup": start, "formats": {},
    }
    for fmt in formats:
        path = paths[fmt]
        changes = path.parent / "changes.csv"
        from tapshield.events.read import EventReader

        n = sum(f.height for f in EventReader(path, chunk_rows=args.chunk_rows))
        analyze(path, changes, args.chunk_rows)  # warm: kernels, imports, caches
        runs: dict[str, list[tuple[float, float]]] = {"monitor": [], "analyze": []}
        for _ in range(args.rounds):
            w, c, _ = timed(lambda p=path, ch=changes: monitor_only(p, ch, args.chunk_rows))
            runs["monitor"].append((w, c))
            w, c, _ = timed(lambda p=path, ch=changes: analyze(p, ch, args.chunk_rows))
            runs["analyze"].append((w, c))
        row: dict[str, Any] = {"events": n}
        for k, v in runs.items():
            wall = statistics.median(x[0] for x in v)
            cpu = statistics.median(x[1] for x in v)
            row[k] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                      "events_per_s": round(n / wall), "events_per_cpu_s": round(n / cpu),
                      "runs": [[round(a, 2), round(b, 2)] for a, b in v]}
        row["ratio_wall"] = round(row["analyze"]["events_per_s"]
                                  / row["monitor"]["events_per_s"], 3)
        row["ratio_cpu"] = round(row["analyze"]["events_per_cpu_s"]
                                 / row["monitor"]["events_per_cpu_s"], 3)
        result["formats"][fmt] = row
        print(json.dumps({fmt: row}), flush=True)
    result["load_avg_1m_before_after"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
