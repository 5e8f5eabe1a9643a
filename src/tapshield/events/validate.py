"""Row-level validation of the payment-event contract, vectorised.

Validation runs in two stages so that a replay of a 10-million-row file and a
live micro-batch of fifty events share one code path and the common case (a
clean file) costs little more than reading it:

1. :func:`parse` applies pure Polars expressions that parse every column
   into its canonical type and compute one boolean flag per (rule, column).
   They run inside a lazy scan, so the streaming engine parses and checks
   while it reads, on every core.
2. :func:`finish` takes a collected batch, parses text timestamps and
   amounts with compiled single-pass kernels (:mod:`tapshield.parsing`; a general
   ``strptime`` costs more than reading the file), detects duplicate
   ``event_id`` s across batches, and splits the batch into canonical rows and
   rejected rows with their reasons.

Nothing is dropped silently: every input row ends up either in
``ValidationResult.valid`` or in ``ValidationResult.rejects`` with an
``errors`` text naming the column and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import polars as pl

from tapshield.errors import ContractError, RowError, clip
from tapshield.events.codes import APPROVAL_CODES
from tapshield.events.idindex import EventIdIndex
from tapshield.events.schema import (
    CANONICAL_SCHEMA,
    ID_COLUMNS,
    OPTIONAL_STRINGS,
    OUTCOME_DTYPE,
    REQUIRED,
    RISK_DTYPE,
    RULE_NAMES,
    WIRE_NAMES,
)
from tapshield.parsing import BAD, OK, RANGE, parse_amounts, parse_timestamps
from tapshield.timeutil import TS_DTYPE

ROW = "_row"
"""1-based record number in the source (for JSONL: the line number)."""

MAX_ID_BYTES = 128
MAX_TEXT_BYTES = 128
_TS_MIN_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z
_TS_MAX_US = 4_102_444_800_000_000  # 2100-01-01T00:00:00Z

_CHANNEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_REGION_RE = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")
_CODE_RE = re.compile(r"^[0-9A-Z]{2}$")
_FLAG = "__bad__"
_RAW = "__raw__"
_ANY = "__bad_any__"
_K_TS = "__kernel_ts__"
_K_AMOUNT = "__kernel_amount__"


@dataclass(slots=True)
class ValidationResult:
    valid: pl.DataFrame
    """Accepted rows in the canonical schema."""
    rejects: pl.DataFrame
    """Rejected rows: ``row``, ``errors``, ``raw`` and the wire columns as text."""

    def errors(self, limit: int | None = None) -> list[RowError]:
        """Structured errors of the rejected rows (the first ``limit`` rows)."""
        out: list[RowError] = []
        frame = self.rejects if limit is None else self.rejects.head(limit)
        for rec in frame.iter_rows(named=True):
            for part in (rec["errors"] or "").split("; "):
                column, _, rule = part.partition(": ")
                value = rec.get(column) if column in WIRE_NAMES else rec.get("raw")
                out.append(RowError(rec["row"], column, rule, value))
        return out


REJECT_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "errors": pl.String(),
    "raw": pl.String(),
    **{name: pl.String() for name in WIRE_NAMES},
}


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def _flag(rule: str, column: str) -> str:
    assert rule in RULE_NAMES, rule
    return f"{_FLAG}{rule}__{column}"


def _parse_flag(name: str) -> tuple[str, str]:
    rule, _, column = name[len(_FLAG) :].partition("__")
    return rule, column


def _as_text(col: str, dtype: pl.DataType) -> pl.Expr:
    """A column as text (natively typed Parquet columns are cast)."""
    return pl.col(col) if dtype == pl.String else pl.col(col).cast(pl.String)


def _missing(e: pl.Expr) -> pl.Expr:
    """Null or empty: CSV gives null for ``,,`` but ``""`` for a quoted empty field,
    JSON gives ``""``; the contract treats all of them as 'no value'."""
    return e.is_null() | (e.str.len_bytes() == 0)


# ---------------------------------------------------------------------------
# stage 1: parse every column, flag every broken rule (pure expressions)

PARSED: tuple[str, ...] = (
    "ts", "amount", "latency_ms", "outcome", "risk_decision", "response_code", "payment_id"
)
"""Wire columns whose canonical value differs from the text; their raw values
are kept as ``__raw__<name>`` so a rejected row can be shown as it was sent."""


def _raw(c: str) -> str:
    return f"{_RAW}{c}" if c in PARSED else c


def _ts(dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr] | None:
    """Parse expressions for a natively typed ``ts``; ``None`` for text (see stage 2)."""
    raw = pl.col(_raw("ts"))
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            raise ContractError(
                "column 'ts' is a timestamp without a time zone; write it UTC-adjusted "
                "or as epoch milliseconds"
            )
        return raw.dt.convert_time_zone("UTC").dt.cast_time_unit("us"), pl.lit(False)
    if dtype.is_integer():
        return (raw.cast(pl.Int64) * 1000).cast(TS_DTYPE), pl.lit(False)
    if dtype.is_float():
        exact = raw.is_finite() & (raw == raw.round(0))
        parsed = pl.when(exact).then((raw * 1000).cast(pl.Int64)).cast(TS_DTYPE)
        return parsed, raw.is_not_null() & ~exact
    return None


def _ts_range(ts: pl.Expr) -> pl.Expr:
    us = ts.cast(pl.Int64)
    return ((us < _TS_MIN_US) | (us >= _TS_MAX_US)).fill_null(False)


def _amount(dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr] | None:
    """Parse expressions for a natively typed ``amount``; ``None`` for text (see stage 2)."""
    raw = pl.col(_raw("amount"))
    if isinstance(dtype, pl.Decimal):
        fen = raw * 100
        parsed = pl.when((fen == fen.round(0)) & (raw >= 0)).then(fen.cast(pl.Int64, strict=False))
        return parsed, raw.is_not_null() & parsed.is_null()
    if dtype.is_integer():
        parsed = pl.when(raw >= 0).then(raw.cast(pl.Int64) * 100)
        return parsed, raw.is_not_null() & parsed.is_null()
    if dtype.is_float():
        cents = raw * 100
        rounded = cents.round(0)
        exact = raw.is_finite() & ((cents - rounded).abs() <= 1e-6 * (rounded.abs() + 1))
        parsed = pl.when(exact & (raw >= 0)).then(rounded.cast(pl.Int64, strict=False))
        return parsed, raw.is_not_null() & parsed.is_null()
    return None


def _latency(dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    raw = pl.col(_raw("latency_ms"))
    if dtype.is_numeric():
        value = raw.cast(pl.Float64)
        present = raw.is_not_null()
    else:
        text = _as_text(_raw("latency_ms"), dtype)
        value = text.cast(pl.Float64, strict=False)
        present = ~_missing(text)
    good = value.is_finite() & (value >= 0)
    return pl.when(good).then(value), present & ~good.fill_null(False)


def _absent(col: str, dtype: pl.DataType) -> pl.Expr:
    """No value: null, or empty text (only text can be empty; casting a typed
    Parquet column to text just to ask would cost more than reading it)."""
    if dtype == pl.String:
        return _missing(pl.col(col))
    return pl.col(col).is_null()


def _code(dtype: pl.DataType) -> pl.Expr:
    if dtype.is_integer():
        # A code that travelled as a number lost its leading zero ("00" -> 0).
        return pl.col(_raw("response_code")).cast(pl.String).str.zfill(2)
    return _as_text(_raw("response_code"), dtype)


def _matches(e: pl.Expr, pattern: str) -> pl.Expr:
    """True where a present value breaks ``pattern`` (anchored Rust regex: cheap)."""
    return (~e.str.contains(pattern) & (e.str.len_bytes() > 0)).fill_null(False)


FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def parse(frame: FrameT, input_schema: Mapping[str, pl.DataType] | None = None) -> FrameT:
    """Stage 1: parse a wire-shaped frame into canonical columns plus rule flags.

    Works on a ``LazyFrame`` too, so a scan parses and checks while it reads.
    The result has the canonical columns under their canonical names, the raw
    text of re-typed columns as ``__raw__<name>`` and one boolean column per
    (rule, column) named ``__bad__<rule>__<column>``. Text ``ts`` and
    ``amount`` are left to the compiled kernels of stage 2.
    """
    schema = dict(input_schema if input_schema is not None else frame.collect_schema())
    schema.pop(ROW, None)
    missing = [c for c in REQUIRED if c not in schema]
    if missing:
        raise ContractError(
            "missing required column" + ("s " if len(missing) > 1 else " ") + ", ".join(missing)
        )
    dt: dict[str, pl.DataType] = {c: schema.get(c, pl.String()) for c in WIRE_NAMES}
    absent = [pl.lit(None, dtype=pl.String).alias(c) for c in WIRE_NAMES if c not in schema]
    if absent:
        frame = frame.with_columns(absent)
    frame = frame.rename({c: _raw(c) for c in PARSED})

    kernels: list[pl.Expr] = []
    ts_plan = _ts(dt["ts"])
    amount_plan = _amount(dt["amount"])
    latency, bad_latency = _latency(dt["latency_ms"])
    code = _code(dt["response_code"])
    outcome_text = _as_text(_raw("outcome"), dt["outcome"])
    risk_text = _as_text(_raw("risk_decision"), dt["risk_decision"])
    outcome = outcome_text.cast(OUTCOME_DTYPE, strict=False)
    risk = risk_text.cast(RISK_DTYPE, strict=False)
    strings: tuple[str, ...] = (*ID_COLUMNS, "channel", "region", *OPTIONAL_STRINGS)
    text: dict[str, pl.Expr] = {c: _as_text(_raw(c), dt[c]) for c in strings}

    values = [
        latency.alias("latency_ms"),
        code.alias("response_code"),
        outcome.alias("outcome"),
        risk.alias("risk_decision"),
        # Text columns that arrived as text are used as they are: no copy.
        *[text[c].alias(c) for c in strings if dt[c] != pl.String and c != "payment_id"],
        pl.when(_missing(text["payment_id"]))
        .then(text["event_id"])
        .otherwise(text["payment_id"])
        .alias("payment_id"),
    ]
    flags: dict[str, pl.Expr] = {}
    for c in REQUIRED:
        flags[_flag("required", c)] = _absent(_raw(c), dt[c])
    for c in ID_COLUMNS:
        flags[_flag("id_format", c)] = (text[c].str.len_bytes() > MAX_ID_BYTES).fill_null(False)
    if ts_plan is not None:
        values.append(ts_plan[0].alias("ts"))
        flags[_flag("ts_format", "ts")] = ts_plan[1].fill_null(False)
        flags[_flag("ts_range", "ts")] = _ts_range(ts_plan[0])
    else:
        # One compiled pass, run by the engine on each morsel (the kernel
        # releases the GIL, so morsels parse in parallel).
        kernels.append(
            _as_text(_raw("ts"), dt["ts"])
            .map_batches(_ts_struct, return_dtype=_KERNEL_STRUCT, is_elementwise=True)
            .alias(_K_TS)
        )
        parsed = pl.col(_K_TS)
        values.append(parsed.struct.field("value").cast(TS_DTYPE).alias("ts"))
        flags[_flag("ts_format", "ts")] = parsed.struct.field("status") == BAD
        flags[_flag("ts_range", "ts")] = parsed.struct.field("status") == RANGE
    if amount_plan is not None:
        values.append(amount_plan[0].alias("amount_fen"))
        flags[_flag("amount_format", "amount")] = amount_plan[1].fill_null(False)
    else:
        kernels.append(
            _as_text(_raw("amount"), dt["amount"])
            .map_batches(_amount_struct, return_dtype=_KERNEL_STRUCT, is_elementwise=True)
            .alias(_K_AMOUNT)
        )
        parsed = pl.col(_K_AMOUNT)
        values.append(parsed.struct.field("value").alias("amount_fen"))
        flags[_flag("amount_format", "amount")] = parsed.struct.field("status") == BAD
    flags[_flag("latency_format", "latency_ms")] = bad_latency
    flags[_flag("channel_format", "channel")] = _matches(text["channel"], _CHANNEL_RE.pattern)
    flags[_flag("region_format", "region")] = _matches(text["region"], _REGION_RE.pattern)
    flags[_flag("response_code_format", "response_code")] = _matches(code, _CODE_RE.pattern)
    flags[_flag("outcome_enum", "outcome")] = outcome.is_null() & ~_missing(outcome_text)
    flags[_flag("risk_decision_enum", "risk_decision")] = risk.is_null() & ~_missing(risk_text)
    approved = outcome == "approved"
    flags[_flag("outcome_code_mismatch", "response_code")] = (
        (approved & ~_missing(code) & ~code.is_in(sorted(APPROVAL_CODES)))
        | (~approved & (code == "00"))
    ).fill_null(False)
    for c in OPTIONAL_STRINGS:
        flags[_flag("text_length", c)] = (text[c].str.len_bytes() > MAX_TEXT_BYTES).fill_null(False)

    if kernels:
        frame = frame.with_columns(kernels)
    frame = frame.with_columns(*values, *[e.alias(n) for n, e in flags.items()])
    frame = frame.with_columns(pl.any_horizontal(list(flags)).alias(_ANY))
    return frame.drop([_K_TS, _K_AMOUNT], strict=False)


# ---------------------------------------------------------------------------
# stage 2: rare fix-ups, duplicates across batches, split


_KERNEL_STRUCT = pl.Struct({"value": pl.Int64(), "status": pl.UInt8()})


def _kernel_struct(values: np.ndarray, status: np.ndarray) -> pl.Series:
    value = pl.Series("value", values).scatter(np.flatnonzero(status != OK), None)
    return pl.struct(value, pl.Series("status", status), eager=True)


def _ts_struct(s: pl.Series) -> pl.Series:
    return _kernel_struct(*parse_timestamps(s))


def _amount_struct(s: pl.Series) -> pl.Series:
    return _kernel_struct(*parse_amounts(s))


def _duplicates(ids: pl.Series, index: EventIdIndex | None) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate mask in input order, the batch's hashes sorted).

    One sort of the batch's hashes serves three checks: repeats inside the
    batch (equal neighbours), ids seen in earlier batches (sorted look-ups
    into the index's runs) and, for a clean batch, the run added to the index.
    The permutation back to input order is only computed when something was
    found, which is rare.
    """
    hashes = EventIdIndex.hashes(ids)
    ordered = hashes.sort().to_numpy()
    suspicious = np.zeros(len(ordered), dtype=bool)
    if len(ordered) > 1:
        same = ordered[1:] == ordered[:-1]
        suspicious[1:] |= same
        suspicious[:-1] |= same
    if index is not None and index.size:
        suspicious |= index.seen_sorted(ordered)
    if not suspicious.any():
        return np.zeros(len(ordered), dtype=bool), ordered
    # Rare path: resolve exactly which rows are repeats.
    dup = (~hashes.is_first_distinct() & ids.is_not_null()).to_numpy()
    if index is not None and index.size:
        before = index.seen_sorted(ordered)
        if before.any():
            dup |= hashes.is_in(pl.Series(ordered[before]).implode()).to_numpy()
    return dup, ordered


