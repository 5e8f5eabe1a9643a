"""Exact money: integer fen inside, decimal yuan at the edges.

Floats never hold money in tapshield. Amounts enter as decimal strings (or
exact Parquet decimals), live as ``int`` fen (1 yuan = 100 fen) in frames, and
leave as decimal strings. Where a computation has to divide (shares, rates,
margins) it does so in :class:`~decimal.Decimal` and rounds once, half-even,
at the point the result becomes money again.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext

FEN_PER_YUAN = 100
_YUAN_QUANTUM = Decimal("0.01")
_AMOUNT_RE = re.compile(r"^\d{1,15}(\.\d{1,2})?$")


class MoneyError(ValueError):
    """An amount that is not an exact, non-negative, 2-decimal yuan value."""


def parse_yuan(text: str) -> int:
    """Parse a decimal yuan string into integer fen, refusing anything inexact.

    Why strict: ``"12.345"`` or ``"1e3"`` from an upstream system means the
    upstream is rounding or formatting money badly; silently rounding it here
    would hide that, so it is rejected instead.
    """
    s = text.strip()
    if not _AMOUNT_RE.match(s):
        raise MoneyError(f"not a non-negative yuan amount with at most 2 decimals: {text!r}")
    whole, _, frac = s.partition(".")
    return int(whole) * FEN_PER_YUAN + int((frac + "00")[:2])


def fen_to_decimal(fen: int) -> Decimal:
    """Integer fen to an exact yuan Decimal with two places."""
    return (Decimal(fen) / FEN_PER_YUAN).quantize(_YUAN_QUANTUM)


def format_fen(fen: int) -> str:
    """Integer fen as the contract's decimal-yuan string (``"1234.50"``)."""
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(int(fen)), FEN_PER_YUAN)
    return f"{sign}{q}.{r:02d}"


def to_decimal(value: Decimal | int | str) -> Decimal:
    """Coerce an exact input to Decimal; floats are refused on purpose."""
    if isinstance(value, float):
        raise TypeError("money must not be a float; pass a str, int or Decimal")
    try:
        return Decimal(value)
    except InvalidOperation as exc:
        raise MoneyError(f"not a decimal number: {value!r}") from exc


def round_yuan(value: Decimal) -> Decimal:
    """Round a Decimal yuan value to the fen, half-even (banker's rounding)."""
    with localcontext() as ctx:
        ctx.prec = 34
        return value.quantize(_YUAN_QUANTUM, rounding=ROUND_HALF_EVEN)


def decimal_to_fen(value: Decimal) -> int:
    """A Decimal yuan amount to integer fen, rounding half-even once."""
    return int(round_yuan(value) * FEN_PER_YUAN)


def mul_fen(fen: int, factor: Decimal | str) -> int:
    """``fen x factor`` rounded half-even to whole fen (e.g. a margin or a share)."""
    with localcontext() as ctx:
        ctx.prec = 34
        product = Decimal(fen) * to_decimal(factor)
        return int(product.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
