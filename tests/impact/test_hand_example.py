"""The issue's hand-computed example, exactly, through the real model.

Baseline 100,000 yuan/day, 35% of it through NFC, a 2-day full NFC outage, 40%
of the failed sales recaptured on QR: lost GMV 70,000 x 0.6 = 42,000. At a 30%
contribution margin the lost cash flow is 12,600; monthly CFADS 300,000 against
debt service 240,000 moves the DSCR from 1.25 to 287,400 / 240,000 = 1.1975,
a breach of a 1.20x covenant.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from helpers import T0, Merchant, Outage, incident, regular_events

from tapshield.impact import assess, read_portfolio

OUTAGE_START = T0 + timedelta(days=30)  # 2026-11-05 00:00 +08:00, four clean weeks before
PORTFOLIO = """\
borrower_id,facility_id,merchant_ids,facility_type,region,outstanding,instalment,frequency,\
next_due_date,contribution_margin,cfads,cash,covenant_min_dscr
b1,f1,m1,term,CN-GD,5000000.00,240000.00,monthly,2026-11-28,0.30,300000.00,500000.00,1.20
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    outage = Outage(start=OUTAGE_START, end=OUTAGE_START + timedelta(days=2),
                    recapture_share=(2, 5))  # 2 of every 5 failed taps recaptured: 40%
    merchant = Merchant("m1", taps_per_day={"nfc": 35, "qr": 65}, amount_fen=100_000)
    events = regular_events([merchant], days=33, outages=[outage])
    path: Path = tmp_path_factory.mktemp("hand") / "portfolio.csv"
    path.write_text(PORTFOLIO)
    inc = incident(outage.start, outage.end, [{"channel": "nfc"}])
    return assess(events, [inc], read_portfolio(path))


def test_baseline_is_100000_a_day_35_percent_nfc() -> None:
    events = regular_events([Merchant("m1")], days=7)
    daily = events.group_by(pl.col("ts").dt.convert_time_zone("Asia/Shanghai").dt.date()).agg(
        pl.col("amount_fen").sum(), pl.col("amount_fen").filter(pl.col("channel") == "nfc").sum()
        .alias("nfc"))
    assert set(daily["amount_fen"]) == {10_000_000}
    assert set(daily["nfc"]) == {3_500_000}


def test_lost_gmv_is_42000(result) -> None:  # type: ignore[no-untyped-def]
    tot = result.incidents[0].totals
    assert tot["gross_fen"] == 7_000_000  # 2 days x 35,000
    assert tot["recaptured_fen"] == 2_800_000  # 40%
    assert tot["net_fen"] == 4_200_000  # 42,000.00 yuan
    assert tot["hours_attempts"] == 0 and tot["hours_day"] == 0  # seasonal counterfactual


def test_lost_cash_flow_and_dscr(result) -> None:  # type: ignore[no-untyped-def]
    b = result.borrowers.row(0, named=True)
    assert b["lost_net_fen"] == 4_200_000
    assert b["lost_cf_fen"] == 1_260_000  # 12,600.00 at 30%
    assert b["dscr_before_e4"] == 12_500
    assert b["dscr_after_e4"] == 11_975
    assert b["breach_before"] is False and b["breach_after"] is True
    assert b["status"] == "operational_stress"
    assert b["label"] == "operational"
    assert [a["action"] for a in b["actions"]] == ["covenant_waiver"]
    assert "1.1975" in b["actions"][0]["reason"]
