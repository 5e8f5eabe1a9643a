"""`tapshield risk train|score|backtest` as a risk analyst runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tapshield.cli import app
from tapshield.risk import synth

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    d = tmp_path_factory.mktemp("risk-cli")
    req, lab = synth.generate(n_users=400, days=30, seed=11)
    cut = req["ts"].sort()[int(req.height * 0.75)]
    hist, new = req.filter(pl.col("ts") < cut), req.filter(pl.col("ts") >= cut)
    synth.write_files(hist, lab.filter(pl.col("event_id").is_in(hist["event_id"].to_list())),
                      str(d / "hist.csv"), str(d / "hist-labels.csv"))
    synth.write_files(new, lab.filter(pl.col("event_id").is_in(new["event_id"].to_list())),
                      str(d / "new.csv"), str(d / "new-labels.csv"))
    return d / "hist.csv", d / "hist-labels.csv", d / "new.csv", d / "new-labels.csv"


def test_train_score_backtest_end_to_end(tmp_path: Path, files) -> None:  # type: ignore[no-untyped-def]
    hist, hist_lab, new, new_lab = files
    model = tmp_path / "model"
    res = runner.invoke(app, ["risk", "train", str(hist), "--labels", str(hist_lab),
                              "--out", str(model), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert (model / "model.txt").exists() and (model / "state.npz").exists()
    meta = json.loads((model / "model.json").read_text())
    assert meta["thresholds"]["budget"] == {"decline": 0.001, "step_up": 0.01}
    # the service's way in: the same directory, one request at a time
    from tapshield.risk.engine import RiskEngine, request_from_row

    engine = RiskEngine.from_dir(model)
    first = pl.read_csv(new, infer_schema=False).row(0, named=True)
    req = read_one(new)
    d1 = engine.decide(req)
    n = engine.state.n_events
    assert engine.decide(req) == d1 and engine.state.n_events == n  # redelivery: same answer
    assert d1.model_version == meta["version"] and first["event_id"] == d1.event_id
    assert request_from_row  # the helper the service uses for frames
    scores = tmp_path / "scores.csv"
    res = runner.invoke(app, ["risk", "score", str(new), "--model", str(model),
                              "--labels", str(new_lab), "--out", str(scores)])
    assert res.exit_code == 0, res.output
    out = pl.read_csv(scores)
    assert out.columns == ["event_id", "score", "decision", "reasons"]
    assert out["event_id"].to_list() == pl.read_csv(new)["event_id"].to_list()
    assert set(out["decision"]) <= {"approve", "step_up", "decline"}
    assert (out["score"].is_between(0, 1)).all()
    flagged = out.filter(pl.col("decision") != "approve")
    assert flagged.height and flagged["reasons"].str.contains("model:").all()
    # a rules change backtested against the current configuration
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: rules-t2\nrules:\n  - id: big\n    when: \"amount > 400\"\n"
                     "    action: decline\n")
    report = tmp_path / "bt.json"
    res = runner.invoke(app, ["risk", "backtest", str(new), "--labels", str(new_lab),
                              "--model", str(model), "--candidate-rules", str(rules),
                              "--out", str(report)])
    assert res.exit_code == 0, res.output
    bt = json.loads(report.read_text())
    assert bt["version"].startswith("rules-t2")
    assert bt["candidate"]["decline"] >= bt["current"]["decline"]
    assert bt["changes"]["genuine_newly_declined"] + bt["changes"]["fraud_newly_declined"] > 0
    assert any(s["dimension"] == "region" for s in bt["segments"])
    # the gate: a retrain on the same data does not replace the current model
    res = runner.invoke(app, ["risk", "train", str(hist), "--labels", str(hist_lab),
                              "--out", str(tmp_path / "m2"), "--current", str(model),
                              "--threads", "1"])
    assert res.exit_code == 0, res.output
    gate = json.loads((tmp_path / "m2" / "train-report.json").read_text())["gate"]
    assert gate["promote"] is False
    assert json.loads((tmp_path / "m2" / "model.json").read_text())["version"] == meta["version"]


def read_one(path: Path):  # type: ignore[no-untyped-def]
    from tapshield.risk.contract import read_requests
    from tapshield.risk.engine import request_from_row

    return request_from_row(read_requests(path).frame.row(0, named=True))


def test_bad_input_is_one_line_and_exit_codes(tmp_path: Path, files) -> None:  # type: ignore[no-untyped-def]
    hist, hist_lab, _, _ = files
    res = runner.invoke(app, ["risk", "train", str(tmp_path / "nope.csv"), "--labels",
                              str(hist_lab), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "no such file" in res.output
    bad = tmp_path / "bad.csv"
    text = hist.read_text().splitlines()
    head = text[0].split(",")
    broken = text[5].split(",")
    broken[head.index("amount")] = "1.005"
    bad.write_text("\n".join([*text[:5], ",".join(broken), *text[6:]]) + "\n")
    res = runner.invoke(app, ["risk", "train", str(bad), "--labels", str(hist_lab),
                              "--out", str(tmp_path / "m"), "--threads", "1"])
    assert res.exit_code == 1, res.output
    assert "row 5" in res.output and "amount: money" in res.output
    assert (tmp_path / "m.rejects.csv").exists() and (tmp_path / "m" / "model.txt").exists()
    res = runner.invoke(app, ["risk", "score", str(hist), "--model", str(tmp_path / "m"),
                              "--out", str(tmp_path / "s.csv")])
    assert res.exit_code == 0 and "already in the model's history" in res.output
    scored = pl.read_csv(tmp_path / "s.csv")
    assert scored["event_id"].to_list() == pl.read_csv(hist)["event_id"].to_list()
    res = runner.invoke(app, ["risk", "train", str(hist), "--labels", str(hist_lab),
                              "--out", str(tmp_path / "m3"), "--budget-decline", "2"])
    assert res.exit_code == 2 and "budget" in res.output


def test_help_is_fast_and_lists_risk() -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "tapshield", "--help"],
                         capture_output=True, text=True, check=True)
    assert "risk" in out.stdout
    assert "lightgbm" not in out.stderr and "tapshield.risk" not in out.stderr
