"""A/B of the Monitor's replay CPU time between two source trees, in the same run.

Each round runs ``A`` then ``B`` in a fresh subprocess (``PYTHONPATH`` = that
tree's ``src``), each replaying the same events file from memory (200,000-row
batches, ``Monitor.process`` then ``close``) ``--reps`` times after one warm-up
replay (compilation excluded). Alternating rounds share the machine's load
fairly; the medians of all replays are compared. Run, e.g. before and after a
refactor (``git worktree add /tmp/before <commit>``)::

    .venv/bin/python benchmarks/monitor_ab.py --a /tmp/before --b . \\
        --events sim/events.parquet --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, sys, time
from tapshield.events.read import EventReader
from tapshield.monitor import Monitor
frames = list(EventReader(sys.argv[1], chunk_rows=200_000))
def run():
    m = Monitor(); n = 0
    for f in frames: n += len(m.process(f))
    return n + len(m.close())
run()
cpu = []
for _ in range(int(sys.argv[2])):
    c = time.process_time(); n = run(); cpu.append(time.process_time() - c)
print(json.dumps({"events": sum(f.height for f in frames), "cpu_s": cpu, "changes": n}))
"""


def child(tree: Path, events: Path, reps: int) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    out = subprocess.run([sys.executable, "-c", CHILD, str(events), str(reps)], env=env,
                         capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", type=Path, required=True, help="baseline source tree")
    ap.add_argument("--b", type=Path, required=True, help="candidate source tree")
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    cpu: dict[str, list[float]] = {"a": [], "b": []}
    changes: dict[str, object] = {}
    events = 0
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for side, tree in (("a", args.a), ("b", args.b)):
            r = child(tree.resolve(), args.events.resolve(), args.reps)
            cpu[side].extend(r["cpu_s"])  # type: ignore[arg-type]
            changes[side] = r["changes"]
            events = int(r["events"])  # type: ignore[call-overload]
    load.append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in cpu.items()}
    print(json.dumps({
        "events": events, "alert_changes": changes,
        "a_cpu_s": [round(x, 3) for x in cpu["a"]], "b_cpu_s": [round(x, 3) for x in cpu["b"]],
        "a_events_per_cpu_s": round(events / med["a"]),
        "b_events_per_cpu_s": round(events / med["b"]),
        "ratio_b_vs_a": round(med["a"] / med["b"], 3),
        "load_avg_1m_before_after": [round(x, 1) for x in load],
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2))


if __name__ == "__main__":
    main()
