"""``tapshield portfolio`` and ``tapshield impact`` end to end, through the real CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from helpers import T0, Merchant, Outage, incident, regular_events
from typer.testing import CliRunner

from tapshield.cli import app
from tapshield.events.write import write_events
from tapshield.incident import write_incidents

runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sim")
    code, out = cli("simulate", "nfc-regional-outage", "--scale", "0.05", "--format", "csv",
                    "--no-labels", "--out", str(d))
    assert code == 0, out
    return d


def test_impact_on_simulator_output(simulated: Path, tmp_path: Path) -> None:
    events = next(simulated.glob("events.*"))
    book = tmp_path / "book.csv"
    code, out = cli("portfolio", "--events", str(events), "--out", str(book), "--seed", "3",
                    "--borrower-share", "0.5")
    assert code == 0, out
    assert pl.read_csv(book).height > 100
    code, out = cli("impact", "--events", str(events), "--incidents",
                    str(simulated / "truth.json"), "--portfolio", str(book),
                    "--out", str(tmp_path / "impact"))
    assert code == 0, out
    data = json.loads((tmp_path / "impact" / "impact.json").read_text())
    inc = data["incidents"][0]
    assert inc["id"] == "nfc-south"
    assert {r["region"] for r in inc["by_region"]} <= {"CN-GD", "CN-GX"}
    truth = json.loads((simulated / "truth.json").read_text())["faults"][0]
    # the failed taps it counts are the simulator's own, in the fault's exact window
    assert inc["taps"]["failed_payments"] == truth["window"]["failed_payments"]
    assert inc["taps"]["failed"] == truth["window"]["lost_amount"]
    net = float(inc["lost_sales"]["net"])
    assert 0 < net <= float(inc["lost_sales"]["gross"])
    band = inc["lost_sales"]["band"]
    assert float(band["low"]) <= net <= float(band["high"])
    assert inc["regulatory"]["dora"]["classification"] in ("major", "not major")
    assert inc["regulatory"]["prc"]["grade"]
    # money is exact decimal text everywhere
    for b in data["borrowers"]:
        assert b["lost_net"].count(".") == 1 and len(b["lost_net"].split(".")[1]) == 2
    assert data["portfolio"]["totals"]["borrowers_affected"] == len(data["borrowers"])
    html = (tmp_path / "impact" / "impact.html").read_text()
    assert html.count("<svg") >= 3 and "http" not in html.split("<body>")[1].split("docs/")[0] \
        .replace("http://www.w3.org/2000/svg", "")
    assert (tmp_path / "impact" / "impact_borrowers.csv").exists()


def test_impact_hand_example_through_the_cli(tmp_path: Path) -> None:
    start = T0 + timedelta(days=30)
    o = Outage(start=start, end=start + timedelta(days=2), recapture_share=(2, 5))
    write_events(regular_events([Merchant("m1")], days=33, outages=[o]), tmp_path / "ev.csv")
    write_incidents(tmp_path / "incidents.json", [incident(o.start, o.end, [{"channel": "nfc"}])])
    (tmp_path / "p.csv").write_text(
        "borrower_id,facility_id,merchant_ids,facility_type,region,outstanding,instalment,"
        "next_due_date,contribution_margin,cfads,cash,covenant_min_dscr\n"
        "b1,f1,m1,term,CN-GD,5000000.00,240000.00,2026-11-28,0.30,300000.00,500000.00,1.20\n")
    code, out = cli("impact", "-e", str(tmp_path / "ev.csv"), "-i",
                    str(tmp_path / "incidents.json"), "-p", str(tmp_path / "p.csv"),
                    "-o", str(tmp_path / "out"))
    assert code == 0, out
    data = json.loads((tmp_path / "out" / "impact.json").read_text())
    assert data["incidents"][0]["lost_sales"]["net"] == "42000.00"
    b = data["borrowers"][0]
    assert (b["lost_cf"], b["dscr_before"], b["dscr_after"]) == ("12600.00", "1.2500", "1.1975")
    assert b["actions"][0]["action"] == "covenant_waiver"
    assert "42000.00" in out


def test_rejected_portfolio_rows_exit_1_and_are_kept(tmp_path: Path) -> None:
    start = T0 + timedelta(days=2)
    o = Outage(start=start, end=start + timedelta(hours=3))
    write_events(regular_events([Merchant("m1")], days=3, outages=[o]), tmp_path / "ev.jsonl")
    write_incidents(tmp_path / "i.json", [incident(o.start, o.end, [{"channel": "nfc"}])])
    (tmp_path / "p.csv").write_text(
        "borrower_id,facility_id,merchant_ids,facility_type,region,outstanding,instalment,"
        "next_due_date,contribution_margin,cfads\n"
        "b1,f1,m1,term,CN-GD,5000.00,240.00,2026-11-28,0.30,3000.00\n"
        "b2,f2,m2,term,CN-GD,5000.00,240.00,2026-11-28,1.30,3000.00\n")
    code, out = cli("impact", "-e", str(tmp_path / "ev.jsonl"), "-i", str(tmp_path / "i.json"),
                    "-p", str(tmp_path / "p.csv"), "-o", str(tmp_path / "out"))
    assert code == 1, out
    assert "row 2, column 'contribution_margin': rule maximum" in out
    rejects = pl.read_csv(tmp_path / "out" / "portfolio.rejects.csv")
    assert rejects["row"].to_list() == [2]
    assert (tmp_path / "out" / "impact.html").exists()
    code, out = cli("impact", "-e", str(tmp_path / "ev.jsonl"), "-i", str(tmp_path / "i.json"),
                    "-p", str(tmp_path / "p.csv"), "-o", str(tmp_path / "out"),
                    "--max-rejects", "1")
    assert code == 0, out


def test_unusable_input_exits_2_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "i.json").write_text("{}")
    code, out = cli("impact", "-e", str(tmp_path / "nope.csv"), "-i", str(tmp_path / "i.json"),
                    "-o", str(tmp_path / "out"))
    assert code == 2
    assert "error:" in out and "Traceback" not in out
    code, out = cli("portfolio", "-e", str(tmp_path / "i.json"), "-o", str(tmp_path / "x.txt"))
    assert code == 2 and "csv or .jsonl" in out
