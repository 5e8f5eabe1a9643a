"""Borrower stress and the operational label, on hand-computed cases.

The incident starts 2026-11-05 10:00 +08:00 and ends at 11:00; with the one-hour
recovery tail and the T+1 settlement lag the recovery date is 2026-11-06.
CFADS accrues evenly through November: 300,000 a month is 10,000 a day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from helpers import incident

from tapshield.impact.actions import label_borrowers
from tapshield.impact.config import ImpactConfig
from tapshield.impact.portfolio import read_portfolio
from tapshield.impact.sales import _EMPTY_CELLS
from tapshield.impact.stress import periods_for, stress_borrowers
from tapshield.impact.windows import resolve_windows

START = datetime(2026, 11, 5, 2, 0, tzinfo=UTC)  # 10:00 +08:00
CFG = ImpactConfig()
WINDOWS = resolve_windows([incident(START, START + timedelta(hours=1), [{"channel": "nfc"}])],
                          CFG, None)
HEADER = ("borrower_id,facility_id,merchant_ids,facility_type,region,outstanding,instalment,"
          "next_due_date,contribution_margin,cfads,cash,covenant_min_dscr,holdback_share,"
          "channels,advance_rate,eligible_receivables,limit,repayment_cap")


def cell(merchant: str, net: int, *, day: date = date(2026, 11, 5), channel: str = "nfc",
         recaptured: int = 0) -> dict[str, object]:
    gross = net + recaptured
    return {"incident_id": WINDOWS[0].id, "merchant_id": merchant, "channel": channel,
            "region": "CN-GD", "day": day, "counterfactual_fen": gross, "actual_fen": 0,
            "failed_fen": gross, "gross_fen": gross, "recaptured_fen": recaptured,
            "net_fen": net, "var": 0.0, "hours_week": 1, "hours_day": 0, "hours_attempts": 0}


def stress(tmp_path: Path, rows: list[str], cells: list[dict[str, object]],
           recap_to: list[dict[str, object]] | None = None) -> dict[str, dict[str, object]]:
    p = tmp_path / "p.csv"
    p.write_text("\n".join([HEADER, *rows]) + "\n")
    pf = read_portfolio(p)
    assert pf.rejected == 0, pf.errors
    frame = pl.DataFrame(cells, schema=_EMPTY_CELLS)
    rt = pl.DataFrame(recap_to or [], schema={
        "merchant_id": pl.String(), "channel": pl.String(), "region": pl.String(),
        "day": pl.Date(), "to_channel": pl.String(), "recaptured_fen": pl.Int64(),
        "incident_id": pl.String()})
    b = stress_borrowers(pf, frame, rt, WINDOWS, CFG)
    b = label_borrowers(b, periods_for(WINDOWS, CFG).day0)
    return {r["borrower_id"]: r for r in b.iter_rows(named=True)}


def term(bid: str, merchant: str, *, cash: str, due: str = "2026-11-06",
         cov: str = "1.20") -> str:
    return (f"{bid},f{bid},{merchant},term,CN-GD,5000000.00,240000.00,{due},0.30,300000.00,"
            f"{cash},{cov},,,,,,")


def actions(r: dict[str, object]) -> dict[str, dict[str, object]]:
    return {a["action"]: a for a in r["actions"]}  # type: ignore[attr-defined, index]


def test_covenant_boundary_is_exact(tmp_path: Path) -> None:
    # lost cash flow 12,000.00 -> DSCR exactly 1.2000: not a breach; one fen more is.
    out = stress(tmp_path, [term("b1", "m1", cash="900000", due="2026-11-25"),
                            term("b2", "m2", cash="900000", due="2026-11-25")],
                 [cell("m1", 4_000_000), cell("m2", 4_000_004)])
    assert out["b1"]["lost_cf_fen"] == 1_200_000 and out["b1"]["dscr_after_e4"] == 12_000
    assert out["b1"]["breach_after"] is False and out["b1"]["status"] == "affected"
    assert out["b2"]["lost_cf_fen"] == 1_200_001
    assert out["b2"]["breach_after"] is True
    assert "covenant_waiver" in actions(out["b2"])


def test_operational_miss_gets_grace_and_bridge(tmp_path: Path) -> None:
    # Base: 245,000 + 20,000 accrued - 240,000 due on 11-06 = 25,000 >= 0.
    # Stressed: 30,000 of lost cash flow arrives 11-06 (T+1): -5,000 -> missed.
    out = stress(tmp_path, [term("b1", "m1", cash="245000")], [cell("m1", 10_000_000)])
    r = out["b1"]
    assert r["lost_cf_fen"] == 3_000_000
    assert r["first_missed_base_day"] is None
    assert r["first_missed_day"] == 1 and r["first_operational_miss_day"] == 1
    assert r["recovery_date"] == date(2026, 11, 6)
    assert r["liquidity_gap_fen"] == 500_000
    assert r["dues_before_recovery_fen"] == 24_000_000
    assert r["status"] == "operational_stress" and r["label"] == "operational"
    acts = actions(r)
    assert acts["grace_period"]["until"] == date(2026, 11, 6)
    assert acts["bridge_line"]["amount_fen"] == 550_000  # 5,000 gap + 10% buffer
    assert "suppress" in r["delinquency"]


def test_pre_existing_shortfall_is_credit_not_operational(tmp_path: Path) -> None:
    out = stress(tmp_path, [term("b1", "m1", cash="200000")], [cell("m1", 10_000_000)])
    r = out["b1"]
    assert r["first_missed_base_day"] == 1
    assert r["status"] == "pre_existing_credit" and r["label"] == "credit"
    assert list(actions(r)) == ["credit_review"]


def test_re_age_only_below_one_after_recovery(tmp_path: Path) -> None:
    dec = date(2026, 12, 2)  # losses spilling into the next period
    out = stress(tmp_path, [term("b1", "m1", cash="900000", due="2026-11-25"),
                            term("b2", "m2", cash="900000", due="2026-11-25")],
                 [cell("m1", 23_333_400, day=dec), cell("m2", 16_666_700, day=dec)])
    # b1: next-period DSCR (300,000 - 70,000.02) / 240,000 = 0.9583 < 1.0 -> re-age
    assert out["b1"]["dscr_next_after_e4"] == 9583
    assert "re_age" in actions(out["b1"])
    # b2: (300,000 - 50,000.01) / 240,000 = 1.0417: breach, but no re-age
    assert out["b2"]["dscr_next_after_e4"] == 10417
    assert "re_age" not in actions(out["b2"])
    assert out["b2"]["breach_next_after"] is True


def rbf(bid: str, merchant: str, channels: str, outstanding: str = "20000.00") -> str:
    return (f"{bid},f{bid},{merchant},revenue_based,CN-GD,{outstanding},,,0.30,300000.00,"
            f"900000,,0.10,{channels},,,,50000.00")


def test_revenue_based_shortfall_follows_the_holdback_channels(tmp_path: Path) -> None:
    rows = [rbf("b1", "m1", "nfc"), rbf("b2", "m2", "nfc;qr"), rbf("b3", "m3", ""),
            rbf("b4", "m4", "nfc", outstanding="500.00")]
    cells = [cell(m, 600_000, recaptured=400_000) for m in ("m1", "m2", "m3", "m4")]
    recap = [{"merchant_id": m, "channel": "nfc", "region": "CN-GD", "day": date(2026, 11, 5),
              "to_channel": "qr", "recaptured_fen": 400_000, "incident_id": WINDOWS[0].id}
             for m in ("m1", "m2", "m3", "m4")]
    out = stress(tmp_path, rows, cells, recap)
    # holdback only on NFC: the QR recapture pays the lender nothing: 10% of 10,000
    assert out["b1"]["rbf_shortfall_fen"] == 100_000
    # holdback on NFC and QR: the recaptured sale pays it: 10% of 6,000
    assert out["b2"]["rbf_shortfall_fen"] == 60_000
    # all channels: 10% of the net loss
    assert out["b3"]["rbf_shortfall_fen"] == 60_000
    # never more than what is still owed
    assert out["b4"]["rbf_shortfall_fen"] == 50_000
    assert out["b1"]["label"] == "operational" and out["b1"]["status"] == "affected"
    assert "holdback_extension" in actions(out["b1"])


def test_receivables_borrowing_base_and_over_advance(tmp_path: Path) -> None:
    row = ("b1,fb1,m1,receivables,CN-GD,40000.00,100.00,2026-11-25,0.30,300000.00,900000,1.20,,"
           ",0.80,55000.00,60000.00,")
    out = stress(tmp_path, [row], [cell("m1", 1_000_000)])
    r = out["b1"]
    # eligible 55,000 -> 45,000; base 44,000 -> 36,000; outstanding 40,000: over by 4,000
    assert r["borrowing_base_drop_fen"] == 800_000
    assert r["over_advance_before_fen"] == 0 and r["over_advance_after_fen"] == 400_000
    assert r["status"] == "operational_stress"
    assert actions(r)["over_advance_allowance"]["amount_fen"] == 400_000


def test_unaffected_borrowers_are_untouched(tmp_path: Path) -> None:
    out = stress(tmp_path, [term("b1", "m1", cash="900000"), term("b2", "m9", cash="900000")],
                 [cell("m1", 1_000)])
    assert out["b2"]["status"] == "not_affected"
    assert out["b2"]["actions"] == []
    assert out["b2"]["dscr_before_e4"] == out["b2"]["dscr_after_e4"] == 12_500


@pytest.mark.parametrize("net", [0, 1, 3, 7, 999_999, 10_000_001])
def test_daily_allocation_adds_up_to_the_rounded_total(tmp_path: Path, net: int) -> None:
    days = [date(2026, 11, 5), date(2026, 11, 6), date(2026, 11, 30), date(2026, 12, 1)]
    cells = [cell("m1", net + k, day=d) for k, d in enumerate(days)]
    out = stress(tmp_path, [term("b1", "m1", cash="900000", due="2026-11-25")], cells)
    r = out["b1"]
    total_net = sum(net + k for k in range(4))
    assert r["lost_net_fen"] == total_net
    assert r["lost_cf_fen"] == r["lost_cf_current_fen"] + r["lost_cf_next_fen"]
    from decimal import ROUND_HALF_EVEN, Decimal
    assert r["lost_cf_fen"] == int((Decimal(total_net) * Decimal("0.3")).quantize(
        Decimal(1), rounding=ROUND_HALF_EVEN))


def test_paid_instalments_count_in_the_period_not_in_liquidity(tmp_path: Path) -> None:
    # next due 2026-12-03: November's instalment (11-03) was paid before the incident.
    out = stress(tmp_path, [term("b1", "m1", cash="1000", due="2026-12-03")],
                 [cell("m1", 1_000_000)])
    r = out["b1"]
    assert r["ds_current_fen"] == 24_000_000 and r["dscr_before_e4"] == 12_500
    assert r["dues_before_recovery_fen"] == 0
    assert r["first_missed_base_day"] is None


def test_arrears_before_the_incident_are_credit(tmp_path: Path) -> None:
    # next due 2026-11-01 is before the incident day and unpaid: arrears
    out = stress(tmp_path, [term("b1", "m1", cash="900000", due="2026-11-01")],
                 [cell("m1", 1_000_000)])
    r = out["b1"]
    assert r["arrears_before"] is True
    assert r["status"] == "pre_existing_credit" and r["label"] == "credit"
    assert "arrears" in actions(r)["credit_review"]["reason"]