def finish(parsed: pl.DataFrame, index: EventIdIndex | None = None) -> ValidationResult:
    """Stage 2: split a batch that went through :func:`parse` into valid and rejected rows.

    ``index`` carries duplicate detection across batches (pass the same one
    for every batch of a stream). Rejected rows do not enter the index, so a
    later good row with the same id is still accepted.
    """
    ids = parsed["event_id"]
    dup, ordered = _duplicates(ids, index)
    ok_mask = ~(parsed[_ANY].to_numpy() | dup)
    clean = bool(ok_mask.all())
    if index is not None:
        if clean:
            index.add_sorted(ordered)
        else:
            accepted = EventIdIndex.hashes(ids).filter(pl.Series(ok_mask))
            index.add_sorted(accepted.sort().to_numpy())
    parsed = _blank_to_null(parsed)
    if clean:
        return ValidationResult(parsed.select(CANONICAL_NAMES), empty_rejects())
    parsed = parsed.with_columns(pl.Series(_flag("duplicate", "event_id"), dup))
    ok = pl.Series(ok_mask)
    return ValidationResult(
        parsed.filter(ok).select(CANONICAL_NAMES), _rejects(parsed.filter(~ok))
    )


CANONICAL_NAMES: list[str] = list(CANONICAL_SCHEMA)
_NULLABLE_TEXT = ("response_code", *OPTIONAL_STRINGS)


