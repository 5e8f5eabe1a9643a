"""The input contract of ``tapshield detect``: one metric exported from elsewhere.

A series file is a CSV with a time column and a value column (other columns are
ignored), as exported by Prometheus, a database or a spreadsheet. Accepted
timestamps, decided from the first non-empty one and then required on every row:

* ``YYYY-MM-DD HH:MM[:SS[.f]]`` (the NAB layout; ``T`` also accepted), a local
  wall-clock time in the zone given by ``tz`` (default ``Asia/Shanghai``);
* RFC 3339 with an offset or ``Z``;
* epoch seconds (``1700000000``, ``1700000000.25``) or epoch milliseconds
  (an integer of 12 or more digits: anything from 1973 on).

Problems that make the file unusable raise :class:`ContractError` with one line
naming the row (1 = first data row), the column and the rule: an empty file, a
missing column, an unparsable timestamp, a value that is not a number, an
infinite value, a timestamp in a different format from the first one.

**One output row per input row, always, in input order.** Nothing is sorted,
merged, dropped or added; what is unusual is flagged and reported (each in
:class:`FixUps` with its count and first row, never silent):

* a row whose timestamp does not advance (it repeats the latest earlier one, or
  goes back: a joined export, a clock stepping back an hour) is flagged
  ``repeat``; the detector scores and learns it as arriving just after the
  previous row (refused with ``strict=True``);
* a row that follows a gap in time (more than :data:`GAP_FACTOR` times the
  median of the previous :data:`GAP_STEPS` sampling steps) is flagged ``gap``;
  the detector needs no repair for it: it looks values up by time of day;
* an empty value (or ``NaN``) is a *missing point*: kept in the output with no
  score and never learned by the detector (a scrape that failed is not a zero).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
import polars as pl

from tapshield.errors import ContractError, clip
from tapshield.parsing import OK, RANGE, parse_timestamps
from tapshield.timeutil import DEFAULT_TZ

_ROW = "__row"
_EPOCH = re.compile(r"^\d+(\.\d+)?$")
_OFFSET = re.compile(r"([Zz]|[+-]\d\d:?\d\d)$")
_NAIVE = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?$")
#: epoch integers at or above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973)
EPOCH_MS_FROM = 100_000_000_000


#: a step longer than this many times the recent median step is a gap
GAP_FACTOR = 2.0
#: sampling steps whose median is the expected step
GAP_STEPS = 16
#: more than this share of rows going back in time: the file is probably not in time order
UNSORTED_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class FixUps:
    """What is unusual in the rows, with the first row concerned (1-based data rows)."""

    repeated: int = 0  # timestamp equal to the latest earlier one
    earlier: int = 0  # timestamp before the latest earlier one
    first_repeat: int | None = None  # first row of either kind
    gaps: int = 0
    first_gap: int | None = None
    missing_values: int = 0
    first_missing: int | None = None
    rows: int = 0

    def messages(self) -> list[str]:
        out = []
        if self.repeated or self.earlier:
            kinds = []
            if self.repeated:
                kinds.append(f"{self.repeated} repeat the latest timestamp")
            if self.earlier:
                kinds.append(f"{self.earlier} go back in time")
            out.append(f"{self.repeated + self.earlier} row(s) do not advance in time ("
                       + ", ".join(kinds) + f"; first: row {self.first_repeat}): kept in "
                       "input order, scored as just after the previous row, flagged in "
                       "column 'repeat'")
        if self.earlier > UNSORTED_SHARE * self.rows:
            out.append("the file does not look sorted by time (many rows go back): sort it "
                       "by time first, or the detector sees a scrambled series")
        if self.gaps:
            out.append(f"{self.gaps} gap(s) in time (first: row {self.first_gap}): flagged in "
                       "column 'gap'")
        if self.missing_values:
            out.append(f"{self.missing_values} empty or NaN value(s) (first: row "
                       f"{self.first_missing}); kept as missing points, not scored")
        return out


@dataclass(frozen=True, slots=True)
class Series:
    """A metric ready for the detector: one point per input row, in input order."""

    ts_us: npt.NDArray[np.int64]  # epoch microseconds as read (may repeat or go back)
    values: npt.NDArray[np.float64]  # NaN = missing point
    labels: list[str]  # the timestamp text as written in the file
    rows_read: int
    time_format: str
    fixups: FixUps = field(default_factory=FixUps)
    value_text: list[str | None] | None = None  # the value as written (None: missing)
    repeat: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))
    gap: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))

    def __len__(self) -> int:
        return int(self.ts_us.size)

    def median_step_us(self) -> float | None:
        """Median of the positive sampling steps (``None`` with fewer than two instants)."""
        d = np.diff(self.ts_us)
        d = d[d > 0]
        return float(np.median(d)) if d.size else None


def flag_repeats(ts_us: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.bool_],
                                                         npt.NDArray[np.bool_]]:
    """``(repeat, earlier)``: rows whose timestamp equals / precedes the latest earlier one."""
    if ts_us.size == 0:
        return np.zeros(0, dtype=np.bool_), np.zeros(0, dtype=np.bool_)
    latest = np.maximum.accumulate(ts_us)
    prev = np.r_[np.iinfo(np.int64).min, latest[:-1]]
    return ts_us == prev, ts_us < prev


def flag_gaps(ts_us: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Rows that follow a gap: a step above ``GAP_FACTOR`` x the median of the previous steps.

    Causal, like the detector: the expected step is the median of the previous
    :data:`GAP_STEPS` positive steps (at least three of them), so a change of
    sampling rate is flagged once and then becomes the new normal. Rows that do
    not advance in time are not steps (they are flagged ``repeat``).
    """
    n = ts_us.size
    out = np.zeros(n, dtype=np.bool_)
    if n < 5:
        return out
    latest = np.maximum.accumulate(ts_us)
    d = np.diff(latest)  # d[i-1]: step into row i, 0 for rows that do not advance
    pos = np.flatnonzero(d > 0)
    pd = d[pos].astype(np.float64)
    if pd.size < 4:
        return out
    # med[k]: median of the positive steps pd[k-GAP_STEPS:k] (k = steps seen before)
    med = np.full(pd.size, np.nan)
    for k in range(3, min(GAP_STEPS, pd.size)):
        med[k] = np.median(pd[:k])
    if pd.size > GAP_STEPS:
        win = np.lib.stride_tricks.sliding_window_view(pd[:-1], GAP_STEPS)
        med[GAP_STEPS:] = np.median(win, axis=1)
    hit = pd > GAP_FACTOR * med  # NaN compares False
    out[pos[hit] + 1] = True
    return out


