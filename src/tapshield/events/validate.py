"""Row-level validation of the payment-event contract, vectorised.

Validation runs in two stages so that a replay of a 10-million-row file and a
live micro-batch of fifty events share one code path and the common case (a
clean file) costs little more than reading it:

1. :func:`parse` turns one wire-shaped batch into canonical columns plus
   one boolean flag per (rule, column). Text timestamps, amounts and the
   short coded columns are parsed by compiled single-pass kernels
   (:mod:`tapshield.parsing`; a general ``strptime`` costs more than reading
   the file) that release the GIL, so the readers run it on several chunks at
   once in worker threads. It depends on nothing but its batch.
2. :func:`finish` runs in stream order on the calling thread: it detects
   duplicate ``event_id`` s across batches (the one piece of state a stream
   carries) and splits the batch into canonical rows and rejected rows with
   their reasons.

Nothing is dropped silently: every input row ends up either in
``ValidationResult.valid`` or in ``ValidationResult.rejects`` with an
``errors`` text naming the column and the rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from tapshield.errors import ContractError, RowError
from tapshield.events.codes import APPROVAL_CODES
from tapshield.events.idindex import EventIdIndex
from tapshield.events.schema import (
    CANONICAL_SCHEMA,
    ID_COLUMNS,
    OPTIONAL_STRINGS,
    OUTCOME_DTYPE,
    OUTCOMES,
    REQUIRED,
    RISK_DTYPE,
    RULE_NAMES,
    WIRE_NAMES,
)
from tapshield.parsing import (
    BAD,
    CHANNEL,
    CODE,
    INLINE_BYTES,
    MISSING,
    NO_MATCH,
    NO_VALUE,
    OK,
    RANGE,
    REGION,
    Text,
    byte_length_range,
    check_format,
    code_classes,
    match_choices,
    parse_amounts,
    parse_plain_numbers,
    parse_timestamps,
    utf8_valid,
)
from tapshield.timeutil import TS_DTYPE

ROW = "_row"
"""1-based record number in the source (for JSONL: the line number)."""

MAX_ID_BYTES = 128
MAX_TEXT_BYTES = 128
_TS_MIN_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z
_TS_MAX_US = 4_102_444_800_000_000  # 2100-01-01T00:00:00Z

_FLAG = "__bad__"
_RAW = "__raw__"
_ANY = "__bad_any__"


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
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                out.append(RowError(rec["row"], column, rule, value))
        return out


REJECT_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "errors": pl.String(),
    "raw": pl.Binary(),
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
# stage 1: parse every column, flag every broken rule


PARSED: tuple[str, ...] = (
    "ts", "amount", "latency_ms", "outcome", "risk_decision", "response_code", "payment_id"
)
"""Wire columns whose canonical value differs from the text; their raw values
are kept as ``__raw__<name>`` so a rejected row can be shown as it was sent."""

_HASH = "__event_hash__"
_CODE_APPROVAL = 4
"""Class of a well-formed approval code other than ``00``."""
_CODE_00 = 5
"""Class of ``00``: an approval code that only ``approved`` may carry."""
_CODE_CLASSES = code_classes(
    {c: _CODE_00 if c == "00" else _CODE_APPROVAL for c in APPROVAL_CODES}
)
_FORMATS: dict[str, int] = {"channel": CHANNEL, "region": REGION}


def _raw(c: str) -> str:
    return f"{_RAW}{c}" if c in PARSED else c


_TS_FACTOR = {"ns": 1000, "us": 1, "ms": 1}
_MAX_FEN = 10**17 - 1
"""The largest amount the text grammar takes (15 digits of yuan and 2 of fen),
applied to numeric columns too: no value is wrapped round or rounded into it."""


def _ts(dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr] | None:
    """Parse expressions for a natively typed ``ts``; ``None`` for text (compiled kernel).

    Out-of-range values are never converted: a number of milliseconds (or a
    timestamp's ticks) is checked against the contract's range *before* it is
    scaled, so a huge value is rejected as ``ts_range`` instead of wrapping
    round 2**64 into a plausible date.
    """
    raw = pl.col(_raw("ts"))
    lo_ms, hi_ms = _TS_MIN_US // 1000, _TS_MAX_US // 1000
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            raise ContractError(
                "column 'ts' is a timestamp without a time zone; write it UTC-adjusted "
                "or as epoch milliseconds"
            )
        # Physical ticks are UTC whatever the zone: scale them, never convert
        # an out-of-range value (Polars panics formatting one).
        ticks = raw.to_physical()
        unit = dtype.time_unit
        if unit == "ns":
            inside = (ticks >= _TS_MIN_US * 1000) & (ticks < _TS_MAX_US * 1000)
            us = ticks // 1000
        elif unit == "ms":
            inside = (ticks >= lo_ms) & (ticks < hi_ms)
            us = ticks * 1000
        else:
            inside = (ticks >= _TS_MIN_US) & (ticks < _TS_MAX_US)
            us = ticks
        parsed = pl.when(inside).then(us).cast(TS_DTYPE)
        return parsed, pl.lit(False)
    if dtype.is_integer():
        inside = (raw >= lo_ms) & (raw < hi_ms)
        parsed = pl.when(inside).then(raw.cast(pl.Int64, strict=False) * 1000).cast(TS_DTYPE)
        return parsed, pl.lit(False)
    if dtype.is_float():
        exact = raw.is_finite() & (raw == raw.round(0))
        inside = (raw >= lo_ms) & (raw < hi_ms)
        parsed = pl.when(exact & inside).then(
            raw.cast(pl.Int64, strict=False) * 1000
        ).cast(TS_DTYPE)
        return parsed, raw.is_not_null() & ~exact.fill_null(False)
    return None


def _ts_out_of_range(dtype: pl.DataType) -> pl.Expr:
    """A present, well-formed native ``ts`` that the contract's range excludes."""
    raw = pl.col(_raw("ts"))
    lo_ms, hi_ms = _TS_MIN_US // 1000, _TS_MAX_US // 1000
    if isinstance(dtype, pl.Datetime):
        parsed = _ts(dtype)
        assert parsed is not None
        return raw.is_not_null() & parsed[0].is_null()
    if dtype.is_float():
        exact = raw.is_finite() & (raw == raw.round(0))
        return (exact & ~((raw >= lo_ms) & (raw < hi_ms))).fill_null(False)
    return (raw.is_not_null() & ~((raw >= lo_ms) & (raw < hi_ms))).fill_null(False)


def _ts_range(ts: pl.Expr) -> pl.Expr:
    us = ts.cast(pl.Int64)
    return ((us < _TS_MIN_US) | (us >= _TS_MAX_US)).fill_null(False)


def _amount(dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr] | None:
    """Parse expressions for a natively typed ``amount``; ``None`` for text (compiled kernel).

    Bounds are checked before any scaling (an ``int64`` of 184467440737095517
    yuan would wrap round to 0.84 if multiplied first); anything that does not
    fit is ``amount_format``, never a different amount.
    """
    raw = pl.col(_raw("amount"))
    if isinstance(dtype, pl.Decimal):
        # The integer behind a decimal is exact: with scale s, fen = unscaled * 10^(2 - s),
        # and a finer scale is exact only when the digits beyond the fen are zero. No
        # decimal arithmetic (it costs more than the read).
        unscaled = raw.to_physical().cast(pl.Int128)
        scale = dtype.scale
        if scale <= 2:
            limit = _MAX_FEN // (10 ** (2 - scale))
            good = (unscaled >= 0) & (unscaled <= limit)
            fen = unscaled * (10 ** (2 - scale))
        else:
            step = 10 ** (scale - 2)
            fen = unscaled // step
            good = (unscaled >= 0) & (unscaled % step == 0) & (fen <= _MAX_FEN)
        parsed = pl.when(good).then(fen.cast(pl.Int64, strict=False))
        return parsed, raw.is_not_null() & parsed.is_null()
    if dtype.is_integer():
        good = (raw >= 0) & (raw <= _MAX_FEN // 100)
        parsed = pl.when(good).then(raw.cast(pl.Int64, strict=False) * 100)
        return parsed, raw.is_not_null() & parsed.is_null()
    if dtype.is_float():
        cents = raw * 100
        rounded = cents.round(0)
        exact = raw.is_finite() & ((cents - rounded).abs() <= 1e-6 * (rounded.abs() + 1))
        # below 2**53 fen a double still holds every whole fen exactly
        good = exact & (raw >= 0) & (rounded < 2.0**53)
        parsed = pl.when(good).then(rounded.cast(pl.Int64, strict=False))
        return parsed, raw.is_not_null() & parsed.is_null()
    return None


def _latency(dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """Parse expressions for a ``latency_ms`` that is not text (text: compiled kernel)."""
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


def _text_latency(text: pl.Series, buffers: Text) -> tuple[pl.Series, np.ndarray]:
    """``(latency_ms, latency_format flag)`` of a text column.

    Plain decimals (all but a handful of rows) are parsed by the kernel;
    anything else (``1e3``, ``.5``, ``inf``, ``fast``) by Polars' own parser,
    as the whole column used to be: the same doubles either way.
    """
    value, status = parse_plain_numbers(buffers)
    empty = status == MISSING
    bad = np.zeros(len(text), dtype=bool)
    other = np.flatnonzero(status == BAD)
    if len(other):
        parsed = text.gather(other).cast(pl.Float64, strict=False)
        good = (parsed.is_finite() & (parsed >= 0)).fill_null(False).to_numpy()
        value[other[good]] = parsed.filter(pl.Series(good)).to_numpy()
        bad[other[~good]] = True
        empty[other[~good]] = True
    out = pl.Series("latency_ms", value)
    if empty.any():
        out = out.scatter(np.flatnonzero(empty), None)
    return out, bad


def _text_enum(name: str, text: Text, dtype: pl.Enum) -> tuple[pl.Series, np.ndarray]:
    """``(enum column, codes)`` of a text column; codes ``NO_MATCH`` / ``NO_VALUE`` are null."""
    codes = match_choices(text, tuple(dtype.categories.to_list()))
    out = pl.Series(name, codes)
    holes = np.flatnonzero(codes >= NO_MATCH)
    if len(holes):
        out = out.scatter(holes, None)
    return out.cat.to(dtype), codes


def _enum_codes(values: pl.Series) -> np.ndarray:
    """Physical codes of an enum column, ``NO_VALUE`` for null."""
    return values.to_physical().cast(pl.UInt8).fill_null(NO_VALUE).to_numpy()


def _not_single(dtype: pl.DataType) -> bool:
    """A type that is not one value: lists, maps, structs, objects, true/false."""
    return dtype.is_nested() or dtype in (pl.Boolean, pl.Object)


def _single_values(
    frame: pl.DataFrame, schema: dict[str, pl.DataType]
) -> tuple[pl.DataFrame, dict[str, pl.DataType]]:
    """Contract columns of a type that is not a single value, or bytes, made text.

    A Parquet struct or list in ``merchant_id`` (or a boolean) is not an id: its
    rows are rejected with the rule ``type`` (shown as JSON in the rejects
    file), never accepted as the text of the structure. A binary column is
    text where its bytes are UTF-8 and rejected (``encoding``) elsewhere.
    """
    changes: list[pl.Expr | pl.Series] = []
    schema = dict(schema)
    for c in WIRE_NAMES:
        dtype = schema.get(c)
        if dtype is None or c not in frame.columns:
            continue
        if _not_single(dtype):
            changes.append(pl.col(c).is_not_null().alias(_flag("type", c)))
            changes.append(_shown(c, dtype).alias(c))
            schema[c] = pl.String()
        elif isinstance(dtype, pl.Datetime) and c != "ts":
            # a timestamp where text is due: its text (Polars panics formatting one
            # past year 9999, so through _shown)
            changes.append(_shown(c, dtype).alias(c))
            schema[c] = pl.String()
        elif dtype == pl.Binary:
            ok = utf8_valid(frame.get_column(c))
            if not ok.all():
                changes.append(pl.Series(_flag("encoding", c), ~ok))
                # rare: only the good rows' bytes are read as text (in Python)
                values = frame.get_column(c).to_list()
                text = [
                    v.decode("utf-8") if good and v is not None else None
                    for v, good in zip(values, ok.tolist(), strict=True)
                ]
                changes.append(pl.Series(c, text, dtype=pl.String))
            else:
                changes.append(pl.col(c).cast(pl.String))
            schema[c] = pl.String()
    if changes:
        frame = frame.with_columns(changes)
    return frame, schema


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


def _layout(column: pl.Series) -> list[int]:
    """Row counts of a column's chunks."""
    return [len(c) for c in column.get_chunks()] if column.n_chunks() > 1 else [len(column)]


def _like(layout: list[int], series: pl.Series) -> pl.Series:
    """``series`` in chunks of the given row counts (zero-copy slices)."""
    if len(layout) <= 1 or _layout(series) == layout:
        return series
    out = series.slice(0, layout[0])
    first = layout[0]
    for rows in layout[1:]:
        out.append(series.slice(first, rows))
        first += rows
    return out


def _kernel_values(
    name: str, values: np.ndarray, status: np.ndarray, dtype: pl.DataType | None = None
) -> pl.Series:
    """Kernel output as a Series, null where the kernel did not say OK."""
    out = pl.Series(name, values)
    bad = np.flatnonzero(status != OK)
    if len(bad):
        out = out.scatter(bad, None)
    return out if dtype is None else out.cast(dtype)


def parse(
    frame: pl.DataFrame,
    input_schema: Mapping[str, pl.DataType] | None = None,
    *,
    blank_free: bool = False,
) -> pl.DataFrame:
    """Stage 1: parse a wire-shaped batch into canonical columns plus rule flags.

    The result has the canonical columns under their canonical names, the raw
    text of re-typed columns as ``__raw__<name>``, one boolean column per
    (rule, column) that some row breaks, named ``__bad__<rule>__<column>``,
    their union ``__bad_any__`` and the 64-bit hash of ``event_id`` (for
    :func:`finish`).

    Text columns are checked by compiled kernels walking Polars' own string
    buffers (:mod:`tapshield.parsing`): timestamps, amounts, latencies,
    channels, regions, response codes and the two enumerations in one pass
    each. "Required", "at most 128 bytes" and "empty means null" are answered
    for a whole column first (from its null count, from the shortest and
    longest value a kernel saw, from strings all short enough to sit in their
    views), and only a column where some row could break them is checked row
    by row. ``blank_free`` is the caller's word that no text value is the
    empty string (a CSV chunk without a single ``"``: an empty field is null),
    which spares those columns a look at every value. Natively typed Parquet
    columns are validated as they are (Polars expressions), never cast to text
    first. Most of the time is spent without the GIL, so batches validate in
    parallel threads.
    """
    schema = dict(input_schema if input_schema is not None else frame.schema)
    schema.pop(ROW, None)
    missing = [c for c in REQUIRED if c not in schema]
    if missing:
        raise ContractError(
            "missing required column" + ("s " if len(missing) > 1 else " ") + ", ".join(missing)
        )
    frame, schema = _single_values(frame, schema)
    dt: dict[str, pl.DataType] = {c: schema.get(c, pl.String()) for c in WIRE_NAMES}
    n = frame.height
    layout = _layout(frame.get_column(REQUIRED[0]))
    absent = [
        _like(layout, pl.repeat(None, n, dtype=pl.String, eager=True).alias(c))
        for c in WIRE_NAMES
        if c not in schema
    ]
    if absent:
        frame = frame.with_columns(absent)
    frame = frame.rename({c: _raw(c) for c in PARSED})

    def raw(c: str) -> pl.Series:
        return frame.get_column(_raw(c))

    # Each text column's buffers are looked up once (one Arrow export of the
    # batch), for all the kernels that read it.
    textual = [c for c in WIRE_NAMES if dt[c] == pl.String]
    arrow = frame.select(_raw(c) for c in textual).to_arrow(compat_level=pl.CompatLevel.newest())
    texts = {c: Text(arrow.column(_raw(c))) for c in textual}

    def as_text(c: str, expr: pl.Expr | None = None) -> Text:
        """A column as text for a kernel (no copy when it already is text)."""
        if c in texts:
            return texts[c]
        return Text(
            frame.select((_as_text(_raw(c), dt[c]) if expr is None else expr).alias(c)).to_series()
        )

    # -- kernels: every text column that needs parsing, in one pass each
    ts_plan = _ts(dt["ts"])
    ts_status = amount_status = None
    if ts_plan is None:
        us, ts_status = parse_timestamps(as_text("ts"))
        ts_value = _kernel_values("ts", us, ts_status, TS_DTYPE)
    amount_plan = _amount(dt["amount"])
    if amount_plan is None:
        fen, amount_status = parse_amounts(as_text("amount"))
        amount_value = _kernel_values("amount_fen", fen, amount_status)
    if dt["latency_ms"] == pl.String:
        latency_value, bad_latency = _text_latency(raw("latency_ms"), texts["latency_ms"])
    formats = {c: check_format(as_text(c), kind) for c, kind in _FORMATS.items()}
    code = _code(dt["response_code"])
    classes = check_format(as_text("response_code", code), CODE, _CODE_CLASSES)
    enums: dict[str, tuple[pl.Series, np.ndarray]] = {}
    for c, dtype in (("outcome", OUTCOME_DTYPE), ("risk_decision", RISK_DTYPE)):
        if dt[c] == pl.String:
            enums[c] = _text_enum(c, texts[c], dtype)
        else:
            enum_values = frame.select(
                _as_text(_raw(c), dt[c]).cast(dtype, strict=False).alias(c)
            ).to_series()
            codes = _enum_codes(enum_values)
            present = ~frame.select(_missing(_as_text(_raw(c), dt[c]))).to_series().to_numpy()
            enums[c] = enum_values, np.where(
                (codes == NO_VALUE) & present, NO_MATCH, codes
            ).astype(np.uint8)

    # -- what a whole column can tell
    def may_be_empty(c: str) -> bool:
        return c in texts and not blank_free and byte_length_range(texts[c])[0] == 0

    def may_be_absent(c: str) -> bool:
        return raw(c).null_count() > 0 or may_be_empty(c)

    def may_exceed(c: str, limit: int) -> bool:
        if c not in texts:
            return True  # a typed column: ask the expression
        t = texts[c]
        return not (t.inline and limit >= INLINE_BYTES) and byte_length_range(t)[1] > limit

    # -- flags, in the order the error text lists them
    strings: tuple[str, ...] = (*ID_COLUMNS, "channel", "region", *OPTIONAL_STRINGS)
    text: dict[str, pl.Expr] = {c: _as_text(_raw(c), dt[c]) for c in strings}
    values: list[pl.Expr | pl.Series] = []
    flags: dict[str, pl.Expr | pl.Series] = {}

    def flag(rule: str, column: str, mask: np.ndarray) -> None:
        if mask.any():
            flags[_flag(rule, column)] = _like(layout, pl.Series(mask))

    for c in REQUIRED:
        if may_be_absent(c):
            flags[_flag("required", c)] = _absent(_raw(c), dt[c])
    for c in ID_COLUMNS:
        if may_exceed(c, MAX_ID_BYTES):
            flags[_flag("id_format", c)] = (text[c].str.len_bytes() > MAX_ID_BYTES).fill_null(False)
    if ts_plan is not None:
        values.append(ts_plan[0].alias("ts"))
        if not isinstance(dt["ts"], pl.Datetime):
            flags[_flag("ts_format", "ts")] = ts_plan[1].fill_null(False)
        flags[_flag("ts_range", "ts")] = _ts_out_of_range(dt["ts"]) | _ts_range(ts_plan[0])
    else:
        assert ts_status is not None
        values.append(ts_value)
        flag("ts_format", "ts", ts_status == BAD)
        flag("ts_range", "ts", ts_status == RANGE)
    if amount_plan is not None:
        values.append(amount_plan[0].alias("amount_fen"))
        flags[_flag("amount_format", "amount")] = amount_plan[1].fill_null(False)
    else:
        assert amount_status is not None
        values.append(amount_value)
        flag("amount_format", "amount", amount_status == BAD)
    if dt["latency_ms"] == pl.String:
        values.append(latency_value)
        flag("latency_format", "latency_ms", bad_latency)
    else:
        latency, bad_latency_expr = _latency(dt["latency_ms"])
        values.append(latency.alias("latency_ms"))
        flags[_flag("latency_format", "latency_ms")] = bad_latency_expr
    for c, status in formats.items():
        flag(f"{c}_format", c, status == BAD)
    flag("response_code_format", "response_code", classes == BAD)
    for c, (enum_values, codes) in enums.items():
        values.append(enum_values)
        flag(f"{c}_enum", c, codes == NO_MATCH)
    outcome = enums["outcome"][1]
    approved = outcome == OUTCOMES.index("approved")
    flag(
        "outcome_code_mismatch",
        "response_code",
        (outcome < NO_MATCH)
        & ((approved & ((classes == OK) | (classes == BAD))) | (~approved & (classes == _CODE_00))),
    )
    for c in OPTIONAL_STRINGS:
        if may_exceed(c, MAX_TEXT_BYTES):
            flags[_flag("text_length", c)] = (
                text[c].str.len_bytes() > MAX_TEXT_BYTES
            ).fill_null(False)

    # -- canonical text. Text that arrived as text is used as it is (no copy);
    # optional text that was present but empty becomes null (rare: checked first).
    def blank_to_null(e: pl.Expr) -> pl.Expr:
        return pl.when(e.str.len_bytes() == 0).then(None).otherwise(e)

    if dt["response_code"] != pl.String:
        values.append(code.alias("response_code"))
    elif may_be_empty("response_code"):
        values.append(blank_to_null(pl.col(_raw("response_code"))).alias("response_code"))
    else:
        values.append(pl.col(_raw("response_code")).alias("response_code"))
    if may_be_absent("payment_id") or dt["payment_id"] != pl.String:
        values.append(
            pl.when(_missing(text["payment_id"]))
            .then(text["event_id"])
            .otherwise(text["payment_id"])
            .alias("payment_id")
        )
    else:
        values.append(pl.col(_raw("payment_id")).alias("payment_id"))
    for c in strings:
        if c == "payment_id":
            continue
        if dt[c] != pl.String:
            values.append(text[c].alias(c))
        elif c in OPTIONAL_STRINGS and may_be_empty(c):
            values.append(blank_to_null(pl.col(c)).alias(c))

    # Flags a reader set already (a record's shape: field count, encoding, quoting).
    for name in frame.columns:
        if name.startswith(_FLAG) and name not in flags:
            flags[name] = pl.col(name).fill_null(False)

    # Every new column is cut into the chunks the batch arrived in (a CSV batch
    # comes in dozens): Polars glues a frame whose columns are chunked
    # differently back into one piece at the next operation, which for text
    # costs as much as parsing it. Eager evaluation keeps the chunks.
    frame = frame.with_columns(
        *[_like(layout, v) if isinstance(v, pl.Series) else v for v in values],
        *[e.alias(name) for name, e in flags.items()],
    )
    derived = frame.select(
        text["event_id"].hash(seed=EventIdIndex.SEED).alias(_HASH),
        (pl.any_horizontal(list(flags)) if flags else pl.repeat(False, n)).alias(_ANY),
    )
    return frame.with_columns(_like(layout, s) for s in derived.get_columns())


# ---------------------------------------------------------------------------
# stage 2: duplicates across batches, split


def _duplicates(
    hashes: pl.Series, ids: pl.Series, flagged: np.ndarray, index: EventIdIndex | None
) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate mask in input order, the batch's hashes sorted).

    A row is a duplicate when an earlier row of the stream with the same id
    was *accepted*: the first acceptable copy is kept, whatever the chunking
    (a rejected first copy does not make a later good copy a duplicate, in the
    same batch or in a later one).

    One sort of the batch's hashes serves three checks: repeats inside the
    batch (equal neighbours), ids seen in earlier batches (sorted look-ups
    into the index's runs) and, for a clean batch, the run added to the index.
    The exact resolution is only computed when something was found, which is
    rare.
    """
    # NumPy's sort of 64-bit keys (SIMD) costs half of Polars' here.
    ordered = np.sort(hashes.to_numpy())
    suspicious = np.zeros(len(ordered), dtype=bool)
    if len(ordered) > 1:
        same = ordered[1:] == ordered[:-1]
        suspicious[1:] |= same
        suspicious[:-1] |= same
    before = (
        index.seen_sorted(ordered) if index is not None and index.size else np.zeros(0, bool)
    )
    if len(before):
        suspicious |= before
    if not suspicious.any():
        return np.zeros(len(ordered), dtype=bool), ordered
    # Rare path: resolve exactly which rows are repeats of an accepted row.
    present = ids.is_not_null()
    pos = pl.col("pos")
    first_ok = (
        pl.DataFrame({"h": hashes, "ok": pl.Series(~flagged) & present})
        .with_row_index("pos")
        .select(pos > pl.when(pl.col("ok")).then(pos).min().over("h"))
        .to_series()
        .fill_null(False)
    )
    dup = (first_ok & present).to_numpy()
    if len(before) and before.any():
        dup |= (hashes.is_in(pl.Series(ordered[before]).implode()) & present).to_numpy()
    return dup, ordered


def finish(
    parsed: pl.DataFrame, index: EventIdIndex | None = None, *, first_row: int | None = None
) -> ValidationResult:
    """Stage 2: split a batch that went through :func:`parse` into valid and rejected rows.

    ``index`` carries duplicate detection across batches (pass the same one
    for every batch of a stream). Rejected rows do not enter the index, so a
    later good row with the same id is still accepted. A batch without a
    ``_row`` column has its rows numbered from ``first_row`` (numbers are then
    made only when some row is rejected: a clean batch needs none).
    """
    hashes = parsed.get_column(_HASH)
    flagged = parsed.get_column(_ANY).to_numpy()
    dup, ordered = _duplicates(hashes, parsed.get_column("event_id"), flagged, index)
    ok_mask = ~(flagged | dup)
    clean = bool(ok_mask.all())
    if index is not None:
        if clean:
            index.add_sorted(ordered)
        else:
            index.add_sorted(np.sort(hashes.to_numpy()[ok_mask]))
    if clean:
        return ValidationResult(parsed.select(CANONICAL_NAMES), empty_rejects())
    if ROW not in parsed.columns:
        if first_row is None:
            raise ValueError("finish: a batch without a _row column needs first_row")
        n = parsed.height
        parsed = parsed.with_columns(
            pl.int_range(first_row, first_row + n, dtype=pl.Int64, eager=True).alias(ROW)
        )
    parsed = parsed.with_columns(pl.Series(_flag("duplicate", "event_id"), dup))
    ok = pl.Series(ok_mask)
    return ValidationResult(
        parsed.filter(ok).select(CANONICAL_NAMES), _rejects(parsed.filter(~ok))
    )


CANONICAL_NAMES: list[str] = list(CANONICAL_SCHEMA)


STRUCTURAL = frozenset({"field_count", "encoding", "csv_quote", "json_syntax", "type"})
"""Rules about a record's shape: when one is broken the values were not read
as sent, so only these are reported for the row."""
RECORD = "__record__"
"""The record's own bytes, when the reader has them (the rejects' ``raw``)."""


def _rejects(bad: pl.DataFrame) -> pl.DataFrame:
    shape: list[pl.Expr] = []
    values: list[pl.Expr] = []
    for name in bad.columns:
        if name.startswith(_FLAG) and name != _ANY:
            rule, column = _parse_flag(name)
            part = pl.when(pl.col(name)).then(pl.lit(f"{column}: {rule}"))
            (shape if rule in STRUCTURAL else values).append(part)
    value_errors = pl.concat_str(values, separator="; ", ignore_nulls=True) if values else None
    if shape:
        shape_errors = pl.concat_str(shape, separator="; ", ignore_nulls=True)
        errors = (
            shape_errors if value_errors is None
            else pl.when(shape_errors.str.len_bytes() > 0).then(shape_errors)
            .otherwise(value_errors)
        )
    else:
        errors = value_errors if value_errors is not None else pl.lit("")
    raw = pl.col(RECORD) if RECORD in bad.columns else pl.lit(None, dtype=pl.Binary)
    return bad.select(
        pl.col(ROW).cast(pl.Int64).alias("row"),
        errors.alias("errors"),
        raw.cast(pl.Binary).alias("raw"),
        *[_shown(_raw(c), bad.schema[_raw(c)]).alias(c) for c in WIRE_NAMES],
    )


def _shown(col: str, dtype: pl.DataType) -> pl.Expr:
    """A wire column as text for the rejects file, whatever its type."""
    present = pl.col(col).is_not_null()
    if isinstance(dtype, pl.Datetime):
        # Polars panics formatting a timestamp past year 9999: show those as ticks.
        ticks = pl.col(col).to_physical()
        per_s = {"ns": 10**9, "us": 10**6, "ms": 10**3}[dtype.time_unit]
        sane = (ticks > -62_135_596_800 * per_s) & (ticks < 253_402_300_799 * per_s)
        shown = pl.when(sane).then(pl.col(col)).dt.replace_time_zone(None).cast(pl.String)
        return pl.when(sane).then(shown + "Z").otherwise(
            ticks.cast(pl.String) + f" ({dtype.time_unit} since 1970)"
        )
    if isinstance(dtype, pl.Struct):
        return pl.when(present).then(pl.col(col).struct.json_encode())
    if dtype.is_nested():
        as_json = pl.struct(pl.col(col).alias("v")).struct.json_encode()
        return pl.when(present).then(as_json.str.slice(5, None).str.head(-1))
    return pl.col(col).cast(pl.String, strict=False)


def validate_frame(
    raw: pl.DataFrame, index: EventIdIndex | None = None, *, first_row: int = 1
) -> ValidationResult:
    """Validate a whole wire-shaped frame in one call (tests, live micro-batches).

    Rows are numbered from ``first_row`` unless the frame carries ``_row``.
    """
    if ROW not in raw.columns:
        raw = raw.with_row_index(ROW, offset=first_row)
    return finish(parse(raw), index)


def structural_rejects(rows: Iterable[tuple[int, str, str | bytes]]) -> pl.DataFrame:
    """Rejects for records that could not even be split into columns.

    ``rows`` holds ``(row, rule, raw)`` with the record's own bytes (kept
    verbatim for the rejects file); used for malformed JSON lines.
    """
    data = list(rows)
    return pl.DataFrame(
        {
            "row": [r for r, _, _ in data],
            "errors": [f"*: {rule}" for _, rule, _ in data],
            "raw": [t if isinstance(t, bytes) else t.encode("utf-8") for _, _, t in data],
            **{name: [None] * len(data) for name in WIRE_NAMES},
        },
        schema=REJECT_SCHEMA,
    )
