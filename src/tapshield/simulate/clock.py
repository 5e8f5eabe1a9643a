"""When taps happen: the arrival rate over time, minute by minute.

The rate is ``taps_per_second x scale x hourly(local hour) x weekly(local day)
x drift x festival``: the hourly profile is interpolated between hour centres
(no cliff at the top of each hour), the weekly and hourly profiles are
normalised to mean 1 so ``taps_per_second`` stays the mean rate of a normal
week, and the festival multiplies traffic up to ``multiplier`` with a linear
ramp at each end. Arrivals are a Poisson process, piecewise constant per minute.

The scenario is cut into *blocks* of whole minutes holding about the same
expected number of taps; each block has its own random stream, so the events
do not depend on how the output is later cut into batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from tapshield.simulate.model import Scenario, TrafficModel
from tapshield.timeutil import epoch_us

MINUTE_US = 60_000_000


def ramp_shape(t_us: np.ndarray, start_us: int, end_us: int, up_us: int, down_us: int
               ) -> np.ndarray:
    """0 outside ``[start, end)``, rising linearly over ``up`` and falling over ``down``."""
    t = t_us.astype(np.float64)
    inside = (t >= start_us) & (t < end_us)
    shape = inside.astype(np.float64)
    if up_us > 0:
        shape = np.minimum(shape, np.clip((t - start_us) / up_us, 0.0, 1.0))
    if down_us > 0:
        shape = np.minimum(shape, np.clip((end_us - t) / down_us, 0.0, 1.0))
    return shape


@dataclass(slots=True)
class FestivalWindow:
    start_us: int
    end_us: int
    ramp_us: int
    multiplier: float
    latency_factor: float
    name: str

    def shape(self, t_us: np.ndarray) -> np.ndarray:
        return ramp_shape(t_us, self.start_us, self.end_us, self.ramp_us, self.ramp_us)


def festival_of(scenario: Scenario, traffic: TrafficModel) -> FestivalWindow | None:
    f = scenario.festival
    if f is None:
        return None
    start = scenario.at(f.start)
    ramp = f.ramp if f.ramp is not None else traffic.festival.ramp
    return FestivalWindow(
        start_us=epoch_us(start),
        end_us=epoch_us(start + f.duration),
        ramp_us=int(min(ramp, f.duration / 2).total_seconds() * 1e6),
        multiplier=f.multiplier if f.multiplier is not None else traffic.festival.multiplier,
        latency_factor=traffic.festival.latency_factor,
        name=f.name,
    )


def minute_rates(scenario: Scenario, traffic: TrafficModel) -> tuple[int, np.ndarray]:
    """``(start_us, expected taps per minute)`` over the scenario (last minute partial)."""
    start = scenario.start_ts
    total_s = scenario.duration.total_seconds()
    n_min = int(np.ceil(total_s / 60.0))
    start_us = epoch_us(start)
    t_us = start_us + np.arange(n_min, dtype=np.int64) * MINUTE_US + MINUTE_US // 2
    tz = ZoneInfo(traffic.time.timezone)
    local0 = start.astimezone(tz)
    # local time of each minute centre, as fractional hours since local midnight Monday
    base = local0.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=local0.weekday())
    minutes = (t_us - epoch_us(base.astimezone(ZoneInfo("UTC")))) / 60e6
    hours = (minutes / 60.0) % (24 * 7)
    hourly = np.asarray(traffic.time.hourly, dtype=np.float64)
    hourly = hourly / hourly.mean() if hourly.mean() > 0 else np.ones(24)
    weekly = np.asarray(traffic.time.weekly, dtype=np.float64)
    weekly = weekly / weekly.mean() if weekly.mean() > 0 else np.ones(7)
    h = hours % 24
    # interpolate between hour centres (h = k + 0.5)
    xp = np.arange(-0.5, 25.0, 1.0)
    fp = np.concatenate([[hourly[-1]], hourly, [hourly[0]]])
    hour_factor = np.interp(h, xp, fp)
    day_factor = weekly[(hours // 24).astype(np.int64) % 7]
    days = (t_us - start_us) / 86_400e6
    drift = (1.0 + traffic.time.drift_per_day) ** days
    rate = traffic.time.taps_per_second * 60.0 * scenario.scale * hour_factor * day_factor * drift
    fest = festival_of(scenario, traffic)
    if fest is not None:
        rate = rate * (1.0 + (fest.multiplier - 1.0) * fest.shape(t_us))
    last = total_s - (n_min - 1) * 60.0
    rate[-1] *= last / 60.0
    return start_us, rate


@dataclass(frozen=True, slots=True)
class Block:
    index: int
    first_minute: int
    last_minute: int
    """Exclusive."""
    start_us: int
    end_us: int


def blocks(scenario: Scenario, traffic: TrafficModel, taps_per_block: float
           ) -> tuple[list[Block], np.ndarray]:
    """Cut the scenario into blocks of whole minutes with ~``taps_per_block`` taps each."""
    start_us, rate = minute_rates(scenario, traffic)
    end_us = epoch_us(scenario.end_ts)
    cum = np.cumsum(rate)
    n_blocks = max(1, int(np.ceil(cum[-1] / taps_per_block)))
    cuts = np.searchsorted(cum, np.arange(1, n_blocks) * taps_per_block, side="left") + 1
    edges = np.unique(np.concatenate([[0], cuts, [rate.size]]))
    out = []
    for i in range(edges.size - 1):
        a, b = int(edges[i]), int(edges[i + 1])
        out.append(Block(i, a, b, start_us + a * MINUTE_US,
                         min(end_us, start_us + b * MINUTE_US)))
    return out, rate


def scenario_bounds(scenario: Scenario) -> tuple[datetime, datetime]:
    return scenario.start_ts, scenario.end_ts
