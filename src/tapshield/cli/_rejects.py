"""A rejects file that exists only if something was rejected."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import polars as pl


class RejectFile:
    """Append rejected rows (row, errors, raw, wire columns) to a CSV file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._fh: IO[bytes] | None = None

    def write(self, rejects: pl.DataFrame) -> None:
        if rejects.height == 0:
            return
        rejects = _redacted(rejects)
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "wb")
            rejects.write_csv(self._fh)
        else:
            rejects.write_csv(self._fh, include_header=False)
        self.rows += rejects.height

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _redacted(rejects: pl.DataFrame) -> pl.DataFrame:
    """Personal identifiers masked, unsplittable records withheld (the row number
    finds the record in the input): a rejects file is passed around, the input is not."""
    from tapshield.errors import PERSONAL_COLUMNS, redact

    def redacted(column: str, as_column: str) -> pl.Series:
        values = rejects[column].cast(pl.String).to_list()
        return pl.Series(column, [redact(as_column, v) for v in values], dtype=pl.String)

    fixes = [redacted(c, c) for c in sorted(PERSONAL_COLUMNS) if c in rejects.columns]
    if "raw" in rejects.columns:  # the text of a record that could not be split
        fixes.append(redacted("raw", "*"))
    return rejects.with_columns(fixes)
