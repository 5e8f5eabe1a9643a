"""One streaming pass over the events: everything the impact model needs.

The pass keeps only sufficient statistics, so any file size fits in memory and
the result does not depend on how the stream was cut into batches (every
statistic is a sum, a minimum, a maximum or a set union, all associative):

* per incident, approved in-slice sales per (merchant, channel, region,
  local hour): the merchant's seasonal history and the actuals;
* the raw events of the impact windows (failed taps and rescues need the
  individual taps);
* the first hour of data (history before it is unknown, not zero);
* approved transactions per local day and the distinct customers (the
  denominators of the regulatory criteria).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from tapshield.impact.windows import HOUR, ImpactWindow, with_local_hour
from tapshield.timeutil import TS_DTYPE

HOURLY_SCHEMA: dict[str, pl.DataType] = {
    "merchant_id": pl.String(),
    "channel": pl.String(),
    "region": pl.String(),
    "hour": pl.Datetime("us"),
    "sales_fen": pl.Int64(),
    "sales_sq": pl.Float64(),
    "taps": pl.UInt32(),
}
"""Hourly approved sales of a slice. ``hour`` is the naive local hour;
``sales_sq`` is the sum of squared tap amounts (fen^2), the compound-Poisson
variance of the hour's sales, a statistic not money (float is fine)."""

WINDOW_COLUMNS: tuple[str, ...] = (
    "ts", "payment_id", "user_id", "merchant_id", "channel", "region", "amount_fen", "outcome",
    "response_code", "risk_decision", "carrier", "os", "app_version", "device_model",
    "server_version", "merchant_category",
)

_COMPACT_EVERY = 32


def hourly_sales(frame: pl.DataFrame, tz: str) -> pl.DataFrame:
    """Approved sales per (merchant, channel, region, local hour) of a canonical frame."""
    return _hourly(with_local_hour(frame, tz))


def _hourly(frame: pl.DataFrame) -> pl.DataFrame:
    """The hourly aggregate of a frame that already carries its local ``hour``."""
    amount = pl.col("amount_fen")
    return (
        frame.filter(pl.col("outcome").cast(pl.String) == "approved")
        .group_by("merchant_id", "channel", "region", "hour")
        .agg(
            amount.sum().alias("sales_fen"),
            (amount.cast(pl.Float64) ** 2).sum().alias("sales_sq"),
            pl.len().cast(pl.UInt32).alias("taps"),
        )
    )


def _merge_hourly(parts: list[pl.DataFrame]) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema=HOURLY_SCHEMA)
    return (
        pl.concat(parts)
        .group_by("merchant_id", "channel", "region", "hour")
        .agg(pl.col("sales_fen").sum(), pl.col("sales_sq").sum(),
             pl.col("taps").sum().cast(pl.UInt32))
    )


@dataclass(slots=True)
class Collected:
    """What the pass found; see the module docstring."""

    hourly: dict[str, pl.DataFrame]
    events: pl.DataFrame
    coverage_start: datetime | None
    """First local hour of data (naive)."""
    data_start: datetime | None
    data_end: datetime | None
    """UTC instants of the first and last event."""
    daily: pl.DataFrame
    """(day, approved_n, approved_fen) per local date."""
    clients: int
    rows: int = 0


@dataclass(slots=True)
class Collector:
    """Feed canonical batches with :meth:`add`, then call :meth:`finish`."""

    windows: list[ImpactWindow]
    tz: str
    _hourly: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    _events: list[pl.DataFrame] = field(default_factory=list)
    _coverage: datetime | None = None
    _daily: list[pl.DataFrame] = field(default_factory=list)
    _users: list[pl.Series] = field(default_factory=list)
    _start: datetime | None = None
    _end: datetime | None = None
    _rows: int = 0

    def _keep_range(self) -> tuple[datetime, datetime] | None:
        if not self.windows:
            return None
        lo = min(w.start - HOUR for w in self.windows)
        hi = max(w.end + w.recapture + HOUR for w in self.windows)
        return lo, hi

    def add(self, batch: pl.DataFrame) -> None:
        if batch.height == 0:
            return
        self._rows += batch.height
        frame = with_local_hour(batch, self.tz)
        span = frame.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"),
                            pl.col("hour").min().alias("h")).row(0)
        lo_ts, hi_ts, first_hour = span
        self._start = lo_ts if self._start is None else min(self._start, lo_ts)
        self._end = hi_ts if self._end is None else max(self._end, hi_ts)
        self._coverage = first_hour if self._coverage is None else min(self._coverage,
                                                                        first_hour)
        approved = pl.col("outcome").cast(pl.String) == "approved"
        self._daily.append(
            frame.filter(approved).group_by(pl.col("hour").dt.date().alias("day"))
            .agg(pl.len().cast(pl.Int64).alias("approved_n"),
                 pl.col("amount_fen").sum().alias("approved_fen"))
        )
        # distinct customers, counted by a 64-bit hash of the id: exact up to a
        # collision chance of ~n^2/2^65 (3e-6 for ten million customers), and a
        # fraction of the cost of hashing strings into a set
        self._users.append(batch.select(pl.col("user_id").hash(7).unique())["user_id"])
        for w in self.windows:
            lo = w.lookback_hour if w.stable else w.plot_first
            part = frame.filter(
                (pl.col("hour") >= lo) & (pl.col("hour") < w.plot_last) & w.in_slice()
            )
            self._hourly.setdefault(w.id, []).append(_hourly(part))
        keep = self._keep_range()
        if keep is not None:
            cols = [c for c in WINDOW_COLUMNS if c in batch.columns]
            ev = batch.filter(pl.col("ts").is_between(keep[0], keep[1])).select(cols)
            if ev.height:
                self._events.append(ev)
        if len(self._daily) >= _COMPACT_EVERY:
            self._compact()

    def _compact(self) -> None:
        self._daily = [_merge_daily(self._daily)]
        self._users = [pl.concat(self._users).unique()]
        for k, parts in self._hourly.items():
            self._hourly[k] = [_merge_hourly(parts)]

    def finish(self) -> Collected:
        events = (
            pl.concat(self._events) if self._events
            else pl.DataFrame(schema={c: _WINDOW_DTYPES[c] for c in WINDOW_COLUMNS})
        )
        clients = pl.concat(self._users).n_unique() if self._users else 0
        return Collected(
            hourly={w.id: _merge_hourly(self._hourly.get(w.id, [])) for w in self.windows},
            events=events,
            coverage_start=self._coverage,
            data_start=self._start,
            data_end=self._end,
            daily=_merge_daily(self._daily),
            clients=clients,
            rows=self._rows,
        )


def _merge_daily(parts: list[pl.DataFrame]) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema={"day": pl.Date(), "approved_n": pl.Int64(),
                                    "approved_fen": pl.Int64()})
    return pl.concat(parts).group_by("day").agg(pl.col("approved_n").sum(),
                                                 pl.col("approved_fen").sum()).sort("day")


def collect(batches: Iterable[pl.DataFrame], windows: list[ImpactWindow], tz: str) -> Collected:
    c = Collector(windows, tz)
    for b in batches:
        c.add(b)
    return c.finish()


def _window_dtypes() -> dict[str, pl.DataType]:
    from tapshield.events.schema import CANONICAL_SCHEMA

    out = {c: CANONICAL_SCHEMA[c] for c in WINDOW_COLUMNS}
    out["ts"] = TS_DTYPE
    return out


_WINDOW_DTYPES = _window_dtypes()
