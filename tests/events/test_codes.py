"""One definition of a technical failure, and every other form pinned to it."""

from __future__ import annotations

import numpy as np
import polars as pl

from tapshield.events.codes import (
    APPROVAL_CODES,
    BUSINESS_CODES,
    RISK_CODES,
    TECHNICAL_CODES,
    is_technical,
    technical_expr,
)
from tapshield.events.schema import OUTCOME_DTYPE, OUTCOMES
from tapshield.monitor import _kernels as kn

CODES = [None, "XX", *sorted(APPROVAL_CODES | BUSINESS_CODES | RISK_CODES | TECHNICAL_CODES)]
CASES = [(o, c) for o in OUTCOMES for c in CODES]
"""Every outcome (required by the contract, never null) with every kind of code."""


def test_the_polars_expression_is_the_definition() -> None:
    frame = pl.DataFrame({"outcome": [o for o, _ in CASES],
                          "response_code": [c for _, c in CASES]},
                         schema={"outcome": OUTCOME_DTYPE, "response_code": pl.String})
    got = frame.select(technical_expr())["outcome"].to_list()
    assert got == [is_technical(c, o) for o, c in CASES]


def test_the_monitor_kernel_is_the_definition() -> None:
    """The compiled classifier the monitor runs counts FAILED/TIMEOUT exactly where
    :func:`is_technical` says so (fed as the monitor feeds it)."""
    known = CASES
    outcome = pl.Series([o for o, _ in known], dtype=OUTCOME_DTYPE)
    codes = pl.Series([c for _, c in known], dtype=pl.String)
    tech = codes.is_in(sorted(TECHNICAL_CODES)).fill_null(False).to_numpy()
    risk = codes.is_in(sorted(RISK_CODES)).fill_null(False).to_numpy()
    out = np.empty(len(known), dtype=np.int8)
    kn.classify(outcome.to_physical().to_numpy(), tech, risk, out)
    assert [int(x) in (kn.FAILED, kn.TIMEOUT) for x in out] == [
        is_technical(c, o) for o, c in known]

