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


def test_rejects_file_masks_identifier_columns_and_keeps_raw_verbatim(tmp_path: Path) -> None:
    """The columns people read are masked; ``raw`` is the record's own bytes (the
    evidence to repair the input: input-class data, docs/trust.md)."""
    from tapshield.events.rejects import read_raw

    src = tmp_path / "in.csv"
    rows({"user_id": "u142424", "device_id": "d998877", "outcome": "maybe"}, {}).write_csv(src)
    res = runner.invoke(app, ["validate", str(src), "--rejects",
                              str(tmp_path / "in.csv.rejects.csv")])
    assert res.exit_code == 1, res.output
    for raw in ("u142424", "d998877"):
        assert raw not in res.output
    rej = pl.read_csv(tmp_path / "in.csv.rejects.csv", infer_schema=False)
    assert rej["user_id"].to_list() == ["u1***24"]
    assert rej["device_id"].to_list() == ["d9***77"]
    assert rej["errors"].to_list()[0] == "outcome: outcome_enum"
    source_line = src.read_bytes().splitlines()[1]
    assert read_raw(tmp_path / "in.csv.rejects.csv") == [source_line]
