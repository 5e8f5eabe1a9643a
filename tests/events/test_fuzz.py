"""Fuzzing every reader and writer of the input contracts (issue 12).

Hypothesis generates CSV (encodings, byte-order marks, LF/CRLF/CR, blank
lines, quoting, stray quotes, bytes that are not UTF-8, huge fields), JSONL
(every JSON type, extreme numbers) and Parquet (integer and float extremes,
structs, lists, bytes) inputs and checks what the README promises for all of
them:

* nothing hangs: a watchdog (``faulthandler``) kills the run if one example
  takes longer than ``HANG_SECONDS``, so a hang fails loudly instead of
  stalling CI;
* nothing raises but a one-line :class:`ContractError` (file-level);
* every row is accounted for: read = accepted + rejected;
* every accepted value equals its source: the reference split of clean CSV
  is Python's ``csv`` module, and accepted rows written back by the writers
  read back identical;
* ``tapshield validate`` exits 0 (nothing rejected), 1 (rows rejected) or 2
  (file unusable), never with a traceback.

The default suite runs a bounded number of examples (``FAST``); the
``slow``-marked twins run many more (``pytest -m slow tests/events/test_fuzz.py``).
"""

from __future__ import annotations

import csv
import faulthandler
import gzip
import io
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tapshield.cli import app
from tapshield.errors import ContractError
from tapshield.events.changes import read_changes
from tapshield.events.read import EventReader
from tapshield.events.schema import WIRE_NAMES
from tapshield.events.write import write_events

from .helpers import GOOD

