"""Integer half-even arithmetic agrees with Decimal, the reference a credit officer uses."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from tapshield.impact.exact import (
    div_half_even,
    e4_text,
    mul_ppm,
    np_div_half_even,
    ppm_text,
    ratio_e4,
    ratio_text,
)

amounts = st.integers(min_value=-(10**12), max_value=10**12)
dens = st.integers(min_value=1, max_value=10**9)
ppms = st.integers(min_value=0, max_value=10**6)


def ref_div(n: int, d: int) -> int:
    return int((Decimal(n) / Decimal(d)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@given(st.lists(st.tuples(amounts, dens), min_size=1, max_size=40))
def test_div_half_even_matches_decimal(pairs: list[tuple[int, int]]) -> None:
    df = pl.DataFrame({"n": [p[0] for p in pairs], "d": [p[1] for p in pairs]})
    got = df.select(div_half_even(pl.col("n"), pl.col("d")))["n"].to_list()
    assert got == [ref_div(n, d) for n, d in pairs]
    np_got = np_div_half_even(df["n"].to_numpy(), df["d"].to_numpy()).tolist()
    assert np_got == got


@given(st.lists(st.tuples(st.integers(0, 10**12), ppms), min_size=1, max_size=40))
def test_mul_ppm_rounds_once_half_even(pairs: list[tuple[int, int]]) -> None:
    df = pl.DataFrame({"f": [p[0] for p in pairs], "p": [p[1] for p in pairs]})
    got = df.select(mul_ppm(pl.col("f"), pl.col("p")))["f"].to_list()
    want = [
        int((Decimal(f) * Decimal(p) / 10**6).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        for f, p in pairs
    ]
    assert got == want


def test_half_even_ties_go_to_even() -> None:
    df = pl.DataFrame({"n": [5, 15, 25, -5, -15, 35], "d": [10] * 6})
    assert df.select(div_half_even(pl.col("n"), pl.col("d")))["n"].to_list() == [0, 2, 2, 0, -2, 4]


def test_ratios_are_quoted_exactly() -> None:
    df = pl.DataFrame({"a": [28_740_000, 1], "b": [24_000_000, 0]})
    assert df.select(ratio_e4(pl.col("a"), pl.col("b")))["a"].to_list() == [11975, None]
    assert e4_text(11975) == "1.1975"
    assert e4_text(-5) == "-0.0005"
    assert ratio_text(287_400, 240_000) == "1.1975"
    assert ratio_text(1, 0) is None
    assert ppm_text(300_000) == "0.3"
    assert np.array_equal(np_div_half_even(np.array([7]), 2), np.array([4]))
