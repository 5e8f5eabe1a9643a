"""The rejects file: every rejected row, its reasons and its own bytes.

A CSV file with the columns ``row``, ``errors``, ``raw`` and the contract's
wire columns. It exists only if something was rejected.

* ``raw`` is the record exactly as it was in the input: every byte, its
  quoting, bytes that are not UTF-8, however long. It is written as one CSV
  field (quoted with doubled ``"`` where needed), so any CSV reader gives back
  the source bytes; when the source was not UTF-8, neither is that field.
  It is never altered for spreadsheets: it is the evidence.
* the wire columns show the values as read, for people: a value a
  spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR
  first) gets a leading ``'`` (OWASP's CSV-injection guidance), and personal
  identifiers (``user_id``, ``device_id``) are masked (``u1***24``), as in
  every message tapshield prints.

The file is a quarantine of the input, not an export: ``raw`` holds the same
personal data the input file holds, so it is kept with the input's own
protection (docs/trust.md, "Input-class files") and never sent to a partner,
a report or a notice.

The Python ``csv`` module writes it: a text layer that carries undecodable
bytes through unchanged (``surrogateescape``) makes the bytes exact.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import IO

import polars as pl

from tapshield.errors import PERSONAL_COLUMNS, mask_value
from tapshield.events.write import formula_safe


def _masked(column: str) -> pl.Expr:
    # masked values start with a letter or ``*``: never a formula
    return pl.col(column).map_elements(mask_value, return_dtype=pl.String).alias(column)


class RejectWriter:
    """Append rejected rows (``row, errors, raw, <columns>``) to one CSV file.

    The file is created at the first rejected row: no rows, no file.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.rows = 0
        self._fh: IO[str] | None = None
        self._csv: csv.DictWriter[str] | None = None
        self._columns: list[str] | None = None

    def write(self, rejects: pl.DataFrame) -> None:
        if rejects.height == 0:
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            raw = open(self.path, "wb")
            self._fh = io.TextIOWrapper(
                raw, encoding="utf-8", errors="surrogateescape", newline=""
            )
            self._columns = list(rejects.columns)
            self._csv = csv.DictWriter(self._fh, self._columns, lineterminator="\n")
            self._csv.writeheader()
        assert self._csv is not None and self._columns is not None
        shown = rejects.with_columns(
            _masked(c) if c in PERSONAL_COLUMNS else formula_safe(pl.col(c)).alias(c)
            for c, dtype in rejects.schema.items()
            if c not in ("row", "errors", "raw") and dtype == pl.String
        )
        for rec in shown.iter_rows(named=True):
            source = rec.get("raw")
            if isinstance(source, bytes):
                rec["raw"] = source.decode("utf-8", "surrogateescape")
            self._csv.writerow({c: rec.get(c) for c in self._columns})
        self.rows += rejects.height

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._csv = None


def read_raw(path: Path | str) -> list[bytes]:
    """The ``raw`` column of a rejects file, as the bytes the source had (tests, tools)."""
    csv.field_size_limit(sys.maxsize)
    with open(path, "rb") as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape", newline="")
        return [
            (rec.get("raw") or "").encode("utf-8", "surrogateescape")
            for rec in csv.DictReader(text)
        ]
