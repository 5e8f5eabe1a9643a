"""The re-implemented published localisers behave as their papers describe."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tapshield.diagnose.baselines import (
    BASELINES,
    adtributor,
    moving_average,
    riskloc,
    riskloc_paper,
    squeeze,
)
from tapshield.diagnose.cube import Cube, cube_from_table
from tapshield.diagnose.synth import SPECS, generate


def cube_of(seed: int, **over: object) -> tuple[Cube, list[dict[str, str]]]:
    case = generate(replace(SPECS["base"], **over), seed)
    cube = cube_from_table(case.frame, case.dims, time_col="bucket", failures="failures",
                           total="total", at=case.at, history=case.spec.history)
    return cube, case.truth


EASY = {"depth": (1, 1), "delta": (0.5, 0.6), "mean_attempts": 200.0, "heterogeneity": 0.1,
        "min_share": 0.05}


@pytest.mark.parametrize("method", [adtributor, riskloc, squeeze])
def test_each_finds_a_clear_single_dimension_cause(method: object) -> None:
    hits = 0
    for seed in range(5):
        cube, truth = cube_of(300 + seed, **EASY)
        hits += method(cube) == truth  # type: ignore[operator]
    assert hits >= 4


def test_adtributor_answers_in_one_dimension_only() -> None:
    cube, truth = cube_of(41, depth=(2, 2), delta=(0.5, 0.6), mean_attempts=200.0)
    assert len(truth[0]) == 2
    pred = adtributor(cube)
    assert pred and all(len(c) == 1 for c in pred)
    assert len({next(iter(c)) for c in pred}) == 1


def test_adtributor_finds_nothing_without_a_change() -> None:
    cube, _ = cube_of(5, causes=(0, 0), drift=0.0)
    assert len(adtributor(cube)) <= 1


def test_riskloc_paper_cutoff_breaks_on_sparse_counts() -> None:
    """One leaf expecting 0.2 failures and seeing none sets the paper's cutoff to
    the maximum deviation, so nothing is ever abnormal; the noise floor fixes it."""
    cube, truth = cube_of(8, **{**EASY, "mean_attempts": 20.0})
    assert riskloc_paper(cube) == []
    assert riskloc(cube) == truth


def test_forecast_is_the_moving_average_of_history() -> None:
    cube, _ = cube_of(2)
    fc = moving_average(cube)
    assert fc.fail == pytest.approx(cube.hf.mean(axis=1))
    assert fc.total == pytest.approx(cube.hn.mean(axis=1))


def test_registry_names() -> None:
    assert set(BASELINES) == {"adtributor", "riskloc", "riskloc-paper", "squeeze"}
