"""Router configuration: the channels, their normal behaviour, and the stated
error rates every threshold is derived from.

A :class:`ChannelProfile` is what "normal" means for one channel: its
technical failure rate and its latency tail. Profiles are best estimated from
a normal period of history with :func:`estimate_profiles`; the defaults are
conservative placeholders for a channel nobody has measured yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import polars as pl

from tapshield.events.codes import technical_expr

DEFAULT_ORDER: tuple[str, ...] = ("nfc", "qr", "debit_card", "wallet")
"""The usual flash-pay preference: the card network's NFC path first, then QR,
then a linked debit card, then the wallet balance."""


@dataclass(frozen=True, slots=True)
class ChannelProfile:
    """Normal behaviour of one channel."""

    normal_failure_rate: float = 0.01
    """Share of attempts that fail technically *or* are slower than
    ``slow_ms`` when nothing is wrong (``p0`` of the elimination test). The
    default is deliberately on the noisy side for a channel nobody has
    measured (it needs four failures in a row, not three)."""
    slow_ms: float = 3_000.0
    """An answer slower than this counts as a failure for the channel's health,
    and the router stops waiting for an answer at this point and resolves
    the attempt with a status inquiry (it is far in the channel's normal tail:
    :func:`estimate_profiles` sets it at the 99.9th latency percentile)."""
    typical_ms: float = 300.0
    """Median answer time: an attempt is not started with less budget left."""
    inquiry_ms: float = 400.0
    """Round trip of a status inquiry when the channel answers."""
    inquiry_timeout_ms: float = 1_500.0
    """How long to wait for an inquiry answer before reversing (ISO 8583 0400)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.normal_failure_rate < 1.0:
            raise ValueError(
                f"normal_failure_rate must be in (0, 1), got {self.normal_failure_rate}"
            )
        for name in ("slow_ms", "typical_ms", "inquiry_ms", "inquiry_timeout_ms"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} must be > 0")


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """Everything the router decides from. Each number is a stated rate or cost."""

    order: tuple[str, ...] = DEFAULT_ORDER
    """Priority and fallback order; only these channels are ever routed."""
    profiles: Mapping[str, ChannelProfile] = field(default_factory=dict)
    """Per-channel normal behaviour; channels not listed get ``default_profile``."""
    default_profile: ChannelProfile = ChannelProfile()
    outage_failure_rate: float = 0.5
    """``p1``: the failure rate at which a channel counts as down. Below it, a
    failing attempt still fails over inside the tap, so a partially degraded
    channel costs latency, not payments."""
    false_elimination_every: float = 1_000_000.0
    """Accepted mean number of attempts on a healthy channel between false
    eliminations (ARL0). A false elimination costs little: traffic moves to
    the fallback until probes readmit the channel, seconds later."""
    false_readmission: float = 0.001
    """Accepted rate, per probe, of readmitting a channel still failing at
    ``p1`` (with one probe a second: at most one such readmission every ~17
    minutes of a half-broken channel; each costs ~2 failovers, since the
    fast-initial-response restart re-eliminates it quickly). A recovered
    channel comes back after ~10 good probes."""
    half_life_s: float = 300.0
    """Evidence half-life. Long against the seconds in which an outage piles
    up failures (even a region with one tap every ten seconds reaches three
    failures in half a minute), short against the hours between normal
    failures on a quiet channel, so isolated failures never accumulate."""
    probe_interval_s: float = 1.0
    """Probe (network echo / zero-amount test) period for an eliminated key:
    one message a second is negligible load even for a struggling partner."""
    heartbeat_after_s: float = 60.0
    """A channel with no outcome for this long is probed, so a fallback that
    died while unused is known before a customer is sent to it."""
    budget_ms: float = 15_000.0
    """How long a customer at the till waits for one tap, all attempts included."""
    give_up_below: float = 0.05
    """When every eligible channel is down, try the best one only if its
    estimated success probability is at least this; below it a wait buys the
    customer less than a 1-in-20 chance, so answer "use another method" now."""
    prior_weight: float = 2.0
    """Strength, in attempts, of the prior "the channel behaves normally" in
    the success-rate score: weak, so a few real outcomes dominate it."""
    regional: bool = True
    """Keep health per channel x region as well as per channel, so a regional
    interface fault eliminates the channel only where it is broken."""
    max_sessions: int = 100_000
    """Open taps remembered for idempotent retries of the same ``payment_id``."""

    def __post_init__(self) -> None:
        if not self.order:
            raise ValueError("order must name at least one channel")
        if len(set(self.order)) != len(self.order):
            raise ValueError(f"order repeats a channel: {self.order}")
        unknown = set(self.profiles) - set(self.order)
        if unknown:
            raise ValueError(f"profiles for channels not in order: {sorted(unknown)}")
        for ch in self.order:
            p0 = self.profile(ch).normal_failure_rate
            if not p0 < self.outage_failure_rate < 1.0:
                raise ValueError(
                    f"outage_failure_rate {self.outage_failure_rate} must be above the normal "
                    f"failure rate of {ch} ({p0}) and below 1"
                )
        if not self.false_elimination_every > 1.0:
            raise ValueError("false_elimination_every must be > 1")
        if not 0.0 < self.false_readmission < 1.0:
            raise ValueError("false_readmission must be in (0, 1)")
        for name in ("half_life_s", "probe_interval_s", "heartbeat_after_s", "budget_ms",
                     "prior_weight"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} must be > 0")
        if not 0.0 <= self.give_up_below < 1.0:
            raise ValueError("give_up_below must be in [0, 1)")
        object.__setattr__(self, "profiles", MappingProxyType(dict(self.profiles)))

    def profile(self, channel: str) -> ChannelProfile:
        return self.profiles.get(channel, self.default_profile)


