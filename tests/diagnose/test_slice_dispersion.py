"""Slices whose leaves move together: the localiser's stated error rate must hold.

The leaf model treats leaves as independent; on real traffic a slice's leaves
wander together (a CDN node's whole ratio shifts between minutes), and a slice
within its usual wander must not be named. The dispersion comes from the
history alone (:func:`~tapshield.diagnose.localizer.slice_dispersion`).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tapshield.diagnose.baseline import estimate
from tapshield.diagnose.cube import Cube, cube_from_table
from tapshield.diagnose.localizer import (
    LocalizeConfig,
    localize_cube,
    slice_dispersion,
    slice_drift,
)

WANDER = 0.35
"""Log-sd of each value of dimension ``a``'s ratio between buckets (co-moving leaves)."""


def comoving(seed: int, wander: float = WANDER, last_factor: float | None = None,
             buckets: int = 9) -> Cube:
    """6 x 12 leaves; each ``a`` value's ratio moves by a common factor per bucket."""
    rng = np.random.default_rng(seed)
    traffic = rng.lognormal(np.log(400), 0.8, (6, 12))
    base = (0.03 * np.exp(rng.normal(0, 0.3, 6))[:, None]
            * np.exp(rng.normal(0, 0.3, 12))[None, :])
    rows = []
    for t in range(buckets):
        fac = np.exp(rng.normal(0, wander, 6))
        if t == buckets - 1 and last_factor is not None:
            fac[0] = last_factor
        n = rng.poisson(traffic)
        f = rng.binomial(n, np.clip(base * fac[:, None], 0, 0.9))
        rows += [(t, f"a{i}", f"b{j}", int(f[i, j]), int(n[i, j]))
                 for i in range(6) for j in range(12)]
    frame = pl.DataFrame(rows, schema=["bucket", "a", "b", "failures", "total"], orient="row")
    return cube_from_table(frame, ["a", "b"], time_col="bucket", failures="failures",
                           total="total", at=buckets - 1, history=buckets - 1)


def _dispersions(cube: Cube) -> tuple[float, float]:
    b = estimate(cube)
    return (slice_dispersion(cube, b.p0, b.rho, b.usable),
            slice_drift(cube, b.p0, b.rho, b.usable))


@pytest.mark.parametrize("seed", range(4))
def test_dispersion_is_one_for_independent_leaves_and_large_for_comoving(seed: int) -> None:
    phi, tau2 = _dispersions(comoving(seed, wander=0.0))
    assert phi < 1.3
    assert tau2 < 0.01
    phi, tau2 = _dispersions(comoving(seed))
    assert phi > 2.0
    assert 0.1**2 < tau2 < 0.5**2  # the wander put in is 0.35 (log-sd)


def test_a_slice_within_its_usual_wander_is_not_named() -> None:
    """1.5 sd of its own wander: the leaf model names it, the slice model does not."""
    named_leaf_model = 0
    for seed in range(8):
        cube = comoving(seed, last_factor=float(np.exp(1.5 * WANDER)))
        assert localize_cube(cube).combinations == []
        named_leaf_model += bool(
            localize_cube(cube, LocalizeConfig(slice_dispersion="off")).combinations)
    assert named_leaf_model >= 1


@pytest.mark.parametrize("seed", range(3))
def test_a_real_break_is_still_named(seed: int) -> None:
    cube = comoving(seed, last_factor=6.0)
    assert localize_cube(cube).combinations == [{"a": "a0"}]
    assert localize_cube(cube, LocalizeConfig(slice_dispersion="drift")).combinations == [
        {"a": "a0"}]


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="slice_dispersion"):
        LocalizeConfig(slice_dispersion="sometimes")


def test_one_history_bucket_gives_no_dispersion() -> None:
    cube = comoving(0, buckets=2)
    assert _dispersions(cube) == (1.0, 0.0)


def test_cli_default_materiality_is_the_localisers() -> None:
    """The CLI imports the localiser lazily (startup), so its default is a literal."""
    import inspect

    from tapshield.cli.localize import localize as cli_localize

    default = inspect.signature(cli_localize).parameters["materiality"].default.default
    assert default == LocalizeConfig().materiality
