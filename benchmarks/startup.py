"""Start-up cost of the ``tapshield`` command: CPU seconds and peak memory of
``tapshield --help`` and ``tapshield --version``, against a baseline checkout,
in the same run.

Each measurement is a fresh interpreter (``python -m tapshield ...``) whose CPU
time (user + system, all threads) and peak resident memory come from
``getrusage(RUSAGE_CHILDREN)`` / ``wait4``; rounds interleave the two sources
so machine load hits both alike. Usage::

    .venv/bin/python benchmarks/startup.py --baseline /path/to/old/src --rounds 7

``--baseline`` is the ``src`` directory of another checkout (e.g. ``git
worktree add /tmp/base <commit>``); without it only this checkout is measured.
Prints a Markdown table (median CPU s, median peak MB, ratio to the baseline).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
COMMANDS = (("--help",), ("--version",))


def measure(src: Path, args: tuple[str, ...]) -> tuple[float, float]:
    """(CPU seconds, peak RSS in MB) of one ``python -m tapshield ARGS`` run."""
    env = dict(os.environ, PYTHONPATH=str(src), COLUMNS="100")
    proc = subprocess.Popen([sys.executable, "-m", "tapshield", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"tapshield {' '.join(args)} failed from {src}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, help="src/ of the checkout to compare with")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    sources = {"this checkout": SRC}
    if args.baseline is not None:
        sources["baseline"] = args.baseline.resolve()
    got: dict[tuple[str, tuple[str, ...]], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for name, src in sources.items():
            for cmd in COMMANDS:
                got.setdefault((name, cmd), []).append(measure(src, cmd))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
          f"{args.rounds} rounds, medians\n")
    print("| command | source | CPU s | peak MB | CPU ratio to baseline |")
    print("|---|---|---:|---:|---:|")
    for cmd in COMMANDS:
        base = statistics.median(c for c, _ in got.get(("baseline", cmd), [(float("nan"), 0)]))
        for name in sources:
            runs = got[(name, cmd)]
            cpu = statistics.median(c for c, _ in runs)
            mb = statistics.median(m for _, m in runs)
            ratio = f"{cpu / base:.2f}" if "baseline" in sources else "-"
            print(f"| `tapshield {' '.join(cmd)}` | {name} | {cpu:.2f} | {mb:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
