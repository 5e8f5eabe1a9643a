"""Event F1 of the generic detector against simple baselines, on labelled data it was not tuned on.

Event F1 (:mod:`tapshield.detect.events`): a labelled window is detected if an
alert falls inside it; false alarms are the pages Alertmanager would send with
its default timers for the alerts outside every window (a page when an alert
starts firing, at most one per 5 minutes; a reminder every 4 hours while it keeps
firing). Every detector is scored by the same function in the same run. The
former count (episodes of any length, which scores "alert on every row" above
every real detector) is printed beside it, for comparison only.

Data, each split reported on its own:

* **simulator, held-out seeds** (``sim_series.HELD_OUT_SEEDS``): per-minute
  approval rates and latency of 4-day scenarios with random faults, labelled by
  the simulator's truth; the detector was never run on them while it was designed;
* **simulator, development seeds**: the two seeds used to write this benchmark;
* **NAB held-out categories** (``realTweets``, ``realTraffic``) and **NAB
  development categories** (the ones the detector was designed on), windows as
  labels, NAB's probationary period not scored.

Detectors:

* **tapshield** ``tapshield detect``'s ``alert`` column (the one fixed configuration);
* **rolling robust z-score** ``|x - median| / (1.4826 MAD)`` over the previous
  ``W`` points, alert where it exceeds ``k``; **EWMA** z-score with weight ``lam``,
  alert where it exceeds ``k``. Each baseline is reported at a textbook default
  (robust z: ``W = 288, k = 3.5``; EWMA: ``lam = 0.1, k = 3``) and at the best of a
  grid **tuned on the labels of the very split it is scored on** (optimistic for the
  baselines: the ratio against it is the strict one): ``k`` from 3 to 24, alerting
  on every point above ``k`` or with tapshield's own rule (one alert, then none for
  50 points);
* **always**: an alert on every row, the degenerate reference.

    .venv/bin/python benchmarks/detect_events.py --json benchmarks/results-detect-events.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nab_baselines import ewma_z, rolling_robust_z
from nab_corpus import HELD_OUT, load
from sim_series import DEV_SEEDS, HELD_OUT_SEEDS, scenario_series
from tapshield.detect import DEFAULT_CONFIG, GenericDetector, nab
from tapshield.detect.events import EPISODE_GAP, EventCounts, event_counts, page_rows
from tapshield.detect.kernels import alert_rule

Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]

KS = (3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0, 24.0)
RULES = ("every point", "refractory")  # alert on every point above k, or tapshield's rule
ROBUST_GRID = [(w, k, r) for w in (60, 288, 1440) for k in KS for r in RULES]
EWMA_GRID = [(lam, k, r) for lam in (0.03, 0.1, 0.3) for k in KS for r in RULES]
ROBUST_DEFAULT = (288, 3.5, "every point")
EWMA_DEFAULT = (0.1, 3.0, "every point")


@dataclass(frozen=True)
class Item:
    name: str
    ts_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    windows: list[tuple[int, int]]
    skip: int

    @property
    def pages(self) -> tuple[int, int]:
        """Alertmanager's timers in rows of this series' median sampling step."""
        d = np.diff(self.ts_us)
        return page_rows(float(np.median(d[d > 0])))


def nab_items(categories_in: bool, cats: Sequence[str]) -> list[Item]:
    out = []
    for f in load():
        if (f.category in cats) != categories_in or not f.windows:
            continue
        out.append(Item(f.name, f.stream_us(), f.values, f.windows,
                        nab.probationary_length(f.values.size)))
    return out


def sim_items(seeds: Sequence[int]) -> list[Item]:
    out = []
    for seed in seeds:
        for s in scenario_series(seed):
            out.append(Item(s.name, s.ts_us, s.values, s.windows, 0))
    return out


def total(items: Sequence[Item], alerts: Callable[[Item], Bools], *,
          legacy: bool = False) -> EventCounts:
    """Summed counts; ``legacy``: false alarms as the former episodes (comparison only)."""
    acc = EventCounts()
    for it in items:
        group, repeat = it.pages
        acc = acc + event_counts(alerts(it), it.windows, skip=it.skip, group_rows=group,
                                 repeat_rows=repeat,
                                 episode_gap=EPISODE_GAP if legacy else None)
    return acc


def row(c: EventCounts) -> dict[str, float]:
    return {"f1": c.f1, "precision": c.precision, "recall": c.recall,
            "detected": c.detected, "missed": c.missed, "false_pages": c.false_pages}


def thresholded(z: Floats, k: float, rule: str) -> Bools:
    """A baseline's alerts: every point above ``k``, or tapshield's one-per-episode rule."""
    if rule == "every point":
        return z > k
    # p-values 0 above k, 1 below: the same rule as the detector's alert column
    return alert_rule(np.where(z > k, 0.0, 1.0), 0.5, DEFAULT_CONFIG.refractory)


def evaluate(items: Sequence[Item]) -> dict[str, Any]:
    t0 = time.perf_counter()
    verdicts = {it.name: GenericDetector(DEFAULT_CONFIG).update_many(it.ts_us, it.values)
                for it in items}
    ours = {k: v.alert for k, v in verdicts.items()}
    seconds = time.perf_counter() - t0
    points = sum(it.values.size for it in items)
    res: dict[str, Any] = {"series": len(items), "points": points,
                           "windows": sum(len(it.windows) for it in items),
                           "tapshield points/s": points / seconds}
    res["tapshield"] = row(total(items, lambda it: ours[it.name]))
    # The same detector's alert rule at other false-alarm rates (from its p-values,
    # not re-run): how a rate chosen on one split does on the others.
    res["tapshield by alpha"] = {
        f"{a:g}": row(total(items, lambda it, a=a: alert_rule(
            verdicts[it.name].p_value, a, DEFAULT_CONFIG.refractory)))
        for a in (3e-4, 1e-3, 3e-3, 1e-2)}

    rz = {w: {it.name: rolling_robust_z(it.values, w) for it in items}
          for w in sorted({key[0] for key in ROBUST_GRID})}
    ew = {lam: {it.name: ewma_z(it.values, lam) for it in items}
          for lam in sorted({key[0] for key in EWMA_GRID})}
    robust = {(w, k, r): total(items, lambda it, w=w, k=k, r=r: thresholded(rz[w][it.name], k, r))
              for w, k, r in ROBUST_GRID}
    ewma = {(lam, k, r): total(items, lambda it, lam=lam, k=k, r=r: thresholded(
        ew[lam][it.name], k, r)) for lam, k, r in EWMA_GRID}
    best_r = max(robust, key=lambda key: robust[key].f1)
    best_e = max(ewma, key=lambda key: ewma[key].f1)
    res["robust z default"] = {**row(robust[ROBUST_DEFAULT]), "params": ROBUST_DEFAULT}
    res["robust z best (tuned on labels)"] = {**row(robust[best_r]), "params": best_r}
    res["ewma default"] = {**row(ewma[EWMA_DEFAULT]), "params": EWMA_DEFAULT}
    res["ewma best (tuned on labels)"] = {**row(ewma[best_e]), "params": best_e}
    best_baseline = max(robust[best_r].f1, ewma[best_e].f1)
    res["ratio vs best tuned baseline"] = (res["tapshield"]["f1"] / best_baseline
                                           if best_baseline else None)
    # the former count (episodes of any length), for comparison only: the best
    # baselines under it, and "alert on every row", which it scores above them all
    legacy_r = {key: total(items, lambda it, key=key: thresholded(rz[key[0]][it.name], key[1],
                                                                  key[2]), legacy=True)
                for key in ROBUST_GRID if key[2] == "every point"}
    legacy_e = {key: total(items, lambda it, key=key: thresholded(ew[key[0]][it.name], key[1],
                                                                  key[2]), legacy=True)
                for key in EWMA_GRID if key[2] == "every point"}
    lr = max(legacy_r, key=lambda key: legacy_r[key].f1)
    le = max(legacy_e, key=lambda key: legacy_e[key].f1)
    res["former count"] = {
        "tapshield": row(total(items, lambda it: ours[it.name], legacy=True)),
        "robust z best": {**row(legacy_r[lr]), "params": lr},
        "ewma best": {**row(legacy_e[le]), "params": le},
        "always": row(total(items, lambda it: np.ones(it.values.size, dtype=bool),
                            legacy=True)),
    }
    res["always"] = row(total(items, lambda it: np.ones(it.values.size, dtype=bool)))
    best_default = max(robust[ROBUST_DEFAULT].f1, ewma[EWMA_DEFAULT].f1)
    res["ratio vs best default baseline"] = (res["tapshield"]["f1"] / best_default
                                             if best_default else None)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--skip-sim", action="store_true", help="NAB only (fast)")
    args = ap.parse_args(argv)

    warm = np.sin(np.arange(600.0))
    GenericDetector().update_many(np.arange(600) * 60_000_000, warm)
    rolling_robust_z(warm, 60)
    ewma_z(warm, 0.1)

    splits: dict[str, list[Item]] = {
        "NAB development categories": nab_items(False, HELD_OUT),
        "NAB held-out categories": nab_items(True, HELD_OUT),
    }
    if not args.skip_sim:
        splits["simulator development seeds"] = sim_items(DEV_SEEDS)
        splits["simulator held-out seeds"] = sim_items(HELD_OUT_SEEDS)
    results: dict[str, Any] = {}
    print("| data | detector | event F1 | precision | recall | detected / windows | "
          "false pages | per 1000 points |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, items in splits.items():
        r = evaluate(items)
        results[name] = r
        for det in ("tapshield", "robust z default", "robust z best (tuned on labels)",
                    "ewma default", "ewma best (tuned on labels)", "always"):
            d = r[det]
            label = det + (f" {d['params']}" if "params" in d else "")
            print(f"| {name} | {label} | {d['f1']:.3f} | {d['precision']:.3f} | "
                  f"{d['recall']:.3f} | {d['detected']} / {d['detected'] + d['missed']} | "
                  f"{d['false_pages']} | {1000 * d['false_pages'] / r['points']:.2f} |")
        print(f"| {name} | tapshield F1 by alpha: " + ", ".join(
            f"{a}: {v['f1']:.3f}" for a, v in r["tapshield by alpha"].items()) + " | | | | | | |")
        fc = r["former count"]
        print(f"| {name} | former count (episodes), F1: tapshield {fc['tapshield']['f1']:.3f}, "
              f"robust z best {fc['robust z best']['params']} {fc['robust z best']['f1']:.3f}, "
              f"EWMA best {fc['ewma best']['params']} {fc['ewma best']['f1']:.3f}, "
              f"always {fc['always']['f1']:.3f} | | | | | | |")
        ratio = r["ratio vs best tuned baseline"]
        print(f"| {name} | **tapshield / best tuned baseline** | "
              f"{ratio:.2f}x | | | | | |" if ratio is not None else "")
    with open("/proc/loadavg") as fh:
        results["loadavg"] = fh.read().split()[:3]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
