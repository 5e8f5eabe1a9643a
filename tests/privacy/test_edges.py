"""Where raw identifiers used to leak: error messages and rejects files."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from tapshield.cli import app
from tapshield.errors import RowError
from tests.events.helpers import rows

runner = CliRunner()


def test_messages_mask_personal_identifiers() -> None:
    assert "u142424" not in str(RowError(3, "user_id", "required", "u142424"))
    assert "u1***24" in str(RowError(3, "user_id", "required", "u142424"))
    assert "m-001" in str(RowError(3, "merchant_id", "required", "m-001"))  # a business
    msg = str(RowError(9, "*", "ragged_record", "e9,2026-11-11T20:00:00Z,u142424,d77"))
    assert "u142424" not in msg and "withheld" in msg


def test_rejects_file_masks_identifiers_and_withholds_broken_records(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    rows({"user_id": "u142424", "device_id": "d998877", "outcome": "maybe"}, {}).write_csv(src)
    with open(src, "a") as fh:
        fh.write("e9,2026-11-11T20:00:00+08:00,p9,u5550001,d5550001\n")  # a short record
    res = runner.invoke(app, ["validate", str(src), "--rejects",
                              str(tmp_path / "in.csv.rejects.csv")])
    assert res.exit_code == 1, res.output
    text = (tmp_path / "in.csv.rejects.csv").read_text()
    for raw in ("u142424", "d998877", "u5550001", "d5550001"):
        assert raw not in text and raw not in res.output
    rej = pl.read_csv(tmp_path / "in.csv.rejects.csv", infer_schema=False)
    assert "u1***24" in rej["user_id"].to_list()
    assert rej["errors"].to_list()[0] == "outcome: outcome_enum"


def test_rejects_file_withholds_records_that_could_not_be_split(tmp_path: Path) -> None:
    from tapshield.cli._rejects import RejectFile
    from tapshield.events.validate import structural_rejects

    f = RejectFile(tmp_path / "r.csv")
    f.write(structural_rejects([(7, "ragged_record", 'e7,"2026-11-11,u5550001,d5550001')]))
    f.close()
    text = (tmp_path / "r.csv").read_text()
    assert "u5550001" not in text and "withheld" in text and text.splitlines()[1].startswith("7,")
