"""Localisation quality and speed: tapshield vs re-implemented published methods.

Runs every method on the same cubes in the same process and reports, per data
set, exact-match F1 (counts summed over cases, as in the literature) and the
median / 95th-percentile time per case.

    .venv/bin/python benchmarks/localize_compare.py --dev            # 35 real dev cases
    .venv/bin/python benchmarks/localize_compare.py --synth 40       # 40 cases per family
    .venv/bin/python benchmarks/localize_compare.py --dev --synth 40 --json out.json
    .venv/bin/python benchmarks/localize_compare.py --dev-quiet     # false alarms

``--dev-quiet`` localises the buckets of the dev cases *before* the labelled
one (each with its own four buckets of history, the bucket just before the
labelled one left out): no label says they are quiet, and some hold earlier
flickers of the wave, but a method that names a cause in most of them is
naming noise. Reported: buckets with any cause named, and how many of those
name less than 50 extra failures (the small-slice false alarms).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tapshield.diagnose.baselines import BASELINES
from tapshield.diagnose.cube import Cube, cube_from_table, read_table
from tapshield.diagnose.localizer import LocalizeConfig, localize_cube
from tapshield.diagnose.score import Tally
from tapshield.diagnose.synth import SPECS, family

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "localization-dev"

Method = Callable[[Cube], list[dict[str, str]]]


def methods() -> dict[str, Method]:
    out: dict[str, Method] = {
        "tapshield": lambda c: localize_cube(c).combinations,
        # the method before 2026-12-07 (leaf model only), measured in the same run
        "tapshield-previous": lambda c: localize_cube(
            c, LocalizeConfig(slice_dispersion="off", materiality=0.05)).combinations,
    }
    out.update(BASELINES)
    return out


def dev_cases(root: Path) -> list[tuple[str, Cube, list[dict[str, str]]]]:
    labels = json.loads((root / "labels.json").read_text())
    cases = []
    for lab in labels:
        table = read_table(str(root / lab["file"]), time_col="min")
        dims = [c for c in table.columns if c not in ("min", "value", "cnt")]
        cube = cube_from_table(table, dims, time_col="min", failures="value", total="cnt",
                               at=lab["at"], history=4)
        cases.append((lab["file"], cube, lab["root_causes"]))
    return cases


def quiet_cases(root: Path) -> list[tuple[str, Cube, list[dict[str, str]]]]:
    """Buckets before the labelled one (see the module docstring), truth unknown."""
    labels = json.loads((root / "labels.json").read_text())
    cases = []
    for lab in labels:
        table = read_table(str(root / lab["file"]), time_col="min")
        dims = [c for c in table.columns if c not in ("min", "value", "cnt")]
        buckets = sorted(set(table.get_column("min").to_list()))
        at = buckets.index(lab["at"])
        for j in range(4, at - 1):
            cube = cube_from_table(table, dims, time_col="min", failures="value",
                                   total="cnt", at=buckets[j], history=4)
            cases.append((f"{lab['file']}@{j - at}", cube, []))
    return cases


def run_quiet(cases: list[tuple[str, Cube, list[dict[str, str]]]],
              which: dict[str, Method]) -> dict[str, Any]:
    result: dict[str, Any] = {"buckets": len(cases)}
    for name, fn in which.items():
        named = small = 0
        for _, cube, _ in cases:
            pred = fn(cube)
            if not pred:
                continue
            named += 1
            excess = sum(_excess(cube, c) for c in pred)
            small += excess < 50
        result[name] = {"named": named, "named_under_50_extra": small}
        print(f"quiet    {name:10s} cause named in {named}/{len(cases)} pre-wave buckets "
              f"({small} with under 50 extra failures)", flush=True)
    return result


def _excess(cube: Cube, combo: dict[str, str]) -> float:
    """Failures above the pooled history ratio inside ``combo`` (a plain yardstick)."""
    m = cube.mask(combo)
    ratio = float(cube.hf[m].sum()) / max(float(cube.hn[m].sum()), 1.0)
    return float(cube.f[m].sum()) - ratio * float(cube.n[m].sum())


def synth_cases(name: str, n: int, seed: int) -> list[tuple[str, Cube, list[dict[str, str]]]]:
    out = []
    for case in family(name, n, seed=seed):
        cube = cube_from_table(case.frame, case.dims, time_col="bucket", failures="failures",
                               total="total", at=case.at, history=case.spec.history)
        out.append((f"{name}-{case.seed}", cube, case.truth))
    return out


def run(label: str, cases: list[tuple[str, Cube, list[dict[str, str]]]],
        which: dict[str, Method], verbose: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"cases": len(cases)}
    for name, fn in which.items():
        tally = Tally()
        times = []
        exact = 0
        for case_name, cube, truth in cases:
            t0 = time.perf_counter()
            pred = fn(cube)
            times.append(time.perf_counter() - t0)
            ok = tally.add(pred, truth)
            exact += ok
            if verbose and not ok:
                print(f"  {name:10s} {case_name}: pred {pred} truth {truth}", file=sys.stderr)
        t = np.array(times) * 1000
        result[name] = {"f1": round(tally.f1, 4), "precision": round(tally.precision, 4),
                        "recall": round(tally.recall, 4), "exact_cases": exact,
                        "ms_median": round(float(np.median(t)), 2),
                        "ms_p95": round(float(np.percentile(t, 95)), 2)}
        r = result[name]
        print(f"{label:8s} {name:10s} F1 {r['f1']:.3f} "
              f"(P {r['precision']:.3f} R {r['recall']:.3f}) exact {exact}/{len(cases)}  "
              f"{r['ms_median']:.1f} ms median, "
              f"{r['ms_p95']:.1f} ms p95", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", action="store_true", help="the 35 real development cases")
    ap.add_argument("--dev-dir", type=Path, default=DEV)
    ap.add_argument("--dev-quiet", action="store_true",
                    help="false alarms on the dev cases' pre-wave buckets")
    ap.add_argument("--synth", type=int, default=0, help="cases per synthetic family")
    ap.add_argument("--families", default=",".join(SPECS))
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--methods", default="")
    ap.add_argument("--json", type=Path)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    which = methods()
    if args.methods:
        which = {k: v for k, v in which.items() if k in args.methods.split(",")}
    report: dict[str, Any] = {}
    if args.dev:
        report["dev"] = run("dev", dev_cases(args.dev_dir), which, args.verbose)
    if args.dev_quiet:
        report["dev_quiet"] = run_quiet(quiet_cases(args.dev_dir), which)
    if args.synth:
        for fam in args.families.split(","):
            report[fam] = run(fam, synth_cases(fam, args.synth, args.seed), which, args.verbose)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
