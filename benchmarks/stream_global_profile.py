"""Where the global stage's CPU goes, without a broker.

The same canonical micro-batches a run through Kafka carries (4 partitions,
Arrow IPC, 4,096 rows) are decoded, merged into event time, deduplicated and
fed to the pipeline's ``Analysis`` in one process; CPU time per step
(``time.process_time``). Against ``benchmarks/stream_throughput.py``'s
global-stage figure (through the broker) this separates tapshield's own work
from the Kafka client's.

    nice -n 10 .venv/bin/python benchmarks/stream_global_profile.py --minutes 150
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402
from tests.stream.synth import outage_events  # noqa: E402

from tapshield.pipeline import Analysis, PipelineConfig  # noqa: E402
from tapshield.stream import wire  # noqa: E402
from tapshield.stream.analysis import CANONICAL, Duplicates  # noqa: E402
from tapshield.stream.merge import Merger  # noqa: E402

PARTS = 4


def partitioned(frame: pl.DataFrame) -> list[pl.DataFrame]:
    f = frame.with_row_index(wire.SEQ).with_columns(
        pl.col(wire.SEQ).cast(pl.Int64),
        (pl.col("user_id").hash(3) % PARTS).cast(pl.Int32).alias(wire.PART))
    return [f.filter(pl.col(wire.PART) == p).with_row_index(wire.OFFSET)
            .with_columns(pl.col(wire.OFFSET).cast(pl.Int64)) for p in range(PARTS)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=int, default=150)
    ap.add_argument("--rate", type=float, default=20.0)
    args = ap.parse_args()
    frame = outage_events(minutes=args.minutes, rate=args.rate)
    warm = Analysis(PipelineConfig())  # compile the monitor's kernels first
    warm.feed(frame.head(20_000))
    warm.finish()
    per = [[wire.encode(c) for c in wire.chunks(p)] for p in partitioned(frame)]
    cpu = dict.fromkeys(("decode", "merge", "dedup", "analysis"), 0.0)
    merger = Merger(PARTS, 60_000_000)
    dup = Duplicates()
    analysis = Analysis(PipelineConfig(lateness=timedelta(0)))

    def timed(step: str, fn, *a):  # type: ignore[no-untyped-def]
        c = time.process_time()
        out = fn(*a)
        cpu[step] += time.process_time() - c
        return out

    def feed(ready: pl.DataFrame | None) -> None:
        if ready is not None:
            kept = timed("dedup", dup, ready)
            timed("analysis", analysis.feed, kept.select(CANONICAL))

    for i in range(max(len(x) for x in per)):
        for p in range(PARTS):
            if i < len(per[p]):
                merger.add(p, timed("decode", wire.decode, per[p][i]))
        feed(timed("merge", merger.release))
    feed(timed("merge", lambda: merger.release(final=True)))
    timed("analysis", analysis.finish)
    total = sum(cpu.values())
    for step, s in cpu.items():
        print(f"{step:9s} {s:6.2f} CPU-s {s / total:5.0%}")
    print(f"{frame.height:,} events: {frame.height / total:,.0f} events per CPU-second")


if __name__ == "__main__":
    main()
