"""Validated small tables: the contracts that are not the event stream.

Changes files, portfolios, scenario tables and the like are thousands of rows,
not millions, but they deserve the same treatment as events: a documented
contract, a clear error naming the row, the column and the rule, rejected rows
kept with their reasons, nothing dropped silently. A :class:`TableContract`
declares the fields; :meth:`TableContract.read` and
:meth:`TableContract.validate` apply it to CSV or JSONL files and frames.

Money fields become integer fen with the same exact parser as event amounts;
decimal fields (shares, rates, ratios) become ``pl.Decimal`` so no float ever
touches them.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tapshield.errors import ContractError, RowError
from tapshield.parsing import BAD, OK, RANGE, parse_amounts, parse_timestamps
from tapshield.timeutil import TS_DTYPE

KINDS = ("string", "enum", "timestamp", "date", "money", "decimal", "integer", "number", "bool")

ROW = "_row"


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a table contract."""

    name: str
    kind: str
    required: bool = False
    description: str = ""
    values: tuple[str, ...] = ()
    """Allowed values of an ``enum``."""
    minimum: float | None = None
    maximum: float | None = None
    scale: int = 6
    """Decimal places kept for a ``decimal`` field."""
    pattern: str | None = None
    """Anchored regex a ``string`` must match."""
    default: object = None
    """Value used when an optional field is absent or empty."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown field kind {self.kind!r}")


@dataclass(frozen=True, slots=True)
class RowRule:
    """A rule across fields, checked on parsed values (e.g. ``end_ts >= ts``)."""

    name: str
    column: str
    text: str
    bad: Callable[[], pl.Expr]
    """Builds an expression that is true on rows breaking the rule."""


@dataclass(slots=True)
class TableResult:
    valid: pl.DataFrame
    rejects: pl.DataFrame
    ignored_columns: list[str] = field(default_factory=list)

    def errors(self, limit: int | None = None) -> list[RowError]:
        out: list[RowError] = []
        frame = self.rejects if limit is None else self.rejects.head(limit)
        for rec in frame.iter_rows(named=True):
            for part in (rec["errors"] or "").split("; "):
                column, _, rule = part.partition(": ")
                out.append(RowError(rec["row"], column, rule, rec.get(column)))
        return out


@dataclass(frozen=True, slots=True)
class TableContract:
    name: str
    version: str
    fields: tuple[Field, ...]
    rules: tuple[RowRule, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {f.name: _dtype(f) for f in self.fields}

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema)

    def markdown(self) -> str:
        """The contract as a Markdown table for the docs."""
        lines = ["| column | required | type | meaning |", "|---|---|---|---|"]
        for f in self.fields:
            kind = f.kind
            if f.kind == "enum":
                kind = "one of " + ", ".join(f"`{v}`" for v in f.values)
            bounds = []
            if f.minimum is not None:
                bounds.append(f">= {f.minimum:g}")
            if f.maximum is not None:
                bounds.append(f"<= {f.maximum:g}")
            if bounds:
                kind += " (" + ", ".join(bounds) + ")"
            req = "yes" if f.required else "no"
            lines.append(f"| {f.name} | {req} | {kind} | {f.description} |")
        for r in self.rules:
            lines.append(f"| *rule* `{r.name}` | | {r.column} | {r.text} |")
        return "\n".join(lines)

    # -- reading ---------------------------------------------------------------

    def read(self, path: Path | str) -> TableResult:
        """Read and validate a CSV or JSONL (optionally .gz) file."""
        p = Path(path)
        broken: list[tuple[int, str, str]] = []
        if not p.exists():
            raise ContractError(f"{p}: no such file")
        if p.is_dir():
            raise ContractError(f"{p}: is a directory, not a {self.name} file")
        name = p.name.lower().removesuffix(".gz")
        try:
            if name.endswith(".csv"):
                raw, broken = _read_csv(p)
            elif name.endswith((".jsonl", ".ndjson", ".json")):
                raw, broken = _read_jsonl(p)
            else:
                raise ContractError(f"{p.name}: unknown file type; use .csv or .jsonl")
        except (OSError, EOFError, ValueError) as exc:
            if isinstance(exc, ContractError):
                raise
            if str(exc).startswith(p.name):
                raise ContractError(str(exc)) from exc
            raise ContractError(f"{p.name}: unreadable {self.name} file ({exc})") from exc
        if not raw.columns or all(c == ROW for c in raw.columns):
            raise ContractError(f"{p.name}: empty {self.name} file (no columns)")
        result = self.validate(raw, source=p.name)
        if broken:
            extra = pl.DataFrame(
                {
                    "row": [n for n, _, _ in broken],
                    "errors": [f"{col}: {rule}" for _, col, rule in broken],
                    **{c: [None] * len(broken) for c in self.names},
                },
                schema=_empty_rejects(self).schema,
            )
            result.rejects = pl.concat([result.rejects, extra]).sort("row")
        return result

    def validate(self, raw: pl.DataFrame, *, source: str = "input") -> TableResult:
        """Validate a frame of text (or natively typed) columns."""
        missing = [f.name for f in self.fields if f.required and f.name not in raw.columns]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise ContractError(
                f"{source}: missing required {self.name} column{plural} {', '.join(missing)}"
            )
        ignored = [c for c in raw.columns if c not in self.names and c != ROW]
        if ROW not in raw.columns:
            raw = raw.with_row_index(ROW, offset=1)
        raw = raw.with_columns(
            [pl.lit(None, dtype=pl.String).alias(f.name) for f in self.fields
             if f.name not in raw.columns]
        )
        parsed: dict[str, pl.Series] = {}
        flags: dict[str, np.ndarray] = {}
        for f in self.fields:
            value, bad = _parse_field(f, raw[f.name])
            parsed[f.name] = value
            for rule, mask in bad.items():
                if mask.any():
                    flags[f"{f.name}: {rule}"] = mask
        frame = pl.DataFrame(list(parsed.values()))
        for r in self.rules:
            mask = frame.select(r.bad().fill_null(False)).to_series().to_numpy()
            if mask.any():
                flags[f"{r.column}: {r.name}"] = mask
        bad_any = np.zeros(raw.height, dtype=bool)
        for m in flags.values():
            bad_any |= m
        if not bad_any.any():
            return TableResult(frame, _empty_rejects(self), ignored)
        errors = [
            "; ".join(label for label, m in flags.items() if m[i]) for i in np.flatnonzero(bad_any)
        ]
        rejects = raw.filter(pl.Series(bad_any)).select(
            pl.col(ROW).cast(pl.Int64).alias("row"),
            pl.Series("errors", errors, dtype=pl.String),
            *[pl.col(n).cast(pl.String) for n in self.names],
        )
        return TableResult(frame.filter(pl.Series(~bad_any)), rejects, ignored)


def _empty_rejects(contract: TableContract) -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "row": pl.Int64(),
            "errors": pl.String(),
            **dict.fromkeys(contract.names, pl.String()),
        }
    )


def _dtype(f: Field) -> pl.DataType:
    match f.kind:
        case "timestamp":
            return TS_DTYPE
        case "date":
            return pl.Date()
        case "money" | "integer":
            return pl.Int64()
        case "decimal":
            return pl.Decimal(38, f.scale)
        case "number":
            return pl.Float64()
        case "bool":
            return pl.Boolean()
        case "enum":
            return pl.Enum(list(f.values))
        case _:
            return pl.String()


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def _parse_field(f: Field, col: pl.Series) -> tuple[pl.Series, dict[str, np.ndarray]]:
    """Parse one column; return the typed values and a mask per broken rule."""
    text = col if col.dtype == pl.String else col.cast(pl.String)
    empty = (text.is_null() | (text.str.len_bytes() == 0)).to_numpy()
    bad: dict[str, np.ndarray] = {}
    if f.required:
        bad["required"] = empty
    present = ~empty
    kind = f.kind
    value: pl.Series
    if kind == "string":
        value = text.set(pl.Series(empty), None) if empty.any() else text
        if f.pattern is not None:
            bad["format"] = present & ~text.str.contains(f.pattern).fill_null(False).to_numpy()
    elif kind == "enum":
        value = text.cast(pl.Enum(list(f.values)), strict=False)
        bad["enum"] = present & value.is_null().to_numpy()
    elif kind == "timestamp":
        us, status = parse_timestamps(text)
        value = pl.Series(f.name, us).cast(TS_DTYPE).scatter(np.flatnonzero(status != OK), None)
        bad["timestamp"] = status == BAD
        bad["range"] = status == RANGE
    elif kind == "date":
        value = text.str.to_date("%Y-%m-%d", strict=False)
        bad["date"] = present & value.is_null().to_numpy()
    elif kind == "money":
        fen, status = parse_amounts(text)
        value = pl.Series(f.name, fen).scatter(np.flatnonzero(status != OK), None)
        bad["money"] = status == BAD
    elif kind == "decimal":
        ok = text.str.contains(rf"^-?\d{{1,20}}(\.\d{{1,{f.scale}}})?$").fill_null(False)
        value = text.str.to_decimal(scale=f.scale).cast(pl.Decimal(38, f.scale), strict=False)
        value = value.set(~ok, None) if (~ok).any() else value
        bad["decimal"] = present & ~ok.to_numpy()
    elif kind == "integer":
        value = text.str.to_integer(strict=False)
        bad["integer"] = present & value.is_null().to_numpy()
    elif kind == "number":
        value = text.cast(pl.Float64, strict=False)
        finite = value.is_finite().fill_null(False).to_numpy()
        bad["number"] = present & ~finite
    else:  # bool
        low = text.str.to_lowercase()
        value = pl.select(
            pl.when(low.is_in(sorted(_TRUE))).then(True).when(low.is_in(sorted(_FALSE)))
            .then(False).otherwise(None)
        ).to_series()
        bad["bool"] = present & value.is_null().to_numpy()
    if kind in ("money", "integer", "number", "decimal") and (
        f.minimum is not None or f.maximum is not None
    ):
        num = value.cast(pl.Float64) if kind != "money" else value.cast(pl.Float64) / 100
        if f.minimum is not None:
            bad["minimum"] = (num < f.minimum).fill_null(False).to_numpy()
        if f.maximum is not None:
            bad["maximum"] = (num > f.maximum).fill_null(False).to_numpy()
    if f.default is not None and not f.required:
        value = value.fill_null(pl.lit(f.default).cast(value.dtype))
    return value.alias(f.name).cast(_dtype(f)), bad


def _read_csv(path: Path) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    """A small table's CSV with the event contract's grammar (docs/contracts.md).

    CR, LF or CRLF line ends; blank lines are not records; a duplicate column
    name refuses the file; records that cannot be split are rejected by row.
    """
    from tapshield.csvgrammar import (
        read_table_csv,  # the compiled grammar: loaded when a CSV is read
    )

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    header, columns, rows, broken = read_table_csv(data, path.name)
    frame = pl.DataFrame(
        dict(zip(header, columns, strict=True)), schema=dict.fromkeys(header, pl.String())
    )
    frame = frame.with_columns(pl.Series(ROW, rows, dtype=pl.Int64))
    return frame, [(n, col, rule) for n, col, rule, _ in broken]


def _read_jsonl(path: Path) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    """JSONL for small tables: one object per line, values kept as text.

    Lines that are not a JSON object come back separately, to be rejected
    with the rule ``json_syntax`` rather than failing the whole file.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    rows: list[dict[str, str | None]] = []
    numbers: list[int] = []
    broken: list[tuple[int, str, str]] = []
    with opener(path, "rb") as fh:
        data = fh.read()
    # JSON text cannot hold a raw line end, so CR, LF and CRLF all end a line.
    for n, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, parse_float=str, parse_int=str, parse_constant=str)
        except UnicodeDecodeError:
            broken.append((n, "*", "encoding"))
            continue
        except (json.JSONDecodeError, RecursionError):
            obj = None
        if not isinstance(obj, Mapping):
            broken.append((n, "*", "json_syntax"))
            continue
        nested = [k for k, v in obj.items() if isinstance(v, dict | list | bool)]
        if nested:
            broken.append((n, nested[0], "type"))
            continue
        rows.append({k: _scalar_text(v) for k, v in obj.items()})
        numbers.append(n)
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    values = {k: [r.get(k) for r in rows] for k in keys}
    frame = pl.DataFrame(values, schema=dict.fromkeys(keys, pl.String()))
    return frame.with_columns(pl.Series(ROW, numbers, dtype=pl.Int64)), broken


def _scalar_text(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v)
    return str(v)