HANG_SECONDS = 300
FAST = settings(max_examples=50, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@contextmanager
def watchdog() -> Iterator[None]:
    """Kill the process (with every thread's stack) if the body runs too long."""
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# -- values ----------------------------------------------------------------

_NASTY_TEXT = st.text(
    alphabet=st.sampled_from([*'ab,"\n\r =+-@\t\'é中', "\u2028", "\x00"]), max_size=12
)
_NUMBERS = st.sampled_from([
    "0", "0.01", "12.5", "12.50", "-1", "1e3", "1E2", "NaN", "inf", "1e400", ".5", "5.",
    "184467440737095517", "999999999999999.99", "1000000000000000.00", "00012.30",
    "1795737600758", "18448539811309552", "-5", "2026-11-11T20:00:00Z",
    "2026-02-30T00:00:00Z", "2026-11-11T20:00:00.123456789+08:00", "2026-11-11 20:00:00+0800",
])


def _value(column: str) -> st.SearchStrategy[str]:
    good = st.just(GOOD[column])
    return st.one_of(good, good, good, _NUMBERS, _NASTY_TEXT, st.just(""))


@st.composite
def records(draw: st.DrawFn, max_rows: int = 12) -> list[dict[str, str]]:
    n = draw(st.integers(0, max_rows))
    out = []
    for i in range(n):
        row = {c: draw(_value(c)) for c in WIRE_NAMES}
        if draw(st.booleans()):
            row["event_id"] = f"e{i}"
        out.append(row)
    return out


def _csv_text(rows: list[dict[str, str]], end: str, quote_all: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=end,
                   quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    w.writerow(WIRE_NAMES)
    for r in rows:
        w.writerow([r[c] for c in WIRE_NAMES])
    return buf.getvalue()


def _reference(text: str) -> list[list[str]]:
    """The records of clean CSV text as Python's ``csv`` module splits them."""
    got = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    return got[1:]


def _read(path: Path, chunk_rows: int) -> tuple[pl.DataFrame, pl.DataFrame, EventReader]:
    seen: list[pl.DataFrame] = []
    reader = EventReader(path, chunk_rows=chunk_rows, on_reject=seen.append)
    frame = reader.read_all()
    rejects = pl.concat(seen) if seen else pl.DataFrame(schema={"row": pl.Int64})
    stats = reader.stats
    assert stats.rows == stats.accepted + stats.rejected
    assert frame.height == stats.accepted and rejects.height == stats.rejected
    return frame, rejects, reader


def _round_trip(frame: pl.DataFrame, folder: Path) -> None:
    """Accepted rows written by each writer read back identical, nothing rejected."""
    for name in ("back.csv", "back.jsonl", "back.parquet", "back.csv.gz"):
        path = folder / name
        write_events(frame, path)
        again, rejects, _ = _read(path, 500_000)
        assert rejects.height == 0, rejects.head(3).to_dicts()
        assert again.equals(frame), name


# -- CSV -------------------------------------------------------------------


def _check_clean_csv(rows: list[dict[str, str]], end: str, quote_all: bool, bom: bool,
                     blank: int, gz: bool, chunk_rows: int) -> None:
    text = _csv_text(rows, end, quote_all)
    if blank:  # blank lines before the first record and after the last
        head, _, body = text.partition(end)
        text = head + end * (blank + 1) + body + end * blank
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    with TemporaryDirectory() as tmp, watchdog():
        folder = Path(tmp)
        path = folder / ("in.csv.gz" if gz else "in.csv")
        path.write_bytes(gzip.compress(data) if gz else data)
        frame, rejects, reader = _read(path, chunk_rows)
        expected = _reference(text)
        assert reader.stats.rows == len(expected)
        rejected_rows = set(rejects["row"].to_list())
        accepted = [r for i, r in enumerate(expected, start=1) if i not in rejected_rows]
        assert len(accepted) == frame.height
        for got, want in zip(frame.iter_rows(named=True), accepted, strict=True):
            source = dict(zip(WIRE_NAMES, want, strict=True))
            for c in ("event_id", "user_id", "device_id", "merchant_id", "channel", "region",
                      "carrier", "os", "app_version", "device_model", "server_version",
                      "merchant_category"):
                assert got[c] == (source[c] or None), c
            assert got["outcome"] == source["outcome"]
        if frame.height:
            _round_trip(frame, folder)


@FAST
@given(records(), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(), st.booleans(),
       st.integers(0, 2), st.booleans(), st.sampled_from([1, 3, 500_000]))
def test_clean_csv_reads_as_python_csv_splits_it(
    rows: list[dict[str, str]], end: str, quote_all: bool, bom: bool, blank: int, gz: bool,
    chunk_rows: int,
) -> None:
    _check_clean_csv(rows, end, quote_all, bom, blank, gz, chunk_rows)


@pytest.mark.slow
@LONG
@given(records(40), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(), st.booleans(),
       st.integers(0, 3), st.booleans(), st.sampled_from([1, 2, 7, 500_000]))
def test_clean_csv_reads_as_python_csv_splits_it_long(
    rows: list[dict[str, str]], end: str, quote_all: bool, bom: bool, blank: int, gz: bool,
    chunk_rows: int,
) -> None:
    _check_clean_csv(rows, end, quote_all, bom, blank, gz, chunk_rows)


def _check_mangled_csv(rows: list[dict[str, str]], cuts: list[tuple[int, bytes]], gz: bool,
                       chunk_rows: int) -> None:
    data = bytearray(_csv_text(rows, "\n", False).encode())
    for pos, junk in cuts:
        at = pos % (len(data) + 1)
        data[at:at] = junk
    with TemporaryDirectory() as tmp, watchdog():
        path = Path(tmp) / ("m.csv.gz" if gz else "m.csv")
        path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
        try:
            frame, _, reader = _read(path, chunk_rows)
        except ContractError as exc:
            assert "\n" not in str(exc)
            return
        # a record ends at a line end: never more rows than line ends (+ the last)
        assert reader.stats.rows <= data.count(b"\n") + data.count(b"\r") + 1
        if frame.height:
            _round_trip(frame, Path(tmp))


_JUNK = st.sampled_from([b'"', b'""', b'"\n', b"\r", b"\n\n", b",", b"\xff", b"\xe4\xb8",
                         b"\xef\xbb\xbf", b'5" screen', b"x" * 70_000, b"\x00",
                         b"y" * 140_000])


@FAST
@given(records(8), st.lists(st.tuples(st.integers(0, 10**6), _JUNK), max_size=4),
       st.booleans(), st.sampled_from([1, 2, 500_000]))
def test_mangled_csv_never_hangs_or_loses_rows(
    rows: list[dict[str, str]], cuts: list[tuple[int, bytes]], gz: bool, chunk_rows: int
) -> None:
    _check_mangled_csv(rows, cuts, gz, chunk_rows)


@pytest.mark.slow
@LONG
@given(records(30), st.lists(st.tuples(st.integers(0, 10**6), _JUNK), max_size=8),
       st.booleans(), st.sampled_from([1, 2, 5, 500_000]))
def test_mangled_csv_never_hangs_or_loses_rows_long(
    rows: list[dict[str, str]], cuts: list[tuple[int, bytes]], gz: bool, chunk_rows: int
) -> None:
    _check_mangled_csv(rows, cuts, gz, chunk_rows)


# -- JSONL -----------------------------------------------------------------

_JSON_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), _NASTY_TEXT, _NUMBERS,
    st.lists(st.integers(), max_size=2), st.dictionaries(st.just("k"), st.integers(), max_size=1),
)


