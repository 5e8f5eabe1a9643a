"""ISO 8583 field-39 response codes and what they mean for reliability.

The distinction that matters everywhere in tapshield: a **technical** failure
says the path (network, switch, issuer host, our gateway) is broken and is
evidence against a channel; a **business** decline (insufficient credit, do not
honour, risk) says the path worked and the answer was no. Routers and
detectors that mix the two fail over from healthy channels and page people for
a bad day of credit decisions.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

import polars as pl


class CodeKind(StrEnum):
    APPROVED = "approved"
    BUSINESS = "business"
    RISK = "risk"
    TECHNICAL = "technical"
    UNKNOWN = "unknown"


APPROVAL_CODES: Final = frozenset({"00", "08", "10", "11", "16"})

TECHNICAL_CODES: Final = frozenset(
    {
        "06",  # error
        "19",  # re-enter transaction
        "20",  # invalid response
        "22",  # suspected malfunction
        "28",  # file temporarily not available
        "68",  # response received too late (timeout)
        "90",  # cut-off in progress
        "91",  # issuer or switch inoperative
        "92",  # financial institution or intermediate network cannot be reached
        "94",  # duplicate transmission
        "96",  # system malfunction
        "98",  # exceeds cash limit / network-specific technical
    }
)

RISK_CODES: Final = frozenset(
    {
        "59",  # suspected fraud (acquirer / lender risk engine)
        "34",  # suspected fraud
        "41",  # lost card, pick up
        "43",  # stolen card, pick up
        "63",  # security violation
    }
)

BUSINESS_CODES: Final = frozenset(
    {
        "03", "04", "05", "12", "13", "14", "15", "30", "51", "54", "55", "57",
        "58", "61", "62", "65", "75", "78", "N7",
    }
)

DESCRIPTIONS: Final[dict[str, str]] = {
    "00": "approved",
    "05": "do not honour",
    "06": "error",
    "12": "invalid transaction",
    "13": "invalid amount",
    "14": "invalid card number",
    "34": "suspected fraud",
    "41": "lost card",
    "43": "stolen card",
    "51": "insufficient funds / credit",
    "54": "expired card",
    "55": "incorrect PIN",
    "57": "transaction not permitted to cardholder",
    "59": "suspected fraud (risk decline)",
    "61": "exceeds amount limit",
    "62": "restricted card",
    "65": "exceeds frequency limit",
    "68": "response received too late",
    "91": "issuer or switch inoperative",
    "92": "destination cannot be reached",
    "96": "system malfunction",
}


TECHNICAL_OUTCOMES: Final = frozenset({"failed", "timeout"})
"""Outcomes that are technical failures whatever the code."""


def is_technical(code: str | None, outcome: str | None) -> bool:
    """THE definition of a technical failure: the attempt failed or timed out, or it
    was declined with a technical code (some switches report ``91`` as a decline).

    Every other form follows this one: :func:`technical_expr` (Polars), the
    router's health feed, the tap state machine, and the monitor's compiled
    ``classify`` kernel (pinned to it by ``tests/events/test_codes.py``)."""
    return outcome in TECHNICAL_OUTCOMES or (outcome == "declined" and code in TECHNICAL_CODES)


def classify(code: str | None, outcome: str | None = None) -> CodeKind:
    """Kind of a single response (scalar version of :func:`kind_expr`)."""
    if is_technical(code, outcome):
        return CodeKind.TECHNICAL
    if code is None:
        return CodeKind.APPROVED if outcome == "approved" else CodeKind.UNKNOWN
    if code in APPROVAL_CODES:
        return CodeKind.APPROVED
    if code in TECHNICAL_CODES:
        return CodeKind.TECHNICAL
    if code in RISK_CODES:
        return CodeKind.RISK
    if code in BUSINESS_CODES or outcome == "declined":
        return CodeKind.BUSINESS
    return CodeKind.UNKNOWN


def technical_expr(outcome: str = "outcome", code: str = "response_code") -> pl.Expr:
    """True where an attempt failed for a technical reason (:func:`is_technical`)."""
    o = pl.col(outcome).cast(pl.String)
    return o.is_in(sorted(TECHNICAL_OUTCOMES)) | (
        (o == "declined") & pl.col(code).is_in(sorted(TECHNICAL_CODES))
    ).fill_null(False)


def business_decline_expr(outcome: str = "outcome", code: str = "response_code") -> pl.Expr:
    """True where the path worked and the answer was a business 'no'."""
    return (pl.col(outcome).cast(pl.String) == "declined") & ~technical_expr(outcome, code)


def risk_decline_expr(
    outcome: str = "outcome", code: str = "response_code", decision: str = "risk_decision"
) -> pl.Expr:
    """True where the lender's own risk control said no."""
    declined = pl.col(outcome).cast(pl.String) == "declined"
    by_code = pl.col(code).is_in(sorted(RISK_CODES)).fill_null(False)
    by_decision = (pl.col(decision).cast(pl.String) == "decline").fill_null(False)
    return declined & (by_code | by_decision)
