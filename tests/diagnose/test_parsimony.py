"""Naming a cause at the right depth: uneven faults, siblings, unrelated causes, odd leaves.

Hand-built count tables where the right answer is known by construction. The
failure probabilities are far apart and the slices big, so each answer is
decided by the rule under test, not by noise (every test uses several seeds).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import numpy as np
import polars as pl
import pytest

from tapshield.diagnose import localize
from tapshield.diagnose.baseline import estimate
from tapshield.diagnose.cube import cube_from_table

Rate = Callable[[dict[str, str]], float]
"""Failure probability of a leaf in the anomalous bucket."""

DIMS = {"a": ["a0", "a1", "a2", "a3"], "b": ["b0", "b1", "b2", "b3"], "c": ["c0", "c1", "c2"]}
BASE = 0.02


def table(seed: int, wave: Rate, *, attempts: int = 400, history: int = 4,
          base: Rate | None = None) -> pl.DataFrame:
    """One row per bucket and leaf of ``DIMS``; bucket ``history`` is the wave."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(history + 1):
        for values in product(*DIMS.values()):
            leaf = dict(zip(DIMS, values, strict=True))
            n = int(rng.poisson(attempts))
            p = base(leaf) if base else BASE
            if t == history:
                p = wave(leaf)
            rows.append((t, *values, int(rng.binomial(n, p)), n))
    return pl.DataFrame(rows, schema=["t", *DIMS, "f", "n"], orient="row")


def answer(frame: pl.DataFrame) -> list[dict[str, str]]:
    res = localize(frame, list(DIMS), at=4, time_col="t", failures="f", total="n")
    return sorted(res.combinations, key=lambda c: sorted(c.items()))


@pytest.mark.parametrize("seed", range(3))
def test_uneven_fault_is_named_by_its_slice_not_its_worst_part(seed: int) -> None:
    """a1 fails 30% on b0 and 8% elsewhere: one broken slice (a1), not an "a1 on b0" fault."""
    def wave(leaf: dict[str, str]) -> float:
        if leaf["a"] != "a1":
            return BASE
        return 0.30 if leaf["b"] == "b0" else 0.08
    assert answer(table(seed, wave)) == [{"a": "a1"}]


@pytest.mark.parametrize("seed", range(3))
def test_fault_that_stops_at_its_border_keeps_its_depth(seed: int) -> None:
    """a1 fails on b0 only; the rest of a1 is healthy: the cause is (a1, b0)."""
    def wave(leaf: dict[str, str]) -> float:
        return 0.30 if leaf["a"] == "a1" and leaf["b"] == "b0" else BASE
    assert answer(table(seed, wave)) == [{"a": "a1", "b": "b0"}]


@pytest.mark.parametrize("seed", range(3))
def test_broken_siblings_with_a_small_healthy_rest_are_their_parent(seed: int) -> None:
    """a1 breaks on b0 (40%), b1 (15%), b2 (10%), b3 healthy: one cause a1, not three."""
    rates = {"b0": 0.40, "b1": 0.15, "b2": 0.10, "b3": BASE}

    def wave(leaf: dict[str, str]) -> float:
        return rates[leaf["b"]] if leaf["a"] == "a1" else BASE
    assert answer(table(seed, wave)) == [{"a": "a1"}]


@pytest.mark.parametrize("seed", range(3))
def test_unrelated_second_cause_does_not_widen_the_first(seed: int) -> None:
    """(a1, b0) and (b1, c0) are two faults; a1's rest is broken only where (b1, c0) is.

    Widening (a1, b0) to a1 would explain the second fault's a1 part twice.
    """
    def wave(leaf: dict[str, str]) -> float:
        if leaf["a"] == "a1" and leaf["b"] == "b0":
            return 0.30
        if leaf["b"] == "b1" and leaf["c"] == "c0":
            return 0.25
        return BASE
    assert answer(table(seed, wave)) == [{"a": "a1", "b": "b0"}, {"b": "b1", "c": "c0"}]


def test_chronically_failing_leaf_keeps_its_own_baseline() -> None:
    """A leaf failing ~90% in every bucket is not typical of its main effects.

    Shrunk towards the main effects (2%), each of its history buckets would look
    like a burst, be set aside, and its usual 90% would become a root cause.
    """
    def chronic(leaf: dict[str, str]) -> float:
        return 0.9 if leaf == {"a": "a2", "b": "b3", "c": "c1"} else BASE
    frame = table(5, chronic, base=chronic, attempts=12)
    cube = cube_from_table(frame, list(DIMS), time_col="t", failures="f", total="n", at=4,
                           history=4)
    base = estimate(cube)
    leaf = int(np.flatnonzero(cube.mask({"a": "a2", "b": "b3", "c": "c1"}))[0])
    assert base.p0[leaf] > 0.7
    assert base.own_ratio >= 1
    assert base.set_aside == 0
    assert answer(frame) == []


def test_too_few_attempts_to_show_where_a_fault_stops_name_the_wider_slice() -> None:
    """Five failures in 27 attempts of (a1, b0), none in 21 of (a1, b1): one fault of a1.

    The two names fit indistinguishably; no failure in 21 attempts is what an 18%
    fault produces one time in fifty, so the data do not show the fault stopping
    at b0, and the shorter name is kept (early in a wave, chance must not carve a
    gateway version out of a carrier's fault).
    """
    rows = []
    for t in range(5):
        for a, b in product(["a0", "a1", "a2"], ["b0", "b1"]):
            n = 200 if t < 4 else 30
            f = 1 if t < 4 and (t + len(a) + len(b)) % 2 == 0 else 0
            if t == 4 and a == "a1":
                n, f = (27, 5) if b == "b0" else (21, 0)
            rows.append((t, a, b, f, n))
    frame = pl.DataFrame(rows, schema=["t", "a", "b", "f", "n"], orient="row")
    res = localize(frame, ["a", "b"], at=4, time_col="t", failures="f", total="n")
    assert res.combinations == [{"a": "a1"}]
