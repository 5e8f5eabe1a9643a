"""Points per second of the generic detector against a previous version, in the same run.

The previous version's two detector modules are taken from git (``--previous``,
default the commit before this round's detector change) into a temporary
package, so both run on the same machine at the same moment over the whole NAB
corpus (each file through a fresh detector, in file order). Compilation is done
before timing; times are the median of ``--rounds``.

    .venv/bin/python benchmarks/detect_speed.py --rounds 3
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nab_corpus import load
from tapshield.detect import GenericDetector

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = "0365743"  # tapshield.detect as it was when this round started


def previous_detector(rev: str, where: Path) -> ModuleType:
    pkg = where / "prev_detect"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("kernels", "detector"):
        src = subprocess.run(["git", "show", f"{rev}:src/tapshield/detect/{name}.py"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
        (pkg / f"{name}.py").write_text(src.replace("tapshield.detect.kernels",
                                                    "prev_detect.kernels"))
    sys.path.insert(0, str(where))
    return importlib.import_module("prev_detect.detector")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--previous", default=PREVIOUS, help="git revision of the previous version")
    args = ap.parse_args(argv)
    files = load()
    n = sum(f.values.size for f in files)
    with tempfile.TemporaryDirectory() as tmp:
        prev = previous_detector(args.previous, Path(tmp))

        def run(cls: Any, nudge: bool) -> None:
            for f in files:
                ts = f.stream_us()
                if nudge:  # the previous version refused timestamps that do not advance
                    ts = np.maximum.accumulate(ts) + np.arange(ts.size, dtype=np.int64)
                cls().update_many(ts, f.values)

        run(GenericDetector, False)  # compile both outside the timings
        run(prev.GenericDetector, True)
        times: dict[str, list[float]] = {"current": [], "previous": []}
        for _ in range(args.rounds):
            for label, cls, nudge in (("current", GenericDetector, False),
                                      ("previous", prev.GenericDetector, True)):
                t0 = time.perf_counter()
                run(cls, nudge)
                times[label].append(time.perf_counter() - t0)
    cur = statistics.median(times["current"])
    old = statistics.median(times["previous"])
    with open("/proc/loadavg") as fh:
        load_avg = " ".join(fh.read().split()[:3])
    print(f"NAB corpus, {n:,} points, median of {args.rounds}: current {cur:.2f} s "
          f"({n / cur:,.0f} points/s), previous ({args.previous}) {old:.2f} s "
          f"({n / old:,.0f} points/s); current / previous speed = {old / cur:.2f}x; "
          f"load average {load_avg}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