def _blank_to_null(df: pl.DataFrame) -> pl.DataFrame:
    """Optional text that was present but empty becomes null (rare: checked first)."""
    fixes = [
        pl.when(pl.col(c).str.len_bytes() == 0).then(None).otherwise(pl.col(c)).alias(c)
        for c in _NULLABLE_TEXT
        if df[c].str.len_bytes().min() == 0
    ]
    return df.with_columns(fixes) if fixes else df


def _rejects(bad: pl.DataFrame) -> pl.DataFrame:
    parts = []
    for name in bad.columns:
        if name.startswith(_FLAG) and name != _ANY:
            rule, column = _parse_flag(name)
            parts.append(pl.when(pl.col(name)).then(pl.lit(f"{column}: {rule}")))
    errors = pl.concat_str(parts, separator="; ", ignore_nulls=True)
    return bad.select(
        pl.col(ROW).cast(pl.Int64).alias("row"),
        errors.alias("errors"),
        pl.lit(None, dtype=pl.String).alias("raw"),
        *[pl.col(_raw(c)).cast(pl.String).alias(c) for c in WIRE_NAMES],
    )


def validate_frame(
    raw: pl.DataFrame, index: EventIdIndex | None = None, *, first_row: int = 1
) -> ValidationResult:
    """Validate a whole wire-shaped frame in one call (tests, live micro-batches).

    Rows are numbered from ``first_row`` unless the frame carries ``_row``.
    """
    if ROW not in raw.columns:
        raw = raw.with_row_index(ROW, offset=first_row)
    return finish(parse(raw), index)


def structural_rejects(rows: Iterable[tuple[int, str, str]]) -> pl.DataFrame:
    """Rejects for records that could not even be split into columns.

    ``rows`` holds ``(row, rule, raw_text)``; used for ragged CSV lines,
    undecodable bytes and malformed JSON lines.
    """
    data = list(rows)
    return pl.DataFrame(
        {
            "row": [r for r, _, _ in data],
            "errors": [f"*: {rule}" for _, rule, _ in data],
            "raw": [clip(t, 2000) for _, _, t in data],
            **{name: [None] * len(data) for name in WIRE_NAMES},
        },
        schema=REJECT_SCHEMA,
    )
