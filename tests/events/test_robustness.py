"""Issue 12's classes of bad input, one test (or a few) per class.

Each test reproduces the defect as it was found (a hang, a silently rewritten
amount, a phantom row, a whole-file failure) and checks what the contract
promises instead: the row is rejected with its row, column and rule, or read
as sent; nothing hangs; nothing else is lost.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tapshield.errors import ContractError
from tapshield.events.changes import read_changes
from tapshield.events.read import EventReader
from tapshield.events.rejects import RejectWriter, read_raw
from tapshield.events.write import formula_safe, write_report_csv

from .helpers import GOOD, rows

HEADER = ",".join(GOOD)


def _line(**changes: str) -> str:
    values = dict(GOOD, **changes)
    return ",".join(values.values())


def _read(path: Path, **kwargs: object) -> tuple[pl.DataFrame, pl.DataFrame, EventReader]:
    seen: list[pl.DataFrame] = []
    reader = EventReader(path, on_reject=seen.append, **kwargs)  # type: ignore[arg-type]
    frame = reader.read_all()
    rejects = pl.concat(seen).sort("row") if seen else pl.DataFrame()
    assert reader.stats.rows == reader.stats.accepted + reader.stats.rejected
    return frame, rejects, reader


def _validate(path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``tapshield validate`` in its own process, killed if it runs past ``timeout``."""
    return subprocess.run(
        [sys.executable, "-m", "tapshield", "validate", str(path), *args],
        capture_output=True, text=True, timeout=timeout, cwd=path.parent,
    )


# -- class 1: a stray double quote hung the CSV reader ----------------------


def test_a_stray_quote_inside_a_field_is_an_ordinary_character(tmp_path: Path) -> None:
    """Ten good rows, one ``device_model`` is ``5" screen``: plain and gzipped alike
    (the plain file used to loop for ever re-cutting on quote parity)."""
    lines = [HEADER] + [
        _line(event_id=f"e{i}", device_model='5" screen' if i == 4 else "HW-1")
        for i in range(10)
    ]
    text = "\n".join(lines) + "\n"
    plain = tmp_path / "stray.csv"
    plain.write_text(text)
    gz = tmp_path / "stray.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    for path in (plain, gz):
        done = _validate(path, timeout=600)
        assert done.returncode == 0, done.stderr
        frame, rejects, _ = _read(path)
        assert frame.height == 10 and rejects.height == 0
        assert frame["device_model"][4] == '5" screen'


def test_an_unclosed_quote_rejects_its_record_only(tmp_path: Path) -> None:
    lines = [HEADER] + [_line(event_id=f"e{i}") for i in range(6)]
    lines[3] = _line(event_id="e2", device_model='"never closed')
    path = tmp_path / "open.csv"
    path.write_text("\n".join(lines) + "\n")
    for chunk_rows in (1, 2, 500_000):
        frame, rejects, _ = _read(path, chunk_rows=chunk_rows)
        assert frame["event_id"].to_list() == ["e0", "e1", "e3", "e4", "e5"]
        assert rejects.select("row", "errors").rows() == [(3, "device_model: csv_quote")]
        assert rejects["raw"][0] == lines[3].encode()


def test_text_after_a_closing_quote_is_a_broken_record(tmp_path: Path) -> None:
    path = tmp_path / "junk.csv"
    path.write_text(HEADER + "\n" + _line(device_model='"HW"-1') + "\n" + _line(event_id="e2")
                    + "\n")
    frame, rejects, _ = _read(path)
    assert frame["event_id"].to_list() == ["e2"]
    assert rejects.select("row", "errors").rows() == [(1, "device_model: csv_quote")]


def test_quoted_line_ends_across_every_cut(tmp_path: Path) -> None:
    """Multi-line quoted fields read the same whatever the chunk size: cuts that fall
    inside a quoted field are detected and redone, and a record longer than a
    piece is read whole."""
    n = 300
    frame = rows(*[{"device_model": f"model\n{i}\r\nend" if i % 3 else "x" * (i % 50 + 1)}
                   for i in range(n)])
    path = tmp_path / "multi.csv"
    frame.write_csv(path)
    expected = frame["device_model"].to_list()
    for chunk_rows in (1, 3, 50, 500_000):
        got, rejects, reader = _read(path, chunk_rows=chunk_rows)
        assert rejects.height == 0
        assert got["device_model"].to_list() == expected
        assert reader.stats.rows == n


def test_every_byte_is_tokenized_a_bounded_number_of_times() -> None:
    """Pathological quoting (every line opens a quote) finishes in linear work."""
    import numpy as np

    from tapshield.csvgrammar import Tokens

    data = b'"\n' * 200_000 + b'a,"b\n' * 200_000
    tokens = Tokens(data, np.arange(2, dtype=np.int64), 2, True)
    assert tokens.rows > 0 and tokens.resume == len(data)


# -- class 2: Parquet integer overflow rewrote money and time ----------------


