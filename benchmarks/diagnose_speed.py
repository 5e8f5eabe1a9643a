"""Time of one ``diagnose()`` call on windows of hundreds of thousands of events.

The simulator's scenario is generated at ``--scale`` times its traffic, and
diagnose() is called as the pipeline calls it (30 minutes of baseline,
``--delay`` minutes of wave, nothing about where monitoring fired). In the
same run, on the same window: Adtributor's scope on the same screened cube
(the published baseline, sharing tapshield's preparation), and one Polars
group-by of the window over all nine dimensions (what merely touching every
event costs). Best of ``--repeat`` runs each, so a busy neighbour on the
machine does not count.

    .venv/bin/python benchmarks/diagnose_speed.py --scales 1,4,10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

from tapshield.diagnose import DiagnosisRequest, diagnose
from tapshield.events.changes import read_changes
from tapshield.events.read import read_events
from tapshield.events.schema import DIMENSIONS
from tapshield.simulate import load_scenario, simulate
from tapshield.timeutil import parse_rfc3339

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diagnose_scenarios import adtributor_scope


def best(fn: object, repeat: int) -> tuple[float, object]:
    out, t = None, float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()  # type: ignore[operator]
        t = min(t, time.perf_counter() - t0)
    return t * 1000, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="nfc-regional-outage")
    ap.add_argument("--scales", default="1,4,10")
    ap.add_argument("--delay", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/tapshield-diagnose-bench"))
    args = ap.parse_args()
    for scale in [float(s) for s in args.scales.split(",")]:
        out = args.cache / f"{args.scenario}-x{scale:g}"
        if not (out / "truth.json").exists():
            scenario = load_scenario(args.scenario).with_changes(scale=scale)
            simulate(scenario, out, labels=False)
        events = read_events(out / "events.parquet")
        changes = read_changes(out / "changes.csv").valid
        truth = json.loads((out / "truth.json").read_text())
        fault = next(f for f in truth["faults"] if f["must_page"] and not f["decoy"])
        start = parse_rfc3339(fault["start"])
        now = start + timedelta(minutes=args.delay)
        ts = events.get_column("ts")
        window = events.filter((ts >= start - timedelta(minutes=30)) & (ts <= now))
        req = DiagnosisRequest(events=window, changes=changes,
                               baseline_start=start - timedelta(minutes=30), start=start,
                               now=now, fired_slice={}, signal=fault["signature"]["signal"])
        t_diag, d = best(lambda r=req: diagnose(r), args.repeat)
        t_ad, _ = best(lambda r=req: adtributor_scope(r), args.repeat)
        t_gb, _ = best(lambda w=window: w.group_by(list(DIMENSIONS)).len(), args.repeat)
        print(json.dumps({
            "scenario": args.scenario, "scale": scale, "events": window.height,
            "diagnose_ms": round(t_diag, 1), "adtributor_ms": round(t_ad, 1),
            "groupby_9_dims_ms": round(t_gb, 1),
            "diagnose_vs_adtributor": round(t_diag / t_ad, 2),
            "cause": d.cause, "truth_cause": fault["cause"],  # type: ignore[attr-defined]
            "scope": d.scope, "truth_scope": fault["scope"],  # type: ignore[attr-defined]
        }), flush=True)


if __name__ == "__main__":
    main()
