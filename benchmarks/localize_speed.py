"""Localisation time on cubes of 10,000 combinations (8 dimensions, 3,000 merchants).

Each method runs on the same cubes in the same process, each cube timed
``--repeat`` times (best of the repeats, so a busy neighbour on the machine
does not count against either), and the median / worst over cubes reported
with the ratio to tapshield. Correctness is reported too: speed bought with
wrong answers is not speed.

    .venv/bin/python benchmarks/localize_speed.py --cases 10 --leaves 10000
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from tapshield.diagnose.baselines import BASELINES
from tapshield.diagnose.cube import cube_from_table
from tapshield.diagnose.localizer import localize_cube
from tapshield.diagnose.score import Tally
from tapshield.diagnose.synth import SPECS, generate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--leaves", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=4000)
    args = ap.parse_args()
    spec = replace(SPECS["wide"], leaves=args.leaves)
    cubes = []
    for i in range(args.cases):
        case = generate(spec, args.seed + i)
        cube = cube_from_table(case.frame, case.dims, time_col="bucket", failures="failures",
                               total="total", at=case.at, history=spec.history)
        cubes.append((cube, case.truth))
    leaves = [c.leaves for c, _ in cubes]
    print(f"{args.cases} cubes, {min(leaves):,}-{max(leaves):,} combinations, "
          f"{len(spec.cards)} dimensions, cardinalities {spec.cards}")
    methods = {"tapshield": lambda c: localize_cube(c).combinations, **BASELINES}
    ref = None
    for name, fn in methods.items():
        times, tally = [], Tally()
        for cube, truth in cubes:
            best = np.inf
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                pred = fn(cube)
                best = min(best, time.perf_counter() - t0)
            times.append(best * 1000)
            tally.add(pred, truth)
        med, worst = float(np.median(times)), float(np.max(times))
        if ref is None:
            ref = med
        print(f"{name:14s} median {med:8.1f} ms  max {worst:8.1f} ms  "
              f"x{med / ref:5.2f} of tapshield  F1 {tally.f1:.3f}", flush=True)


if __name__ == "__main__":
    main()
