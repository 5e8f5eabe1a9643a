"""The impact report carries the trust estimate of every ended paging incident."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tapshield.cli import app
from tapshield.impact.incidents import incidents_from_truth
from tapshield.incident import write_incidents


def test_impact_json_and_html_show_whether_affected_customers_came_back(tmp_path: Path) -> None:
    runner = CliRunner()
    sim = tmp_path / "sim"
    r = runner.invoke(app, ["simulate", "nfc-outage-churn", "--scale", "0.5", "--no-labels",
                            "--out", str(sim)])
    assert r.exit_code == 0, r.output
    truth = json.loads((sim / "truth.json").read_text())
    assert truth["churn"]["faults"][0]["churned"] > 0
    write_incidents(tmp_path / "incidents.json", incidents_from_truth(truth))
    r = runner.invoke(app, ["impact", "-e", str(sim / "events.parquet"), "-i",
                            str(tmp_path / "incidents.json"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "out" / "impact.json").read_text())
    t = data["incidents"][0]["trust"]
    assert t["incident_id"] == "nfc-south" and t["matched_affected"] > 100
    lo, hi = t["ci95"]
    assert lo <= t["estimate"] <= hi and hi - lo < 0.3
    assert isinstance(t["lost_spending_fen"], int)
    assert t["lost_spending"].count(".") == 1 and t["lost_credit_line_use_fen"] == \
        t["lost_spending_fen"]
    assert "affected_ids" not in t and "notified_ids" not in t
    html = (tmp_path / "out" / "impact.html").read_text()
    assert "Trust: do the affected customers come back?" in html
