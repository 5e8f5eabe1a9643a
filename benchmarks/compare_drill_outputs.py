"""Re-analyse baseline drills' simulated events with this tree and compare the outputs.

For every ``BASE/<scenario>`` written by ``tapshield drill <scenario> --out
BASE/<scenario> --no-failover`` (with another checkout's code), the drill's
own analysis is repeated with this tree on the same simulated events
(``analyze_frames`` over ``EventReader(events.parquet, chunk_rows=250_000)``,
the drill's changes, the default config) into ``OUT/<scenario>``, and
``alerts.jsonl``, ``incidents.json`` and ``summary.json`` are compared byte for
byte. Used to show a speed change leaves every output as it was::

    PYTHONPATH=src .venv/bin/python benchmarks/compare_drill_outputs.py BASE OUT
"""

from __future__ import annotations

import argparse
import filecmp
import time
from pathlib import Path

from tapshield.events.read import EventReader
from tapshield.pipeline import PipelineConfig, analyze_frames
from tapshield.simulate import World, load_scenario
from tapshield.simulate.faults import change_rows, changes_frame

FILES = ("alerts.jsonl", "incidents.json", "summary.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    bad = 0
    for d in sorted(args.base.iterdir()):
        if not (d / "analysis" / "summary.json").exists():
            continue
        t = time.process_time()
        sc = load_scenario(d.name)
        world = World.from_scenario(sc)
        changes = changes_frame(change_rows(sc, world.traffic, world.faults))
        res = analyze_frames(
            EventReader(d / "simulation" / "events.parquet", chunk_rows=250_000),
            changes=changes, config=PipelineConfig(), out_dir=args.out / d.name)
        same = {f: filecmp.cmp(d / "analysis" / f, args.out / d.name / f, shallow=False)
                for f in FILES}
        bad += not all(same.values())
        print(d.name, "identical" if all(same.values()) else f"DIFFERENT {same}",
              f"incidents={len(res.incidents)} alerts={len(res.alerts)}",
              f"cpu={time.process_time() - t:.1f}s", flush=True)
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
