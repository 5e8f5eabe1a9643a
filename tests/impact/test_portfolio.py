"""The portfolio contract: every rule rejects its row by name; schedules; the generator."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import polars as pl
import pytest
from helpers import T0, Merchant, regular_events

from tapshield.errors import ContractError
from tapshield.impact.portfolio import (
    PORTFOLIO,
    annuity_fen,
    due_schedule,
    read_portfolio,
    write_portfolio,
)
from tapshield.simulate.portfolio import generate_portfolio, merchant_stats

HEADER = ("borrower_id,facility_id,merchant_ids,facility_type,region,outstanding,limit,"
          "instalment,frequency,next_due_date,annual_rate,remaining_term_months,"
          "holdback_share,repayment_cap,advance_rate,eligible_receivables,channels,"
          "contribution_margin,cfads,cash,reserve,undrawn,covenant_min_dscr")

GOOD = {
    "term": "b1,f1,m1,term,CN-GD,100000.00,,5000.00,monthly,2026-11-20,,,,,,,,0.30,20000.00,"
            "1000,0,0,1.20",
    "revolving": "b2,f2,m2;m3,revolving,CN-JS,50000.00,80000.00,800.00,monthly,2026-11-10,"
                 "0.08,,,,,,,0.25,9000.00,500,0,30000,1.25",
    "revenue_based": "b3,f3,m4,revenue_based,CN-ZJ,20000.00,,,monthly,,,,0.12,23000.00,,,"
                     "nfc;qr,0.35,8000.00,300,0,0,",
    "receivables": "b4,f4,m5,receivables,CN-SH,40000.00,60000.00,,monthly,2026-11-15,0.06,,,,"
                   "0.80,55000.00,,0.20,7000.00,100,0,0,1.30",
    "annuity": "b5,f5,m6,term,CN-GD,1000000.00,,,monthly,2026-11-05,0.06,24,,,,,,0.30,"
               "90000.00,1000,0,0,1.20",
}


def write(tmp_path: Path, *rows: str, name: str = "p.csv") -> Path:
    p = tmp_path / name
    p.write_text("\n".join([HEADER, *rows]) + "\n")
    return p


def rules_of(result_errors: list) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {(e.column, e.rule) for e in result_errors}


def test_good_rows_of_every_facility_type(tmp_path: Path) -> None:
    pf = read_portfolio(write(tmp_path, *GOOD.values()))
    assert pf.rejected == 0
    assert pf.borrowers.height == 5
    f = {r["facility_id"]: r for r in pf.facilities.iter_rows(named=True)}
    assert f["f1"]["instalment"] == 500_000
    assert f["f1"]["margin_ppm"] == 300_000 and f["f1"]["covenant_e4"] == 12_000
    assert f["f3"]["holdback_ppm"] == 120_000 and f["f3"]["channel_list"] == ["nfc", "qr"]
    assert f["f4"]["instalment"] == 20_000  # 40,000 x 6% / 12 interest, generated
    assert f["f5"]["instalment"] == annuity_fen(100_000_000, 60_000, 24)
    assert dict(zip(pf.merchants["merchant_id"], pf.merchants["borrower_id"],
                    strict=True))["m3"] == "b2"


def test_annuity_matches_the_textbook_formula() -> None:
    p, i, n = Decimal(100_000_000), Decimal("0.06") / 12, 24
    want = (p * i / (1 - (1 + i) ** -n)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    assert annuity_fen(100_000_000, 60_000, 24) == int(want) == 4_432_061
    assert annuity_fen(1_200, 0, 12) == 100


@pytest.mark.parametrize(("row", "column", "rule"), [
    (GOOD["term"].replace("b1,f1,m1", "b9,f1,m9"), "facility_id", "duplicate"),
    (GOOD["term"].replace("b1,f1,m1", "b1,f9,m1").replace(",0.30,", ",0.31,"),
     "contribution_margin", "borrower_mismatch"),
    (GOOD["term"].replace("b1,f1,m1", "b9,f9,m1"), "merchant_ids", "merchant_shared"),
    (GOOD["term"].replace(",5000.00,", ",,"), "instalment", "term_schedule"),
    (GOOD["term"].replace("2026-11-20", ""), "next_due_date", "due_date_needed"),
    (GOOD["revolving"].replace(",80000.00,", ",,").replace("b2,f2,m2;m3", "b9,f9,m9"),
     "limit", "limit_needed"),
    (GOOD["revenue_based"].replace(",0.12,", ",,").replace("b3,f3,m4", "b9,f9,m9"),
     "holdback_share", "holdback_needed"),
    (GOOD["revenue_based"].replace("23000.00", "1000.00").replace("b3,f3,m4", "b9,f9,m9"),
     "repayment_cap", "cap_below_outstanding"),
    (GOOD["receivables"].replace(",0.80,", ",,").replace("b4,f4,m5", "b9,f9,m9"),
     "advance_rate", "advance_needed"),
    (GOOD["receivables"].replace("55000.00", "").replace("b4,f4,m5", "b9,f9,m9"),
     "eligible_receivables", "receivables_needed"),
    (GOOD["term"].replace("100000.00", "100000.005").replace("b1,f1,m1", "b9,f9,m9"),
     "outstanding", "money"),
    (GOOD["term"].replace(",0.30,", ",abc,").replace("b1,f1,m1", "b9,f9,m9"),
     "contribution_margin", "decimal"),
    (GOOD["term"].replace(",0.30,", ",1.5,").replace("b1,f1,m1", "b9,f9,m9"),
     "contribution_margin", "maximum"),
    (GOOD["term"].replace(",1.20", ",0.90").replace("b1,f1,m1", "b9,f9,m9"),
     "covenant_min_dscr", "minimum"),
    (GOOD["term"].replace("CN-GD", "Guangdong").replace("b1,f1,m1", "b9,f9,m9"),
     "region", "format"),
    (GOOD["term"].replace(",term,", ",mortgage,").replace("b1,f1,m1", "b9,f9,m9"),
     "facility_type", "enum"),
    (GOOD["term"].replace("2026-11-20", "20/11/2026").replace("b1,f1,m1", "b9,f9,m9"),
     "next_due_date", "date"),
    (GOOD["term"].replace("b1,f1,m1", "b9,f9,m9;;m8"), "merchant_ids", "format"),
])
def test_each_rule_rejects_its_row(tmp_path: Path, row: str, column: str, rule: str) -> None:
    pf = read_portfolio(write(tmp_path, GOOD["term"], row))
    assert (column, rule) in rules_of(pf.errors), pf.errors
    rejected_rows = set(pf.rejects["row"].to_list())
    assert 2 in rejected_rows  # the broken row is named by its row number
    assert pf.rejects["errors"].str.contains(f"{column}: {rule}").any()


def test_a_borrower_with_a_rejected_facility_is_dropped_whole(tmp_path: Path) -> None:
    bad = GOOD["term"].replace("b1,f1,m1", "b1,f7,m1").replace(",term,", ",lease,")
    pf = read_portfolio(write(tmp_path, GOOD["term"], GOOD["revolving"], bad))
    assert pf.borrowers["borrower_id"].to_list() == ["b2"]
    errs = {(e.row, e.column, e.rule) for e in pf.errors}
    assert (3, "facility_type", "enum") in errs
    assert (1, "borrower_id", "borrower_incomplete") in errs


def test_missing_required_column_is_a_file_error(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text("borrower_id,facility_id\nb1,f1\n")
    with pytest.raises(ContractError, match="missing required portfolio columns"):
        read_portfolio(p)


def test_jsonl_with_a_broken_line(tmp_path: Path) -> None:
    csv = read_portfolio(write(tmp_path, GOOD["term"], GOOD["revolving"]))
    jl = tmp_path / "p.jsonl"
    write_portfolio(csv.facilities.select(PORTFOLIO.names), jl)
    jl.write_text(jl.read_text() + "{not json\n")
    pf = read_portfolio(jl)
    assert pf.facilities.height == 2
    assert ("*", "json_syntax") in rules_of(pf.errors)


def test_schedules_from_terms(tmp_path: Path) -> None:
    rows = [
        GOOD["term"].replace(",5000.00,monthly,2026-11-20,,,", ",5000.00,monthly,2026-10-20,,2,"),
        GOOD["revolving"].replace(",monthly,2026-11-10,", ",weekly,2026-11-03,"),
        GOOD["receivables"].replace(",monthly,2026-11-15,", ",daily,2026-11-28,"),
    ]
    pf = read_portfolio(write(tmp_path, *rows))
    assert pf.rejected == 0, pf.errors
    s = due_schedule(pf, date(2026, 11, 1), date(2026, 12, 31))
    by = {f: g["due_date"].to_list() for (f,), g in s.group_by("facility_id")}
    # term: 2 instalments left from 2026-10-20, so only 2026-11-20 in the horizon
    assert by["f1"] == [date(2026, 11, 20)]
    assert by["f2"][:3] == [date(2026, 11, 3), date(2026, 11, 10), date(2026, 11, 17)]
    assert len(by["f2"]) == 9
    # daily from 2026-11-28: the earlier days of the period were due too (and paid)
    f4 = s.filter(pl.col("facility_id") == "f4")
    assert f4.height == 61
    unpaid = f4.filter(~pl.col("paid"))["due_date"].to_list()
    assert unpaid[0] == date(2026, 11, 28) and len(unpaid) == 34


def test_explicit_schedule_replaces_generated(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD["term"])
    sched = tmp_path / "s.csv"
    sched.write_text("facility_id,due_date,amount\nf1,2026-11-03,100.00\nf1,2026-12-03,200.50\n")
    pf = read_portfolio(p, schedule=sched)
    s = due_schedule(pf, date(2026, 11, 1), date(2026, 12, 31))
    assert s["amount_fen"].to_list() == [10_000, 20_050]
    bad = tmp_path / "bad.csv"
    bad.write_text("facility_id,due_date,amount\nf9,2026-11-03,100.00\n")
    with pytest.raises(ContractError, match="not in the portfolio"):
        read_portfolio(p, schedule=bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("facility_id,due_date,amount\nf1,2026-11-03,1.00\nf1,2026-11-03,2.00\n")
    with pytest.raises(ContractError, match="duplicate"):
        read_portfolio(p, schedule=dup)


@pytest.fixture(scope="module")
def stats() -> pl.DataFrame:
    merchants = [Merchant(f"m{i}", region=("CN-GD", "CN-JS", "CN-ZJ")[i % 3],
                          category=("5812", "5411", "5691", "9999")[i % 4],
                          taps_per_day={"nfc": 5 + i % 7, "qr": 3 + i % 5},
                          amount_fen=5_000 + 700 * i) for i in range(120)]
    return merchant_stats(regular_events(merchants, days=2))


def test_generated_portfolio_passes_the_contract(stats: pl.DataFrame, tmp_path: Path) -> None:
    frame = generate_portfolio(stats, seed=5, borrower_share=0.6)
    pf = read_portfolio(frame)
    assert pf.rejected == 0, pf.errors[:5]
    types = set(pf.facilities["facility_type"].cast(pl.String))
    assert types == {"term", "revolving", "revenue_based", "receivables"}
    covenants = set(pf.borrowers["covenant_min_dscr"].drop_nulls().cast(pl.String))
    assert covenants <= {"1.2000", "1.2500", "1.3000", "1.3500"}
    # every borrower's merchants are real merchants of the events
    assert set(pf.merchants["merchant_id"]) <= set(stats["merchant_id"])
    # written and read back, CSV and JSONL, the book is the same
    for name in ("p.csv", "p.jsonl"):
        path = write_portfolio(frame, tmp_path / name)
        again = read_portfolio(path)
        assert again.rejected == 0
        assert again.facilities.drop("channel_list").equals(pf.facilities.drop("channel_list"))


def test_generator_is_deterministic_and_sized_from_sales(stats: pl.DataFrame) -> None:
    a = generate_portfolio(stats, seed=11)
    b = generate_portfolio(stats, seed=11)
    c = generate_portfolio(stats, seed=12)
    assert a.equals(b) and not a.equals(c)
    pf = read_portfolio(a)
    sales = stats.join(pf.merchants, on="merchant_id").group_by("borrower_id").agg(
        (pl.col("daily_sales_fen").sum() * 30).alias("monthly"))
    b_ = pf.borrowers.join(sales, on="borrower_id")
    # CFADS is a margin of monthly sales less fixed costs: never above the sales
    assert (b_["cfads"] <= b_["monthly"]).all()
    assert (b_["cfads"] > 0).all()
    assert T0.year == 2026


def test_docs_describe_every_column_and_rule() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "impact.md").read_text()
    for f in PORTFOLIO.fields:
        assert f"| {f.name} |" in docs, f.name
    for r in PORTFOLIO.rules:
        assert f"`{r.name}`" in docs, r.name
