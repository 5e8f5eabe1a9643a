"""Readers and writers: every format round-trips, chunking changes nothing,
structurally broken records are named and rejected, never fatal."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.errors import ContractError
from tapshield.events.read import EventReader, read_events
from tapshield.events.write import write_events
from tests.events.helpers import rows

FORMATS = ["csv", "csv.gz", "jsonl", "jsonl.gz", "parquet"]


@pytest.mark.parametrize("name", ["events-rfc3339.csv", "events-epoch-ms.csv"])
def test_public_examples_are_accepted_as_they_are(examples: Path, name: str) -> None:
    reader = EventReader(examples / name)
    frame = reader.read_all()
    assert reader.stats.rejected == 0, reader.stats.errors
    assert frame.height == reader.stats.rows > 100


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_every_format(examples: Path, tmp_path: Path, fmt: str) -> None:
    original = read_events(examples / "events-rfc3339.csv")
    back = read_events(write_events(original, tmp_path / f"events.{fmt}"))
    assert back.equals(original)


@pytest.mark.parametrize("fmt", FORMATS)
def test_chunking_does_not_change_the_result(examples: Path, tmp_path: Path, fmt: str) -> None:
    path = write_events(read_events(examples / "events-epoch-ms.csv"), tmp_path / f"e.{fmt}")
    whole = EventReader(path).read_all()
    chunks = list(EventReader(path, chunk_rows=7))
    assert len(chunks) > 10
    assert pl.concat(chunks).equals(whole)


def test_duplicates_are_caught_across_chunks(tmp_path: Path) -> None:
    frame = rows(*[{} for _ in range(20)]).with_columns(
        pl.Series("event_id", [f"e{i % 15}" for i in range(20)])
    )
    path = tmp_path / "dups.csv"
    frame.write_csv(path)
    seen: list[pl.DataFrame] = []
    reader = EventReader(path, chunk_rows=4, on_reject=seen.append)
    assert reader.read_all().height == 15
    rejected = pl.concat(seen)
    assert rejected["row"].to_list() == [16, 17, 18, 19, 20]
    assert set(rejected["errors"]) == {"event_id: duplicate"}


def test_ragged_and_undecodable_csv_records_are_rejected_by_row(tmp_path: Path) -> None:
    good = rows({}, {}, {}, {})
    text = good.write_csv().splitlines()
    text[2] = text[2] + ",extra-field"
    raw = ("\n".join(text) + "\n").encode()
    raw = raw.replace(b"m1", b"m\xff1", 1)  # invalid UTF-8 in the first data row
    path = tmp_path / "broken.csv"
    path.write_bytes(raw)
    seen: list[pl.DataFrame] = []
    reader = EventReader(path, on_reject=seen.append)
    frame = reader.read_all()
    rejected = pl.concat(seen).sort("row")
    assert dict(zip(rejected["row"], rejected["errors"], strict=True)) == {
        1: "merchant_id: encoding",
        2: "*: field_count",
    }
    assert frame["event_id"].to_list() == ["e3", "e4"]
    assert reader.stats.rows == 4 and reader.stats.accepted == 2 and reader.stats.rejected == 2


def test_bad_json_lines_are_rejected_by_line(tmp_path: Path) -> None:
    good = rows({}, {})
    lines = good.write_ndjson().splitlines()
    path = tmp_path / "e.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(lines[0] + "\n\n{not json\n[1, 2]\n" + lines[1] + "\n")
    seen: list[pl.DataFrame] = []
    frame = EventReader(path, on_reject=seen.append).read_all()
    assert frame.height == 2
    rejected = pl.concat(seen)
    assert rejected["row"].to_list() == [3, 4]
    assert set(rejected["errors"]) == {"*: json_syntax"}


def test_json_numbers_and_strings_both_work(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(
        '{"event_id":"a","ts":1795737600758,"user_id":"u","device_id":"d","merchant_id":"m",'
        '"channel":"nfc","region":"CN-GD","amount":12.5,"outcome":"approved","latency_ms":12}\n'
    )
    frame = read_events(path)
    assert frame["amount_fen"].to_list() == [1250]
    assert frame["latency_ms"].to_list() == [12.0]


def test_missing_required_column_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    rows({}).drop("region", "amount").write_csv(path)
    with pytest.raises(ContractError, match="missing required columns region, amount"):
        EventReader(path).read_all()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("e.txt", b"x", "unknown file type"),
        ("e.csv", b"", "empty file"),
        ("e.parquet", b"not parquet", "not a readable Parquet file"),
        ("e.csv.gz", b"not gzip", "unreadable CSV"),
    ],
)
def test_unreadable_files_are_file_errors(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ContractError, match=message):
        EventReader(path).read_all()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10**12),
            st.integers(min_value=946_684_800_000, max_value=4_102_444_799_000),
            st.sampled_from(["+08:00", "Z", "-05:30", "+00:00"]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_amounts_and_instants_survive_any_value(values: list[tuple[int, int, str]]) -> None:
    """Property: fen -> decimal text -> fen, and instant -> RFC 3339 text -> instant."""
    from datetime import UTC, datetime, timedelta

    from tapshield.events.validate import validate_frame
    from tapshield.money import format_fen
    from tapshield.timeutil import to_rfc3339

    specs = []
    for fen, ms, offset in values:
        t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
        text = to_rfc3339(t, "UTC").replace("+00:00", "Z") if offset == "Z" else None
        if text is None:
            from datetime import timezone

            sign = 1 if offset[0] == "+" else -1
            hh, mm = int(offset[1:3]), int(offset[4:6])
            tz = timezone(sign * timedelta(hours=hh, minutes=mm))
            text = t.astimezone(tz).isoformat(timespec="milliseconds")
        specs.append({"amount": format_fen(fen), "ts": text})
    result = validate_frame(rows(*specs))
    assert result.rejects.height == 0, result.errors()
    assert result.valid["amount_fen"].to_list() == [f for f, _, _ in values]
    got = result.valid["ts"].cast(pl.Int64).to_list()
    assert got == [ms * 1000 for _, ms, _ in values]


def test_first_acceptable_copy_is_kept_whatever_the_chunking(tmp_path: Path) -> None:
    """A rejected first copy does not make a later good copy a duplicate, in the
    same batch or a later one, so the chunk size cannot change the result."""
    frame = rows(*[{} for _ in range(12)]).with_columns(
        pl.Series("event_id", ["a", "b", "a", "c", "b", "d", "a", "e", "f", "c", "g", "h"]),
        pl.Series("amount", ["oops", *["1.00"] * 11]),  # the first "a" is rejected
    )
    path = tmp_path / "dups.csv"
    frame.write_csv(path)
    results = []
    for chunk_rows in (1, 2, 5, 100):
        seen: list[pl.DataFrame] = []
        valid = EventReader(path, chunk_rows=chunk_rows, on_reject=seen.append).read_all()
        rejected = pl.concat(seen).select("row", "errors")
        results.append((valid, rejected))
    for valid, rejected in results:
        assert valid.equals(results[0][0])
        assert rejected.equals(results[0][1])
    valid, rejected = results[0]
    assert valid["event_id"].to_list() == ["b", "a", "c", "d", "e", "f", "g", "h"]
    assert rejected.rows() == [
        (1, "amount: amount_format"),
        (5, "event_id: duplicate"),
        (7, "event_id: duplicate"),
        (10, "event_id: duplicate"),
    ]


def test_quoted_newlines_survive_any_chunking(tmp_path: Path) -> None:
    """Chunks are cut on newlines found by probing; a cut inside a quoted field
    (a newline in a value) is detected and the file re-cut counting quotes."""
    n = 300
    frame = rows(*[{} for _ in range(n)]).with_columns(
        pl.Series("event_id", [f"e{i}" for i in range(n)]),
        pl.Series("device_model", [f"line1\nline2 {i}\n\n" if i % 3 else "M" for i in range(n)]),
    )
    path = tmp_path / "quoted.csv"
    frame.write_csv(path)
    whole = EventReader(path).read_all()
    assert whole["device_model"].to_list() == frame["device_model"].to_list()
    for chunk_rows in (1, 2, 7, 50):
        reader = EventReader(path, chunk_rows=chunk_rows)
        assert pl.concat(list(reader)).equals(whole)
        assert reader.stats.rows == n


def test_a_broken_record_late_in_the_file_keeps_every_row_in_place(tmp_path: Path) -> None:
    """Rows before and after a broken record keep their numbers and values,
    whatever the chunk size."""
    n, broken = 40_000, 30_000
    good = rows({}).select(pl.all().repeat_by(n).explode()).with_columns(
        pl.format("e{}", pl.int_range(1, n + 1)).alias("event_id")
    )
    lines = good.write_csv().splitlines()
    lines[broken] += ",extra-field"
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")
    expected = [f"e{i}" for i in range(1, n + 1) if i != broken]
    for chunk_rows in (7_000, 100_000):
        seen: list[pl.DataFrame] = []
        reader = EventReader(path, chunk_rows=chunk_rows, on_reject=seen.append)
        frame = reader.read_all()
        assert frame["event_id"].to_list() == expected
        assert pl.concat(seen).select("row", "errors").rows() == [(broken, "*: field_count")]
        assert reader.stats.rows == n


def test_short_records_are_padded_wherever_a_chunk_starts(tmp_path: Path) -> None:
    """A record with fewer fields than the header has its trailing fields empty,
    also when it is the first record of a chunk."""
    frame = rows(*[{} for _ in range(40)])
    lines = frame.write_csv().splitlines()
    for i in range(1, len(lines), 3):  # drop risk_decision (the last column)
        lines[i] = lines[i].rsplit(",", 1)[0]
    path = tmp_path / "short.csv"
    path.write_text("\n".join(lines) + "\n")
    whole = EventReader(path).read_all()
    assert whole.height == 40 and whole["risk_decision"].null_count() == 14
    for chunk_rows in (1, 3, 7):
        reader = EventReader(path, chunk_rows=chunk_rows)
        assert pl.concat(list(reader)).equals(whole)


def test_a_consumer_may_stop_early(tmp_path: Path) -> None:
    """Abandoning a reader halfway waits for its workers and frees the file."""
    frame = rows(*[{} for _ in range(300)]).with_columns(
        pl.format("e{}", pl.int_range(pl.len())).alias("event_id")
    )
    for fmt in ("csv", "parquet"):
        path = tmp_path / f"stop.{fmt}"
        write_events(read_events_frame(frame), path)
        batches = iter(EventReader(path, chunk_rows=10))
        first = next(batches)
        assert 0 < first.height <= 10
        batches.close()  # type: ignore[attr-defined]
        assert EventReader(path).read_all().height == 300


def read_events_frame(frame: pl.DataFrame) -> pl.DataFrame:
    from tapshield.events.validate import validate_frame

    result = validate_frame(frame)
    assert result.rejects.height == 0
    return result.valid