def estimate_profiles(
    events: pl.DataFrame,
    *,
    slow_quantile: float = 0.999,
    bucket: str = "1h",
    trim_quantile: float = 0.75,
) -> dict[str, ChannelProfile]:
    """Estimate each channel's normal behaviour from canonical events.

    ``slow_ms`` is the ``slow_quantile`` latency of approved attempts, so by
    construction ``1 - slow_quantile`` of normal answers count as slow. The
    technical failure rate is pooled over the time buckets whose own rate is
    at most the ``trim_quantile`` of bucket rates: history used for profiles
    usually contains an outage or two, and the trimmed buckets drop them.
    Counts get a Jeffreys half-failure so a channel with no failures in the
    window still has a positive rate.
    """
    if not 0.5 <= slow_quantile < 1.0:
        raise ValueError("slow_quantile must be in [0.5, 1)")
    if events.height == 0:
        return {}
    tech = events.with_columns(technical_expr().alias("_tech"))
    lat = (
        tech.filter(pl.col("outcome").cast(pl.String) == "approved")
        .group_by("channel")
        .agg(
            pl.col("latency_ms").quantile(slow_quantile, "higher").alias("slow_ms"),
            pl.col("latency_ms").median().alias("typical_ms"),
        )
    )
    buckets = (
        tech.sort("ts")
        .group_by_dynamic("ts", every=bucket, group_by="channel")
        .agg(pl.len().alias("n"), pl.col("_tech").sum().alias("f"))
        .with_columns((pl.col("f") / pl.col("n")).alias("rate"))
    )
    pooled = (
        buckets.with_columns(pl.col("rate").quantile(trim_quantile).over("channel").alias("cut"))
        .filter(pl.col("rate") <= pl.col("cut"))
        .group_by("channel")
        .agg(((pl.col("f").sum() + 0.5) / (pl.col("n").sum() + 1.0)).alias("p_tech"))
    )
    table = pooled.join(lat, on="channel", how="left")
    out: dict[str, ChannelProfile] = {}
    default = ChannelProfile()
    for row in table.iter_rows(named=True):
        slow = row["slow_ms"] if row["slow_ms"] is not None else default.slow_ms
        typical = row["typical_ms"] if row["typical_ms"] is not None else default.typical_ms
        p0 = float(row["p_tech"]) + (1.0 - slow_quantile)
        out[str(row["channel"])] = ChannelProfile(
            normal_failure_rate=p0,
            slow_ms=max(float(slow), 1.0),
            typical_ms=max(float(typical), 1.0),
            inquiry_ms=max(float(typical), 1.0),
            inquiry_timeout_ms=max(float(slow), 1.0),
        )
    return out
