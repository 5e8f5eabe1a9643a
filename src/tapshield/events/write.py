"""Write canonical event frames back out in the wire contract.

CSV and JSONL carry ``ts`` as RFC 3339 in the operator's zone and ``amount`` as
a decimal string (exact); Parquet carries ``ts`` as a UTC timestamp and
``amount`` as ``decimal(18, 2)``, the types a warehouse expects. Writers stream:
a 10-million-event simulation is written chunk by chunk and never held whole.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self, cast

import polars as pl
import pyarrow.parquet as pq

from tapshield.events.read import Format, detect_format
from tapshield.events.schema import WIRE_NAMES, empty_events
from tapshield.timeutil import DEFAULT_TZ


def fen_to_text(col: str = "amount_fen") -> pl.Expr:
    """Integer fen as an exact ``"123.45"`` string (no float on the way).

    Negative amounts (losses, shortfalls in the impact tables) keep their sign
    in front of the whole amount: -150 fen is ``"-1.50"`` (floor division of a
    negative number would give ``"-2.50"``).
    """
    fen = pl.col(col)
    size = fen.abs()
    return pl.concat_str(
        [
            pl.when(fen < 0).then(pl.lit("-")).otherwise(pl.lit("")),
            (size // 100).cast(pl.String),
            pl.lit("."),
            (size % 100).cast(pl.String).str.zfill(2),
        ]
    )


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP)."""
_PLAIN_NUMBER = r"^[+-]?[0-9]+(\.[0-9]+)?$"


def formula_safe(expr: pl.Expr) -> pl.Expr:
    """A text cell a spreadsheet shows as text (OWASP's CSV-injection guidance).

    A value starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
    return gets a leading ``'``, which spreadsheets show as text and do not
    evaluate; plain numbers (``-12.50``) are left alone so they stay numbers.
    Only for files written for people (the impact tables, the rejects file's
    columns); contract files stay exact (see docs/contracts.md).
    """
    text = expr.cast(pl.String)
    risky = text.str.contains(r"^[=+\-@\t\r]") & ~text.str.contains(_PLAIN_NUMBER)
    return pl.when(risky.fill_null(False)).then(pl.lit("'") + text).otherwise(text)


def write_report_csv(frame: pl.DataFrame, path: Path | str) -> Path:
    """Write a table meant for a spreadsheet: every text column made formula-safe."""
    safe = frame.with_columns(
        formula_safe(pl.col(name)).alias(name)
        for name, dtype in frame.schema.items()
        if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)
    )
    target = Path(path)
    safe.write_csv(target)
    return target


def ts_to_text(col: str = "ts", tz: str = DEFAULT_TZ) -> pl.Expr:
    """UTC timestamps as RFC 3339 with milliseconds in ``tz``."""
    return pl.col(col).dt.convert_time_zone(tz).dt.strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")


def to_wire(frame: pl.DataFrame, *, tz: str = DEFAULT_TZ, text: bool = True) -> pl.DataFrame:
    """A canonical frame in the wire layout (``text=False`` keeps native types)."""
    if text:
        ts = ts_to_text("ts", tz)
        amount = fen_to_text("amount_fen")
    else:
        ts = pl.col("ts")
        amount = (pl.col("amount_fen").cast(pl.Decimal(18, 2)) / 100).cast(pl.Decimal(18, 2))
    return frame.select(
        [
            ts.alias("ts") if c == "ts" else
            amount.alias("amount") if c == "amount" else
            pl.col(c).cast(pl.String) if c in ("outcome", "risk_decision") else
            pl.col(c)
            for c in WIRE_NAMES
        ]
    )


class EventWriter:
    """Append canonical batches to one file in the format its name says.

    Use as a context manager; the file is complete only after ``close()``.
    """

    def __init__(self, path: Path | str, *, tz: str = DEFAULT_TZ) -> None:
        self.path = Path(path)
        self.format, self.gzipped = detect_format(self.path)
        self.tz = tz
        self.rows = 0
        self._fh: BinaryIO | None = None
        self._pq: pq.ParquetWriter | None = None
        self._header_written = False
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _handle(self) -> BinaryIO:
        if self._fh is None:
            self._fh = cast(
                BinaryIO,
                gzip.open(self.path, "wb", compresslevel=6) if self.gzipped
                else open(self.path, "wb"),
            )
        return self._fh

    def write(self, frame: pl.DataFrame) -> None:
        if self.format is Format.PARQUET:
            table = to_wire(frame, tz=self.tz, text=False).to_arrow()
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._pq.write_table(table)
        elif self.format is Format.CSV:
            fh = self._handle()
            to_wire(frame, tz=self.tz).write_csv(fh, include_header=not self._header_written)
            self._header_written = True
        else:
            fh = self._handle()
            to_wire(frame, tz=self.tz).write_ndjson(fh)
        self.rows += frame.height

    def close(self) -> None:
        if self.format is Format.PARQUET and self._pq is None:
            # An empty but valid file, so readers see the contract's columns.
            empty = to_wire(empty_events(), tz=self.tz, text=False).to_arrow()
            pq.write_table(empty, self.path)
        if self.format is Format.CSV and not self._header_written:
            self._handle().write((",".join(WIRE_NAMES) + "\n").encode())
            self._header_written = True
        if self._pq is not None:
            self._pq.close()
            self._pq = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def write_events(frame: pl.DataFrame, path: Path | str, *, tz: str = DEFAULT_TZ) -> Path:
    """Write a whole canonical frame in the format the file name says."""
    with EventWriter(path, tz=tz) as w:
        w.write(frame)
    return Path(path)


__all__ = [
    "EventWriter", "fen_to_text", "formula_safe", "to_wire", "ts_to_text", "write_events",
    "write_report_csv",
]
