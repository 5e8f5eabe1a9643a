"""The simulator's entry points: ``generate`` batches, ``simulate`` to files."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from tapshield.events.changes import CHANGES
from tapshield.events.write import EventWriter
from tapshield.simulate.faults import change_rows, changes_frame
from tapshield.simulate.generator import LABEL_COLUMNS, Generator, ordered_blocks, to_frame
from tapshield.simulate.model import Scenario, load_scenario
from tapshield.simulate.truth import TruthAccumulator, write_truth
from tapshield.simulate.world import World
from tapshield.timeutil import DEFAULT_TZ

DEFAULT_CHUNK_ROWS = 250_000
FORMATS: dict[str, str] = {
    "parquet": "events.parquet",
    "csv": "events.csv",
    "csv.gz": "events.csv.gz",
    "jsonl": "events.jsonl",
    "jsonl.gz": "events.jsonl.gz",
}


def _scenario(scenario: Scenario | str | Path) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


def _frames(world: World, chunk_rows: int, *, labels: bool,
            on_block: Callable[[Any], None] | None = None,
            gen: Generator | None = None) -> Iterator[pl.DataFrame]:
    gen = gen if gen is not None else Generator(world)
    for arrays, offsets in ordered_blocks(gen, on_block):
        if arrays["ts"].size == 0:
            continue
        frame = to_frame(world, arrays, offsets, labels=labels)
        for start in range(0, frame.height, chunk_rows):
            yield frame.slice(start, chunk_rows)


_DONE = object()


def prefetch(frames: Iterator[pl.DataFrame], depth: int = 2) -> Iterator[pl.DataFrame]:
    """Run ``frames`` in a background thread, ``depth`` batches ahead.

    NumPy, Polars and the Parquet writer release the GIL for their heavy
    work, so the next block is generated while this one is written: on two
    cores the wall time approaches the larger of the two instead of their
    sum. Order (and so determinism) is unchanged; an error in the producer is
    raised here.
    """
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for f in frames:
                while not stop.is_set():
                    try:
                        q.put(f, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    worker = threading.Thread(target=produce, name="simulate-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, pl.DataFrame)
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


def generate(
    scenario: Scenario | str | Path,
    *,
    seed: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pl.DataFrame]:
    """Canonical event batches (exactly ``CANONICAL_SCHEMA``) in event-time order.

    Deterministic for a seed (default: the scenario's), and the concatenated
    stream is the same whatever ``chunk_rows`` is.
    """
    world = World.from_scenario(_scenario(scenario), seed=seed)
    yield from _frames(world, max(1, int(chunk_rows)), labels=False)


def changes_of(scenario: Scenario | str | Path, *, seed: int | None = None) -> pl.DataFrame:
    """The scenario's changes file as the canonical changes frame."""
    world = World.from_scenario(_scenario(scenario), seed=seed)
    return changes_frame(change_rows(world.scenario, world.traffic, world.faults))


@dataclass(slots=True)
class SimulationResult:
    out_dir: Path
    events_path: Path
    changes_path: Path
    truth_path: Path
    labels_path: Path | None
    events: int
    payments: int
    seconds: float
    truth: dict[str, Any] = field(repr=False, default_factory=dict)


def simulate(
    scenario: Scenario | str | Path,
    out_dir: Path | str,
    *,
    fmt: str = "parquet",
    seed: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    labels: bool = True,
    tz: str = DEFAULT_TZ,
    progress: Callable[[int], None] | None = None,
    background: bool = False,
) -> SimulationResult:
    """Write ``events.<fmt>``, ``changes.csv``, ``truth.json`` (and ``labels.parquet``).

    Events stream to disk chunk by chunk, so memory stays bounded whatever the
    scenario's size. ``labels.parquet`` gives, per ``event_id``, the fault that
    changed it, the fraud pattern behind it and whether the lender really
    authorised it: per-event truth for risk models and routers.
    ``background=True`` generates the next batches in a thread while one is
    written (``tapshield simulate --prefetch``): 1.65x faster when a second core
    is free, 12 % slower when the neighbours keep both cores busy (both measured,
    BENCHMARKS.md, simulator section); off by default, since the output is the
    same and a busy shared host is the worse case to be slow on.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    t0 = time.perf_counter()
    sc = _scenario(scenario)
    world = World.from_scenario(sc, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    acc = TruthAccumulator(world)
    events_path = out / FORMATS[fmt]
    labels_path = out / "labels.parquet" if labels else None
    label_writer: pq.ParquetWriter | None = None
    gen = Generator(world)
    with EventWriter(events_path, tz=tz) as writer:
        frames = _frames(world, chunk_rows, labels=labels,
                         on_block=lambda b: acc.add(b.attempts, b.n_taps), gen=gen)
        for frame in prefetch(frames) if background else frames:
            if labels:
                lab = frame.select("event_id", *LABEL_COLUMNS).to_arrow()
                if label_writer is None:
                    assert labels_path is not None
                    label_writer = pq.ParquetWriter(labels_path, lab.schema, compression="zstd")
                label_writer.write_table(lab)
            writer.write(frame.drop(LABEL_COLUMNS, strict=False))
            if progress is not None:
                progress(frame.height)
    if label_writer is not None:
        label_writer.close()
    elif labels_path is not None:
        pl.DataFrame(schema={"event_id": pl.String, "fault_id": pl.String, "fraud": pl.String,
                             "authorised": pl.Boolean}).write_parquet(labels_path)
    changes_path, n_changes = _write_changes(world, out / "changes.csv", tz)
    truth = acc.to_dict(tz)
    truth["changes"] = n_changes
    truth["files"] = {"events": events_path.name, "changes": changes_path.name,
                      "labels": labels_path.name if labels_path else None}
    if gen.churn is not None:
        customers, taps = gen.churn.customers(), gen.churn.taps()
        customers.write_parquet(out / "churn.parquet")
        taps.write_parquet(out / "churn_taps.parquet")
        truth["churn"] = gen.churn.truth(customers, taps)
    truth_path = write_truth(out / "truth.json", truth)
    return SimulationResult(
        out_dir=out, events_path=events_path, changes_path=changes_path, truth_path=truth_path,
        labels_path=labels_path, events=acc.events, payments=acc.payments,
        seconds=time.perf_counter() - t0, truth=truth,
    )


def _write_changes(world: World, path: Path, tz: str) -> tuple[Path, int]:
    rows = change_rows(world.scenario, world.traffic, world.faults, tz)
    changes_frame(rows)  # checks the rows against the contract before publishing them
    pl.DataFrame(rows, schema=dict.fromkeys(CHANGES.names, pl.String)).write_csv(path)
    return path, len(rows)


def write_changes(scenario: Scenario | str | Path, path: Path | str, *, seed: int | None = None,
                  tz: str = DEFAULT_TZ) -> Path:
    """Write the scenario's ``changes.csv`` (the changes contract) on its own."""
    world = World.from_scenario(_scenario(scenario), seed=seed)
    return _write_changes(world, Path(path), tz)[0]


def expected_events(scenario: Scenario | str | Path) -> int:
    """About how many events a scenario makes (for progress bars and sizing)."""
    from tapshield.simulate.clock import minute_rates
    from tapshield.simulate.model import traffic_of

    sc = _scenario(scenario)
    _, rate = minute_rates(sc, traffic_of(sc))
    return int(np.sum(rate) * 1.03)
