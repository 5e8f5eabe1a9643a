"""`tapshield detect` as a user runs it: results layout, fix-ups, and every bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from tapshield.cli import app
from tapshield.detect import GenericDetector

runner = CliRunner()
NAB_FILE = "nab/data/realKnownCause/ec2_request_latency_system_failure.csv"


def _detect(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["detect", *args])
    return res.exit_code, res.output


def test_detect_on_a_nab_file(shared_data: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "latency.csv"
    shutil.copy(shared_data / NAB_FILE, src)
    monkeypatch.chdir(tmp_path)
    code, out = _detect(str(src))
    assert code == 0, out
    # the default output goes to the current directory, beside nothing else
    result = pl.read_csv(tmp_path / "latency.detect.csv")
    assert result.columns == ["timestamp", "value", "anomaly_score", "alert", "repeat", "gap"]
    source = pl.read_csv(src)
    assert result.height == source.height, "one output row per input row"
    assert result["timestamp"].to_list() == source["timestamp"].to_list(), "in input order"
    assert int(result["repeat"].sum()) == 11, "11 rows repeat a timestamp: flagged, kept"
    assert "11 row(s) do not advance in time (11 repeat the latest timestamp" in (
        out.replace("\n", " "))
    assert result["anomaly_score"].min() >= 0.0 and result["anomaly_score"].max() <= 1.0
    assert set(result["alert"].unique().to_list()) <= {0, 1}
    assert 1 <= int(result["alert"].sum()) <= 30
    # the system failure at the end of the file is flagged (NAB window from row 3956)
    late = result.with_row_index().filter((pl.col("index") >= 3940) & (pl.col("alert") == 1))
    assert late.height >= 1
    assert "alerts" in out and "results written to" in out

    # same answer as the detector called directly on the rows in file order
    ts = (result["timestamp"].str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us")
          .dt.replace_time_zone("Asia/Shanghai").dt.convert_time_zone("UTC")
          .cast(pl.Int64).to_numpy())
    direct = GenericDetector().update_many(ts, result["value"].to_numpy())
    np.testing.assert_array_equal(direct.alert.astype(np.int64), result["alert"].to_numpy())


def _write(tmp_path: Path, text: str, name: str = "s.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,abc\n",
         "row 2 (line 3), column 'value': value is not a number (value 'abc')"),
        ("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,inf\n",
         "row 2 (line 3), column 'value': value is infinite"),
        ("timestamp,value\n2024-01-01 00:00:00,1\n2024-13-01 00:05:00,2\n",
         "row 2 (line 3), column 'timestamp': timestamp is not YYYY-MM-DD HH:MM:SS"),
        ("timestamp,value\n2024-01-01 00:00:00,1\n,2\n",
         "row 2 (line 3), column 'timestamp': timestamp is required"),
        ("timestamp,value\nyesterday,1\n", "timestamp format not recognised"),
        ("timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01 00:05:00,2\n",
         "row 2 (line 3), column 'timestamp': timestamp is not RFC 3339"),
        ("timestamp,value\n1700000000,1\n1700000300000,2\n",
         "row 2 (line 3), column 'timestamp': timestamp is not epoch seconds"),
        ("timestamp,val\n2024-01-01 00:00:00,1\n",
         "missing column(s) 'value'; the file has 'timestamp', 'val'"),
        ("timestamp,value\n", "header but no data rows"),
        ("", "is empty"),
    ],
    ids=["non-numeric", "infinite", "bad-date", "empty-time", "unknown-format", "mixed-format",
         "mixed-epoch", "missing-column", "header-only", "empty-file"],
)
def test_bad_input_is_one_line_naming_row_and_column(tmp_path: Path, content: str,
                                                     message: str) -> None:
    src = _write(tmp_path, content)
    code, out = _detect(str(src), "--out", str(tmp_path / "r.csv"))
    assert code == 2, out
    assert message in out.replace("\n", "")
    assert "Traceback" not in out
    assert not (tmp_path / "r.csv").exists(), "nothing written for an unusable file"


def test_repeats_gaps_and_missing_values_keep_one_row_each_in_input_order(
        tmp_path: Path) -> None:
    src = _write(tmp_path, "timestamp,value\n1700000000,1\n1700000300,2\n1700000600,\n"
                           "1700000300,4\n1700000200,5\n1700000900,6\n1700001200,7\n"
                           "1700001500,8\n1700005100,9\n1700005400,10\n")
    out_file = tmp_path / "r.csv"
    code, out = _detect(str(src), "--out", str(out_file))
    assert code == 0, out
    text = out.replace("\n", " ")
    assert "2 row(s) do not advance in time (2 go back in time; first: row 4)" in text
    assert "flagged in column 'repeat'" in text
    assert "1 gap(s) in time (first: row 9)" in text
    assert "1 empty or NaN value(s) (first: row 3); kept as missing points" in text
    res = pl.read_csv(out_file)
    assert res["timestamp"].to_list() == [1700000000, 1700000300, 1700000600, 1700000300,
                                          1700000200, 1700000900, 1700001200, 1700001500,
                                          1700005100, 1700005400]
    assert res["value"].to_list() == [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert res["repeat"].to_list() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert res["gap"].to_list() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    assert res["anomaly_score"].to_list()[2] is None, "a missing point is not scored"
    assert res["anomaly_score"].null_count() == 1, "every other row, repeats too, is scored"
    code, out = _detect(str(src), "--out", str(out_file), "--strict")
    assert code == 2
    assert "row 4 (line 5), column 'timestamp': timestamp is earlier than a previous row" in (
        out.replace("\n", ""))
    dup = _write(tmp_path, "timestamp,value\n1700000000,1\n1700000000,2\n", "dup.csv")
    code, out = _detect(str(dup), "--out", str(out_file), "--strict")
    assert code == 2 and "repeats the previous row" in out


def test_a_file_in_reverse_time_order_is_kept_and_called_out(tmp_path: Path) -> None:
    body = "".join(f"{1_700_000_000 + 300 * (30 - i)},{i}\n" for i in range(30))
    src = _write(tmp_path, "timestamp,value\n" + body)
    code, out = _detect(str(src), "--out", str(tmp_path / "r.csv"))
    assert code == 0, out
    assert "does not look sorted by time" in out.replace("\n", " ")
    assert pl.read_csv(tmp_path / "r.csv").height == 30


@pytest.mark.parametrize(
    ("stamps", "fmt"),
    [
        (["2024-03-01 00:00:00", "2024-03-01 00:05:00"], "local time (Asia/Shanghai)"),
        (["2024-03-01T00:00:00.250Z", "2024-03-01T08:05:00+08:00"], "RFC 3339"),
        (["1709251200", "1709251500.5"], "epoch seconds"),
        (["1709251200000", "1709251500000"], "epoch milliseconds"),
    ],
)
def test_accepted_timestamp_formats(tmp_path: Path, stamps: list[str], fmt: str) -> None:
    src = _write(tmp_path, "when,metric\n" + "".join(f"{s},{i}\n" for i, s in enumerate(stamps)))
    code, out = _detect(str(src), "--time-col", "when", "--value-col", "metric",
                        "--out", str(tmp_path / "r.csv"))
    assert code == 0, out
    assert fmt in out
    assert pl.read_csv(tmp_path / "r.csv", infer_schema=False)["timestamp"].to_list() == stamps


def test_refuses_to_overwrite_its_input_and_missing_files(tmp_path: Path) -> None:
    src = _write(tmp_path, "timestamp,value\n2024-01-01 00:00:00,1\n")
    code, out = _detect(str(src), "--out", str(src))
    assert code == 2 and "must not overwrite the input" in out
    assert src.read_text().startswith("timestamp,value")
    code, out = _detect(str(tmp_path / "nope.csv"))
    assert code == 2 and "no such file" in out
    code, out = _detect(str(src), "--tz", "Mars/Olympus")
    assert code == 2 and "unknown time zone" in out


def test_warns_when_sampled_faster_than_a_minute(tmp_path: Path) -> None:
    body = "".join(f"{1_700_000_000 + 10 * i},{i % 7}\n" for i in range(50))
    src = _write(tmp_path, "timestamp,value\n" + body)
    code, out = _detect(str(src), "--out", str(tmp_path / "r.csv"))
    assert code == 0, out
    assert "sampled every 10 s" in out.replace("\n", " ")
