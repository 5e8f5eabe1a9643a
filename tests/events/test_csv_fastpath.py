"""The CSV reader's cheaper steps give exactly what the slower ones gave.

* The tokenizer builds each Arrow string view from the value's bytes as
  words (no byte copy loop): every length from 0 to past the 12 inline bytes,
  at the start, middle and very end of the buffer, must read back as the
  source text.
* Row numbers are made only for batches with a rejected row: a reject in a
  later chunk (and a later piece) still carries its own record number and raw
  bytes, on the Polars-split path and on the tokenizer's path alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tapshield.csvgrammar import Tokens
from tapshield.events.read import EventReader
from tapshield.events.rejects import RejectWriter, read_raw

from .helpers import GOOD

HEADER = ",".join(GOOD)


def _values(tokens: Tokens, col: int) -> list[bytes | None]:
    """The values of one output column, read back from the views."""
    out: list[bytes | None] = []
    for r in range(tokens.rows):
        if tokens.nulls[col, r]:
            out.append(None)
            continue
        v = tokens.views[col, r]
        ln = int(v[0])
        if ln <= 12:
            out.append(v[1:4].tobytes()[:ln])
            # the inline bytes past the value are zero (Arrow's rule)
            assert v[1:4].tobytes()[ln:] == bytes(12 - ln)
        else:
            src = tokens.side if v[2] == 1 else tokens.buf
            assert v[1:2].tobytes() == bytes(src[int(v[3]) : int(v[3]) + 4])
            out.append(bytes(src[int(v[3]) : int(v[3]) + ln]))
    return out


@pytest.mark.parametrize("quoted", [False, True])
@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r", b""])
def test_views_of_every_length_read_back_as_the_source(quoted: bool, end: bytes) -> None:
    values = [bytes(range(65, 65 + n)) for n in range(0, 20)]
    # ... and a value with a doubled quote (unescaped into the side buffer)
    if quoted:
        values.append(b'say ""hi"" to everyone here')
    lines = []
    for v in values:
        field = b'"' + v + b'"' if quoted else v
        lines.append(b"x," + field)
    # the last value ends at the very end of the buffer when ``end`` is empty
    data = (end or b"\n").join(lines) + end
    tokens = Tokens(data, np.arange(2, dtype=np.int64), 2, True)
    assert tokens.rows == len(values)
    got = _values(tokens, 1)
    expected = [v.replace(b'""', b'"') if v else None for v in values]
    assert got == expected


def test_a_value_ending_the_buffer_is_read_without_reading_past_it() -> None:
    for n in range(1, 16):
        data = b"a," + b"z" * n
        tokens = Tokens(data, np.arange(2, dtype=np.int64), 2, True)
        assert _values(tokens, 1) == [b"z" * n]


@pytest.mark.parametrize("line_end", ["\n", "\r"])
def test_rejects_in_later_chunks_keep_their_row_numbers(tmp_path: Path, line_end: str) -> None:
    """``\\n``: pieces Polars splits; ``\\r`` (CR-only): the tokenizer's."""
    n = 40
    bad = {7: "oops", 23: "-1", 40: "x"}
    records = []
    for i in range(1, n + 1):
        values = dict(GOOD, event_id=f"e{i}", payment_id=f"p{i}")
        if i in bad:
            values["amount"] = bad[i]
        records.append(",".join(values.values()))
    path = tmp_path / "events.csv"
    path.write_text(line_end.join([HEADER, *records]) + line_end)
    out = tmp_path / "rejects.csv"
    writer = RejectWriter(out)
    reader = EventReader(path, on_reject=writer.write, chunk_rows=5)
    frame = reader.read_all()
    writer.close()
    assert reader.stats.rows == n and reader.stats.rejected == len(bad)
    assert frame.height == n - len(bad)
    shown = pl.read_csv(out, infer_schema=False)
    assert [int(r) for r in shown["row"].to_list()] == sorted(bad)
    assert shown["amount"].to_list() == [bad[r] for r in sorted(bad)]
    assert read_raw(out) == [records[r - 1].encode() for r in sorted(bad)]
    assert [e.row for e in reader.stats.errors] == sorted(bad)
