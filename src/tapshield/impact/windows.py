"""The time and slice an incident's lost sales are measured over.

An incident's impact window runs from the start of the hour it began in to
the end of the hour its recovery tail ends in: whole local hours, because the
counterfactual is an hourly profile. Extending to whole hours adds no bias
(before the start and after the recovery, counterfactual minus actual is zero
in expectation), only a little noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from tapshield.events.codes import risk_decline_expr, technical_expr
from tapshield.impact.config import ImpactConfig
from tapshield.incident import Incident, scope_expr

STABLE_DIMS: frozenset[str] = frozenset(
    {"channel", "region", "merchant_id", "merchant_category", "carrier", "os", "device_model"}
)
"""Slices whose share of a merchant's sales is stable week to week, so the
merchant's own history of the slice is a fair counterfactual. A scope on
``app_version`` or ``server_version`` follows a rollout (the slice did not
exist last week), so it is measured from the attempts instead."""

HISTORY_DIMS: frozenset[str] = frozenset({"channel", "region", "merchant_id"})
"""Scopes a precomputed sales history (merchant, channel, region, hour) can serve."""

HOUR = timedelta(hours=1)


def signature(cause: str) -> pl.Expr | None:
    """The attempts that carry an incident's failure, or ``None`` if its declines were right.

    A technical outage (interface, network, release) fails taps with technical
    codes; a risk-control misfire declines good customers, which loses sales
    just the same. A fraud attack's declines stopped attackers: no sale was
    lost, so nothing is counted. An unknown cause counts both kinds.
    """
    match cause:
        case "interface" | "network" | "release":
            return technical_expr()
        case "risk_control":
            return risk_decline_expr()
        case "fraud_attack":
            return None
        case _:
            return technical_expr() | risk_decline_expr()


def local_naive(ts: datetime, tz: str) -> datetime:
    return ts.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def ceil_hour(t: datetime) -> datetime:
    f = floor_hour(t)
    return f if f == t else f + HOUR


def local_hour_expr(tz: str, col: str = "ts") -> pl.Expr:
    """Event time as the naive local hour it falls in (hour-of-week keys are local)."""
    return pl.col(col).dt.convert_time_zone(tz).dt.replace_time_zone(None).dt.truncate("1h")


def with_local_hour(frame: pl.DataFrame, tz: str, col: str = "ts",
                    name: str = "hour") -> pl.DataFrame:
    """``frame`` plus the naive local hour of ``col``, converting each distinct
    quarter-hour once instead of every row (every UTC offset in use is a
    multiple of 15 minutes, so the local hour is constant within one)."""
    q = pl.col(col).dt.truncate("15m")
    quarters = frame.select(q.unique().alias("_q")).with_columns(
        pl.col("_q").dt.convert_time_zone(tz).dt.replace_time_zone(None).dt.truncate("1h")
        .alias("_h")
    )
    return frame.with_columns(
        q.replace_strict(quarters["_q"], quarters["_h"], return_dtype=pl.Datetime("us"))
        .alias(name)
    )


@dataclass(frozen=True, slots=True)
class ImpactWindow:
    """One incident, resolved to the hours and slice its losses are measured on."""

    incident: Incident
    start: datetime
    """UTC instant the failure began."""
    end: datetime
    """UTC instant it ended (the last event for an open incident)."""
    first_hour: datetime
    """Local naive hour the impact window starts (inclusive)."""
    last_hour: datetime
    """Local naive hour after the recovery tail (exclusive)."""
    lookback_hour: datetime
    """Earliest local hour the counterfactual may read."""
    context: timedelta
    recapture: timedelta

    @property
    def id(self) -> str:
        return self.incident.id

    @property
    def scope(self) -> list[dict[str, str]]:
        return self.incident.scope

    @property
    def signature(self) -> pl.Expr | None:
        return signature(self.incident.cause)

    @property
    def stable(self) -> bool:
        return all(set(c) <= STABLE_DIMS for c in self.scope)

    @property
    def history_servable(self) -> bool:
        return all(set(c) <= HISTORY_DIMS for c in self.scope)

    def in_slice(self) -> pl.Expr:
        return scope_expr(self.scope)

    @property
    def plot_first(self) -> datetime:
        return self.first_hour - self.context

    @property
    def plot_last(self) -> datetime:
        return self.last_hour + self.context

    def hours(self, *, plot: bool = False) -> list[datetime]:
        a, b = (self.plot_first, self.plot_last) if plot else (self.first_hour, self.last_hour)
        n = int((b - a) / HOUR)
        return [a + i * HOUR for i in range(n)]

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


def resolve_windows(
    incidents: list[Incident], config: ImpactConfig, data_end: datetime | None
) -> list[ImpactWindow]:
    """Impact windows for incidents; an open incident ends at the last event seen.

    Before the events are read ``data_end`` is unknown: an open incident then
    gets a provisional end 30 days on (so the pass keeps everything after its
    start) and is resolved again once the last event is known.
    """
    out = []
    tz = config.tz
    lookback = max(timedelta(days=7 * config.history_weeks), timedelta(days=config.history_days))
    context = timedelta(hours=config.context_hours)
    for inc in incidents:
        end = inc.end if inc.end is not None else (data_end or inc.start + timedelta(days=30))
        end = max(end, inc.start)
        first = floor_hour(local_naive(inc.start, tz))
        last = ceil_hour(local_naive(end + config.recovery_tail, tz))
        if last <= first:
            last = first + HOUR
        out.append(ImpactWindow(
            incident=inc, start=inc.start, end=end, first_hour=first, last_hour=last,
            lookback_hour=first - context - lookback, context=context,
            recapture=config.recapture_window,
        ))
    return out


def contaminated_hours(windows: list[ImpactWindow]) -> pl.Series:
    """Local hours inside any impact window: never used as someone's history."""
    hours = sorted({h for w in windows for h in w.hours()})
    return pl.Series("hour", hours, dtype=pl.Datetime("us"))