@st.composite
def json_lines(draw: st.DrawFn) -> list[str]:
    out = []
    for i in range(draw(st.integers(0, 10))):
        obj: dict[str, Any] = dict(GOOD, event_id=f"e{i}")
        for c in draw(st.lists(st.sampled_from(WIRE_NAMES), max_size=4)):
            obj[c] = draw(_JSON_VALUES)
        line = json.dumps(obj)
        if draw(st.integers(0, 9)) == 0:
            line = line[: draw(st.integers(0, len(line)))]  # a torn line
        out.append(line)
    return out


def _check_jsonl(lines: list[str], end: str, gz: bool) -> None:
    data = end.join(lines).encode() + end.encode()
    with TemporaryDirectory() as tmp, watchdog():
        path = Path(tmp) / ("e.jsonl.gz" if gz else "e.jsonl")
        path.write_bytes(gzip.compress(data) if gz else data)
        try:
            frame, rejects, reader = _read(path, 4)
        except ContractError as exc:
            assert "\n" not in str(exc)
            return
        assert reader.stats.rows == sum(1 for x in lines if x.strip())
        rejected = set(rejects["row"].to_list())
        # numbers and NaN/Infinity are read as their source text
        good = {
            n: json.loads(x, parse_float=str, parse_int=str, parse_constant=str)
            for n, x in enumerate(lines, start=1)
            if x.strip() and n not in rejected
        }
        for got, (_, src) in zip(frame.iter_rows(named=True), sorted(good.items()), strict=True):
            for c in ("event_id", "user_id", "device_id", "merchant_id", "device_model"):
                v = src.get(c)
                assert got[c] == (str(v) if v not in (None, "") else None), c
        if frame.height:
            _round_trip(frame, Path(tmp))


