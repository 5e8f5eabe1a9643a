"""Quantify: what an outage does to merchants, borrowers and the loan book.

``assess(events, incidents, portfolio)`` measures lost sales per merchant
against each merchant's own seasonal counterfactual (net of sales recaptured
through other channels), carries them through each borrower's cash flow to
DSCR, liquidity and every facility's repayment, labels the shortfalls the
outage caused as operational (not credit) with recommended actions, and
classifies each incident under EU DORA and the PBOC's grading.
``tapshield.report.impact.write_impact(result, out_dir)`` writes ``impact.json``
and ``impact.html`` (files are an edge: this package only computes).
The model is explained for credit officers in ``docs/impact.md``.
"""

from tapshield.impact.assess import ImpactResult, IncidentImpact, assess, portfolio_totals
from tapshield.impact.config import ImpactConfig
from tapshield.impact.portfolio import (
    PORTFOLIO,
    SCHEDULE,
    Portfolio,
    read_portfolio,
    write_portfolio,
)
from tapshield.impact.regulatory import RegulatoryConfig, load_regulatory
from tapshield.impact.report import to_dict

__all__ = [
    "PORTFOLIO",
    "SCHEDULE",
    "ImpactConfig",
    "ImpactResult",
    "IncidentImpact",
    "Portfolio",
    "RegulatoryConfig",
    "assess",
    "load_regulatory",
    "portfolio_totals",
    "read_portfolio",
    "to_dict",
    "write_portfolio",
]