def _parquet(tmp_path: Path, name: str, **columns: pa.Array) -> Path:
    table = rows({}, {}, {}).to_arrow()
    for col, values in columns.items():
        table = table.set_column(table.schema.get_field_index(col), col, values)
    path = tmp_path / name
    pq.write_table(table, path)
    return path


def test_parquet_integers_out_of_range_are_rejected_not_wrapped(tmp_path: Path) -> None:
    path = _parquet(
        tmp_path, "ovf.parquet",
        amount=pa.array([184467440737095517, 1250, 2**63 - 1], pa.int64()),
        ts=pa.array([18448539811309552, 1795737600758, 1795737600758], pa.int64()),
    )
    frame, rejects, _ = _read(path)
    assert frame["amount_fen"].to_list() == [125000]
    assert rejects.select("row", "errors").rows() == [
        (1, "ts: ts_range; amount: amount_format"), (3, "amount: amount_format"),
    ]


def test_parquet_unsigned_and_float_extremes_are_rejected(tmp_path: Path) -> None:
    path = _parquet(
        tmp_path, "flt.parquet",
        amount=pa.array([2**64 - 1, 5, 7], pa.uint64()),
        ts=pa.array([1e30, 1795737600758.0, float("nan")]),
    )
    frame, rejects, _ = _read(path)
    assert frame.height == 1
    assert rejects.select("row", "errors").rows() == [
        (1, "ts: ts_range; amount: amount_format"), (3, "ts: ts_format"),
    ]


def test_parquet_timestamps_out_of_range_are_rejected(tmp_path: Path) -> None:
    path = _parquet(
        tmp_path, "dt.parquet",
        ts=pa.array([-(2**62), 1795737600758, 2**62], pa.timestamp("ms", tz="UTC")),
    )
    frame, rejects, _ = _read(path)
    assert frame.height == 1
    assert rejects["errors"].to_list() == ["ts: ts_range", "ts: ts_range"]


# -- class 7: line endings and blank lines -----------------------------------


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_line_endings_and_blank_lines_make_no_phantom_rows(tmp_path: Path, end: str) -> None:
    lines = [HEADER, _line(event_id="e1"), "", _line(event_id="e2"), _line(event_id="e3")]
    path = tmp_path / "ends.csv"
    path.write_bytes((end.join(lines) + end + end).encode())
    for p in (path, tmp_path / "ends.csv.gz"):
        if p.suffix == ".gz":
            p.write_bytes(gzip.compress(path.read_bytes()))
        frame, rejects, reader = _read(p)
        assert frame["event_id"].to_list() == ["e1", "e2", "e3"]
        assert rejects.height == 0 and reader.stats.rows == 3


def test_cr_only_changes_and_portfolio_files_are_read(tmp_path: Path) -> None:
    changes = tmp_path / "c.csv"
    changes.write_bytes(b"ts,kind,component\r2026-11-11T20:00:00Z,deploy,app\r\r"
                        b"2026-11-11T21:00:00Z,config,gateway\r")
    assert read_changes(changes).valid.height == 2

    from tapshield.impact.portfolio import read_portfolio

    book = tmp_path / "book.csv"
    head = "borrower_id,facility_id,merchant_ids,facility_type,region,outstanding," \
           "contribution_margin,cfads,instalment,next_due_date"
    body = ["b1,f1,m1,term,CN-GD,1000.00,0.30,500.00,100.00,2026-12-01",
            "b2,f2,m2,term,CN-GD,2000.00,0.30,500.00,100.00,2026-12-01"]
    book.write_bytes(("\r".join([head, *body]) + "\r\r").encode())
    pf = read_portfolio(book)
    assert pf.facilities.height == 2 and pf.rejected == 0


def test_jsonl_with_cr_line_ends(tmp_path: Path) -> None:
    lines = [json.dumps(dict(GOOD, event_id=f"e{i}")) for i in range(3)]
    path = tmp_path / "cr.jsonl"
    path.write_text("\r".join(lines) + "\r\r")
    frame, rejects, _ = _read(path)
    assert frame.height == 3 and rejects.height == 0


# -- class 8: silent acceptances and whole-file failures ---------------------


def test_nested_values_are_rejected_by_row(tmp_path: Path) -> None:
    path = _parquet(
        tmp_path, "nested.parquet",
        merchant_id=pa.array([{"a": 1}, None, {"a": 2}]),
        device_id=pa.array([["x"], ["y", "z"], None]),
        user_id=pa.array([b"ok", b"\xff", b"u"], pa.binary()),
    )
    frame, rejects, _ = _read(path)
    assert frame.height == 0
    assert rejects.select("row", "errors").rows() == [
        (1, "device_id: type; merchant_id: type"),
        (2, "user_id: encoding; device_id: type"),
        (3, "merchant_id: type"),
    ]
    assert rejects["merchant_id"][0] == '{"a":1}'


