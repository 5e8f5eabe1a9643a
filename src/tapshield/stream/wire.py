"""The bytes on the internal topics: Arrow IPC micro-batches and aggregate records."""

from __future__ import annotations

import io

import polars as pl

from tapshield.events.schema import CANONICAL_SCHEMA

SEQ, PART, OFFSET = "_seq", "_part", "_offset"
"""Stream columns riding along with canonical events on ``T.canonical``: the file
position (null when the producer sent none), the input partition and offset."""
STREAM_COLUMNS = (SEQ, PART, OFFSET)
MAX_ROWS = 4096
"""Rows per canonical message: about 100-200 kB compressed, well under Kafka's 1 MB
default ``message.max.bytes``."""


_ENUMS = {name: dtype for name, dtype in CANONICAL_SCHEMA.items()
          if isinstance(dtype, pl.Enum)}


def encode(frame: pl.DataFrame) -> bytes:
    """Arrow IPC (LZ4). Enum columns travel as their codes: Polars writes a null of an
    Enum as an out-of-range dictionary key that it then refuses to read back."""
    buf = io.BytesIO()
    frame.with_columns(pl.col(c).to_physical() for c in _ENUMS if c in frame.columns) \
        .write_ipc(buf, compression="lz4")
    return buf.getvalue()


def decode(data: bytes) -> pl.DataFrame:
    frame = pl.read_ipc(io.BytesIO(data))
    missing = [c for c in (*CANONICAL_SCHEMA, *STREAM_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"canonical message lacks column(s) {', '.join(missing)}")
    return frame.with_columns(
        pl.Series(c, dtype.categories).gather(frame.get_column(c)).cast(dtype)
        for c, dtype in _ENUMS.items()
    )


def chunks(frame: pl.DataFrame, rows: int = MAX_ROWS) -> list[pl.DataFrame]:
    return [frame.slice(i, rows) for i in range(0, frame.height, rows)]
