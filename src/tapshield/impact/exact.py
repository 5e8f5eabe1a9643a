"""Exact integer arithmetic for money and ratios, vectorised.

Financing figures are integer fen; shares, margins and rates are decimals held
as integer parts per million (``ppm``: 0.30 -> 300_000). Every division rounds
once, half-even, at the point the result becomes money (or a quoted ratio)
again, which is what a credit officer recomputing a figure by hand expects.
Intermediate products are formed in ``Int128`` so a large amount times a
scaled ratio cannot overflow silently.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import numpy as np
import polars as pl

PPM = 1_000_000
"""Scale of shares, margins and rates inside frames (6 decimal places)."""

RATIO_SCALE = 10_000
"""DSCR and other quoted ratios: 4 decimal places (1.1975)."""


def div_half_even(num: pl.Expr, den: pl.Expr | int) -> pl.Expr:
    """``num / den`` rounded half-even to an integer (``den`` > 0).

    Works on any integer dtype, including negative numerators: floor division
    gives ``num = q*den + r`` with ``0 <= r < den``; the fraction ``r/den`` is
    compared with one half exactly, in integers.
    """
    d = den if isinstance(den, pl.Expr) else pl.lit(den, dtype=pl.Int128)
    n = num.cast(pl.Int128)
    d = d.cast(pl.Int128)
    q = n.floordiv(d)
    twice_r = (n - q * d) * 2
    up = (
        pl.when(twice_r > d).then(1)
        .when((twice_r == d) & (q % 2 != 0)).then(1)
        .otherwise(0)
    )
    return (q + up).cast(pl.Int64)


def mul_ppm(fen: pl.Expr, ppm: pl.Expr | int) -> pl.Expr:
    """``fen x share`` (share in ppm) rounded half-even to whole fen."""
    p = ppm if isinstance(ppm, pl.Expr) else pl.lit(ppm)
    return div_half_even(fen.cast(pl.Int128) * p.cast(pl.Int128), PPM)


def ratio_e4(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """``num / den`` as an integer in 1/10,000 (half-even); null when ``den <= 0``."""
    return pl.when(den > 0).then(div_half_even(num.cast(pl.Int128) * RATIO_SCALE, den))


def decimal_to_ppm(col: str) -> pl.Expr:
    """A ``pl.Decimal`` share column as integer ppm (exact for scale <= 6)."""
    return (pl.col(col).cast(pl.Decimal(38, 6)) * PPM).cast(pl.Int64)


def np_div_half_even(num: np.ndarray, den: np.ndarray | int) -> np.ndarray:
    """NumPy twin of :func:`div_half_even` for int64 arrays (``den`` > 0)."""
    n = np.asarray(num, dtype=np.int64)
    d = np.asarray(den, dtype=np.int64)
    q = np.floor_divide(n, d)
    twice_r = (n - q * d) * 2
    up = (twice_r > d) | ((twice_r == d) & (q % 2 != 0))
    out: np.ndarray = q + up.astype(np.int64)
    return out


def ppm_text(ppm: int) -> str:
    """Integer ppm as a plain decimal string (``300000`` -> ``"0.3"``)."""
    return _strip(Decimal(int(ppm)) / PPM)


def e4_text(value: int | None) -> str | None:
    """A ratio held in 1/10,000 as ``"1.1975"`` (always four places)."""
    if value is None:
        return None
    sign = "-" if value < 0 else ""
    q, r = divmod(abs(int(value)), RATIO_SCALE)
    return f"{sign}{q}.{r:04d}"


def ratio_text(num: int, den: int, places: int = 4) -> str | None:
    """``num / den`` as a half-even decimal string, or ``None`` when ``den`` is 0."""
    if den == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 40
        value = (Decimal(num) / Decimal(den)).quantize(
            Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN
        )
    return str(value)


def _strip(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return text if text != "-0" else "0"