@FAST
@given(json_lines(), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
def test_jsonl_never_fails_the_file_and_keeps_values_exact(
    lines: list[str], end: str, gz: bool
) -> None:
    _check_jsonl(lines, end, gz)


@pytest.mark.slow
@LONG
@given(json_lines(), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
def test_jsonl_never_fails_the_file_and_keeps_values_exact_long(
    lines: list[str], end: str, gz: bool
) -> None:
    _check_jsonl(lines, end, gz)


# -- Parquet ---------------------------------------------------------------

_PARQUET_COLUMNS: list[Callable[[int], pa.Array]] = [
    lambda n: pa.array([2**63 - 1, -(2**63), 0, 1250][:n] * n, pa.int64())[:n],
    lambda n: pa.array([2**64 - 1, 0, 18448539811309552][:n] * n, pa.uint64())[:n],
    lambda n: pa.array([1e30, float("nan"), float("inf"), 12.5, -0.0][:n] * n)[:n],
    lambda n: pa.array([{"a": 1}, None] * n)[:n],
    lambda n: pa.array([[1, 2], None, []] * n)[:n],
    lambda n: pa.array([b"ok", b"\xff", None] * n, pa.binary())[:n],
    lambda n: pa.array([True, False] * n)[:n],
    lambda n: pa.array([1795737600758, -(2**62)] * n, pa.timestamp("ms", tz="UTC"))[:n],
]


def _check_parquet(n: int, replaced: list[tuple[str, int]]) -> None:
    base = pl.DataFrame([dict(GOOD, event_id=f"e{i}") for i in range(n)],
                        schema=dict.fromkeys(WIRE_NAMES, pl.String())).to_arrow()
    for column, kind in replaced:
        base = base.set_column(base.schema.get_field_index(column), column,
                               _PARQUET_COLUMNS[kind](n))
    with TemporaryDirectory() as tmp, watchdog():
        path = Path(tmp) / "e.parquet"
        pq.write_table(base, path)
        try:
            frame, _, _ = _read(path, 3)
        except ContractError as exc:
            assert "\n" not in str(exc)
            return
        if frame.height:
            _round_trip(frame, Path(tmp))


@FAST
@given(st.integers(1, 8), st.lists(st.tuples(st.sampled_from(WIRE_NAMES),
                                             st.integers(0, len(_PARQUET_COLUMNS) - 1)),
                                   max_size=3, unique_by=lambda t: t[0]))
def test_parquet_types_and_extremes_are_rejected_by_row(
    n: int, replaced: list[tuple[str, int]]
) -> None:
    _check_parquet(n, replaced)


# -- the validate command and the small tables -----------------------------

_runner = CliRunner()


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(records(6), st.sampled_from(["\n", "\r\n", "\r"]),
       st.sampled_from([b"", b'"', b"\xff", b"\n\n"]), st.sampled_from(["csv", "jsonl"]))
def test_validate_exit_codes_are_as_documented(
    rows: list[dict[str, str]], end: str, junk: bytes, fmt: str
) -> None:
    if fmt == "csv":
        data = _csv_text(rows, end, False).encode() + junk
    else:
        data = (end.join(json.dumps(r) for r in rows) + end).encode() + junk
    with TemporaryDirectory() as tmp, watchdog():
        path = Path(tmp) / f"v.{fmt}"
        path.write_bytes(data)
        res = _runner.invoke(app, ["validate", str(path), "--rejects", str(Path(tmp) / "r.csv")])
        assert res.exit_code in (0, 1, 2), res.output
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
        assert "Traceback" not in res.output
        rejected = (Path(tmp) / "r.csv").exists()
        if res.exit_code == 0:
            assert not rejected
        if res.exit_code == 1:
            assert rejected


@FAST
@given(st.lists(st.tuples(_NUMBERS, st.sampled_from(["deploy", "maintenance", "x", ""]),
                          _NASTY_TEXT), max_size=8),
       st.sampled_from(["\n", "\r\n", "\r"]), st.integers(0, 2))
def test_changes_files_account_for_every_record(
    rows: list[tuple[str, str, str]], end: str, blank: int
) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=end)
    w.writerow(["ts", "kind", "component"])
    w.writerows(rows)
    text = buf.getvalue() + end * blank
    with TemporaryDirectory() as tmp, watchdog():
        path = Path(tmp) / "c.csv"
        path.write_text(text, newline="")
        result = read_changes(path)
        assert result.valid.height + result.rejects.height == len(_reference(text))


def test_the_watchdog_is_armed() -> None:
    """The hang guard is real: faulthandler's timer is available in this interpreter."""
    assert hasattr(faulthandler, "dump_traceback_later")
    assert sys.version_info >= (3, 11)