def test_jsonl_objects_exponents_and_nan_are_rejected_numbers_kept_exact(tmp_path: Path) -> None:
    lines = [json.dumps(dict(GOOD, event_id=f"e{i}")) for i in range(5)]
    lines[0] = lines[0].replace('"12.50"', "1e400")
    lines[1] = lines[1].replace('"12.50"', "NaN")
    lines[2] = lines[2].replace('"m1"', '{"x": 1}')
    lines[3] = lines[3].replace('"12.50"', "90071992547409.93")
    lines[4] = lines[4].replace('"12.50"', "1E2")
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(lines) + "\n")
    frame, rejects, _ = _read(path)
    assert frame["amount_fen"].to_list() == [9007199254740993]
    assert rejects.select("row", "errors").rows() == [
        (1, "amount: amount_format"), (2, "amount: amount_format"),
        (3, "merchant_id: type"), (5, "amount: amount_format"),
    ]
    done = _validate(path)
    assert done.returncode == 1 and "Traceback" not in done.stderr


def test_a_huge_field_is_one_rejected_row(tmp_path: Path) -> None:
    big = "x" * 300_000
    lines = [HEADER, _line(event_id="e1"), _line(event_id="e2", device_model=big),
             _line(event_id="e3", device_model=f'"{big}"')]
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    gz = tmp_path / "big.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    for p in (path, gz):
        frame, rejects, _ = _read(p, chunk_rows=1)
        assert frame["event_id"].to_list() == ["e1"]
        assert rejects["errors"].to_list() == ["device_model: text_length"] * 2


def test_duplicate_header_in_a_changes_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("ts,kind,component,kind\n2026-11-11T20:00:00Z,deploy,app,config\n")
    with pytest.raises(ContractError, match="duplicate column"):
        read_changes(path)


def test_an_incident_ending_before_it_starts_is_refused(tmp_path: Path) -> None:
    from tapshield.impact.incidents import load_incidents

    truth = {"faults": [{"id": "f1", "start": "2026-11-11T20:00:00+08:00",
                         "end": "2026-11-11T19:00:00+08:00", "cause": "x", "scope": []}]}
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(truth))
    with pytest.raises(ContractError, match=r"ends .* before it starts"):
        load_incidents(path)
    path.write_text(json.dumps({"faults": [{"id": "f1"}]}))
    with pytest.raises(ContractError, match="not a valid truth file"):
        load_incidents(path)
    path.write_bytes(b'{"faults": "\xe9"}')
    with pytest.raises(ContractError, match="not UTF-8"):
        load_incidents(path)


def test_utf16_files_are_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes((HEADER + "\n" + _line() + "\n").encode("utf-16"))
    with pytest.raises(ContractError, match="UTF-16"):
        _read(path)


# -- class 10: formula injection and a verbatim raw --------------------------


def test_formula_cells_are_neutralised_in_report_csvs(tmp_path: Path) -> None:
    frame = pl.DataFrame({
        "merchant_id": ["=HYPERLINK(\"http://x\")", "+1", "@SUM(A1)", "m1", "-x", "\tcmd"],
        "lost": ["-12.50", "3.00", "0.00", "1.00", "-1", "2"],
    })
    out = write_report_csv(frame, tmp_path / "r.csv")
    back = pl.read_csv(out, infer_schema=False)
    assert back["merchant_id"].to_list() == [
        "'=HYPERLINK(\"http://x\")", "+1", "'@SUM(A1)", "m1", "'-x", "'\tcmd",
    ]
    assert back["lost"].to_list() == frame["lost"].to_list()  # numbers stay numbers
    assert pl.select(formula_safe(pl.lit("=1+1"))).item() == "'=1+1"


def test_rejects_raw_is_the_source_record_byte_for_byte(tmp_path: Path) -> None:
    long_quoted = '"' + 'a,""b""\n' * 500 + '"'
    records = [
        _line(event_id="e1", amount="oops"),
        _line(event_id="e2", device_model=long_quoted, amount="-1"),
        _line(event_id="e3", merchant_id="=HYPERLINK(1)", amount="x"),
    ]
    raw_lines = [r.encode() for r in records] + [
        _line(event_id="e4").encode().replace(b"HW-1", b"HW-\xff\xfe"),
    ]
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\r\n".join([HEADER.encode(), *raw_lines]) + b"\r\n")
    out = tmp_path / "rejects.csv"
    writer = RejectWriter(out)
    reader = EventReader(path, on_reject=writer.write, chunk_rows=2)
    reader.read_all()
    writer.close()
    assert reader.stats.rejected == 4
    assert read_raw(out) == raw_lines
    shown = pl.read_csv(out, infer_schema=False, encoding="utf8-lossy")
    assert "'=HYPERLINK(1)" in shown["merchant_id"].to_list()


def test_a_huge_header_field_is_read(tmp_path: Path) -> None:
    """Found by the long fuzz run: the header went through ``csv``, which refuses
    fields over 131,072 bytes; it now has the records' grammar."""
    path = tmp_path / "wide.csv"
    path.write_text(HEADER + "," + "n" * 200_000 + "\n" + _line() + ",x\n")
    frame, rejects, reader = _read(path)
    assert frame.height == 1 and rejects.height == 0
    assert reader.stats.ignored_columns == ["n" * 200_000]