def _error(row: int, column: str, rule: str, value: str | None) -> ContractError:
    shown = "<empty>" if not value else repr(clip(value))
    return ContractError(f"row {row} (line {row + 1}), column {column!r}: {rule} (value {shown})")


def _parse_time(text: pl.Series, rows: pl.Series, column: str, tz: str) -> tuple[
        npt.NDArray[np.int64], str]:
    """Epoch microseconds of every row, or a ContractError naming the first bad one."""
    empty = text.is_null() | (text == "")
    if empty.any():
        i = int(empty.arg_true()[0])
        raise _error(int(rows[i]), column, "timestamp is required", None)
    first = str(text[0])
    if _EPOCH.match(first):
        num = text.cast(pl.Float64, strict=False)
        bad = num.is_null() | ~text.str.contains(r"^\d+(\.\d+)?$")
        if bad.any():
            i = int(bad.arg_true()[0])
            raise _error(int(rows[i]), column,
                         "timestamp is not epoch seconds/milliseconds like the first row",
                         str(text[i]))
        big = num >= EPOCH_MS_FROM
        is_ms = bool(big[0]) and "." not in first
        odd = (big != is_ms) | (text.str.contains(".", literal=True) & is_ms)
        if odd.any():
            i = int(odd.arg_true()[0])
            unit = "milliseconds" if is_ms else "seconds"
            raise _error(int(rows[i]), column,
                         f"timestamp is not epoch {unit} like the first row", str(text[i]))
        if is_ms:
            us = text.cast(pl.Int64).to_numpy() * 1000
            return us.astype(np.int64), "epoch milliseconds"
        return np.round(num.to_numpy() * 1e6).astype(np.int64), "epoch seconds"
    if _OFFSET.search(first):
        us, status = parse_timestamps(text)
        bad_rows = np.flatnonzero(status != OK)
        if bad_rows.size:
            i = int(bad_rows[0])
            rule = ("timestamp out of range (years 2000-2099)" if status[i] == RANGE
                    else "timestamp is not RFC 3339 with an offset like the first row")
            raise _error(int(rows[i]), column, rule, str(text[i]))
        return us, "RFC 3339"
    if _NAIVE.match(first):
        norm = text.str.replace("T", " ", literal=True)
        norm = pl.Series(np.where(norm.str.len_chars() == 16, norm + ":00", norm))
        parsed = norm.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us")
        bad = parsed.is_null() | ~text.str.contains(_NAIVE.pattern)
        if bad.any():
            i = int(bad.arg_true()[0])
            raise _error(int(rows[i]), column,
                         "timestamp is not YYYY-MM-DD HH:MM:SS like the first row", str(text[i]))
        try:
            local = parsed.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        except Exception as exc:  # polars raises ComputeError for unknown zones
            raise ContractError(f"unknown time zone {tz!r}") from exc
        gap = local.is_null()
        if gap.any():
            i = int(gap.arg_true()[0])
            raise _error(int(rows[i]), column,
                         f"local time does not exist in {tz} (clock change)", str(text[i]))
        us = local.dt.convert_time_zone("UTC").cast(pl.Int64).to_numpy()
        return us.astype(np.int64), f"local time ({tz})"
    raise _error(int(rows[0]), column,
                 "timestamp format not recognised (expected YYYY-MM-DD HH:MM:SS, RFC 3339, "
                 "or epoch seconds/milliseconds)", first)


