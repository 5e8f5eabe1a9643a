from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tapshield.money import (
    MoneyError,
    decimal_to_fen,
    fen_to_decimal,
    format_fen,
    mul_fen,
    parse_yuan,
    round_yuan,
    to_decimal,
)


def test_half_even_rounding() -> None:
    assert round_yuan(Decimal("0.125")) == Decimal("0.12")
    assert round_yuan(Decimal("0.135")) == Decimal("0.14")
    assert mul_fen(5, "0.5") == 2  # 2.5 fen -> 2
    assert mul_fen(7, "0.5") == 4  # 3.5 fen -> 4
    assert decimal_to_fen(Decimal("12600.005")) == 1260000


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError):
        to_decimal(0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["1.234", "-1", "1e3", "", "abc", "1.", ".5"])
def test_parse_rejects_inexact_text(bad: str) -> None:
    with pytest.raises(MoneyError):
        parse_yuan(bad)


@given(st.integers(min_value=0, max_value=10**15))
def test_fen_text_round_trip(fen: int) -> None:
    assert parse_yuan(format_fen(fen)) == fen
    assert decimal_to_fen(fen_to_decimal(fen)) == fen
