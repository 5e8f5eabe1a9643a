"""Live mode: the simulated stream paced at real or accelerated wall-clock time.

:func:`stream` cuts the event-time-ordered stream into windows of
``batch_seconds`` of event time and releases each window when the wall clock
reaches ``(window end - scenario start) / speed``: at ``speed=1`` a batch a
second, as a production feed would arrive; at ``speed=60`` a simulated hour
takes a minute. ``fast_forward`` releases the first part of the scenario at
once (the baseline a live monitor needs to warm up) before pacing starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import polars as pl

from tapshield.simulate.model import Scenario, load_scenario
from tapshield.simulate.run import generate
from tapshield.timeutil import epoch_us

LIVE_CHUNK_ROWS = 50_000


def stream(
    scenario: Scenario | str | Path,
    *,
    speed: float = 60.0,
    batch_seconds: float = 1.0,
    seed: int | None = None,
    fast_forward: timedelta = timedelta(0),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[pl.DataFrame]:
    """Canonical batches, each covering ``batch_seconds`` of event time, paced.

    ``speed <= 0`` means as fast as possible. Windows without events are not
    yielded (but are waited for). ``clock``/``sleep`` are injectable so a test
    can run a paced stream without waiting.
    """
    if batch_seconds <= 0:
        raise ValueError("batch_seconds must be positive")
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    window_us = int(batch_seconds * 1_000_000)
    sim0 = epoch_us(sc.start_ts)
    paced_from = sim0 + int(fast_forward.total_seconds() * 1_000_000)
    wall0: float | None = None
    carry: pl.DataFrame | None = None

    def release(batch: pl.DataFrame, k: int) -> pl.DataFrame:
        nonlocal wall0
        end_us = sim0 + (k + 1) * window_us
        if speed > 0 and end_us > paced_from:
            if wall0 is None:
                wall0 = clock()
            due = wall0 + (end_us - max(paced_from, sim0)) / 1e6 / speed
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        return batch.drop("_w")

    for frame in generate(sc, seed=seed, chunk_rows=LIVE_CHUNK_ROWS):
        framed = frame.with_columns(
            ((pl.col("ts").dt.epoch("us") - sim0) // window_us).alias("_w"))
        if carry is not None:
            framed = pl.concat([carry, framed])
        parts = framed.partition_by("_w", maintain_order=True)
        carry = parts.pop()
        for part in parts:
            yield release(part, int(part["_w"][0]))
    if carry is not None and carry.height:
        yield release(carry, int(carry["_w"][0]))