def series_from_frame(df: pl.DataFrame, time_col: str, value_col: str, *,
                      tz: str = DEFAULT_TZ, strict: bool = False) -> Series:
    """Validate and repair a frame of strings (as read from CSV) into a :class:`Series`."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ContractError(f"unknown time zone {tz!r}") from exc
    missing = [c for c in (time_col, value_col) if c not in df.columns]
    if missing:
        raise ContractError(
            f"missing column(s) {', '.join(repr(c) for c in missing)}; the file has "
            f"{', '.join(repr(c) for c in df.columns) or 'no columns'}"
        )
    if df.height == 0:
        raise ContractError("the file has a header but no data rows")
    rows = pl.Series(_ROW, np.arange(1, df.height + 1, dtype=np.int64))
    text = df[time_col].cast(pl.String).str.strip_chars()
    raw = df[value_col].cast(pl.String).str.strip_chars()
    ts, fmt = _parse_time(text, rows, time_col, tz)

    val = raw.cast(pl.Float64, strict=False)
    not_number = val.is_null() & raw.is_not_null() & (raw != "")
    if not_number.any():
        i = int(not_number.arg_true()[0])
        raise _error(int(rows[i]), value_col, "value is not a number", str(raw[i]))
    v = val.to_numpy().astype(np.float64)
    inf = np.isinf(v)
    if inf.any():
        i = int(np.flatnonzero(inf)[0])
        raise _error(i + 1, value_col, "value is infinite", str(raw[i]))
    miss = np.isnan(v)

    repeated, earlier = flag_repeats(ts)
    late = repeated | earlier
    if strict and late.any():
        i = int(np.flatnonzero(late)[0])
        rule = ("timestamp repeats the previous row" if repeated[i]
                else "timestamp is earlier than a previous row")
        raise _error(i + 1, time_col, f"{rule} (--strict)", str(text[i]))
    gap = flag_gaps(ts)

    def first(mask: npt.NDArray[np.bool_]) -> int | None:
        return int(np.flatnonzero(mask)[0]) + 1 if mask.any() else None

    fix = FixUps(
        repeated=int(repeated.sum()), earlier=int(earlier.sum()), first_repeat=first(late),
        gaps=int(gap.sum()), first_gap=first(gap),
        missing_values=int(miss.sum()), first_missing=first(miss), rows=df.height,
    )
    written = pl.Series(raw).set(pl.Series(miss), None).to_list() if miss.any() else raw.to_list()
    return Series(ts_us=ts.astype(np.int64), values=v, labels=text.to_list(), value_text=written,
                  rows_read=df.height, time_format=fmt, fixups=fix, repeat=late, gap=gap)


def read_series(path: Path, time_col: str = "timestamp", value_col: str = "value", *,
                tz: str = DEFAULT_TZ, strict: bool = False) -> Series:
    """Read a series CSV (see the module docstring for the contract and the fix-ups)."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"is a directory, not a series file: {path}")
    if path.stat().st_size == 0:
        raise ContractError(f"{path} is empty (expected a CSV header and rows)")
    # The event contract's CSV grammar: CR, LF or CRLF line ends, blank lines
    # skipped, quotes as RFC 4180 (docs/contracts.md); bounded work per byte.
    from tapshield.csvgrammar import read_table_csv

    try:
        header, columns, _, broken = read_table_csv(path.read_bytes(), path.name)
    except ValueError as exc:
        raise ContractError(f"{path} is not a readable CSV: {clip(str(exc), 120)}") from exc
    if broken:
        row, column, rule, _ = broken[0]
        raise ContractError(
            f"{path} is not a readable CSV: row {row}, column {column!r}: {rule} "
            f"({len(broken)} broken record(s))"
        )
    df = pl.DataFrame(
        dict(zip(header, columns, strict=True)), schema=dict.fromkeys(header, pl.String())
    )
    return series_from_frame(df, time_col, value_col, tz=tz, strict=strict)
