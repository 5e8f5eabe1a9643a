"""Invariants of the lost-sales measurement, on random traffic.

* no outage, no loss: demand that never failed costs nothing, whatever its noise;
* more outage, no less loss: failing more taps can only raise every merchant's net loss;
* nothing is double counted: recapture never exceeds the failed amount, net >= 0;
* the result does not depend on how the stream is cut into batches.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import polars as pl
from helpers import T0, Merchant, Outage, incident, regular_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapshield.events.schema import CANONICAL_SCHEMA
from tapshield.impact import ImpactConfig, assess

DAY = timedelta(days=1)
LAST_DAY = T0 + 15 * DAY  # incident day: two weeks of history before it
WINDOW = (LAST_DAY + timedelta(hours=10), LAST_DAY + timedelta(hours=14))
SCOPE = [{"channel": "nfc"}]


def random_events(seed: int, n_merchants: int, taps_per_day: int) -> pl.DataFrame:
    """Sixteen days of noisy demand (Poisson counts, log-normal amounts), all approved,
    plus QR payments by some customers a few minutes after an NFC tap on the last day."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[object]] = {k: [] for k in CANONICAL_SCHEMA}
    n = 0
    for d in range(16):
        for m in range(n_merchants):
            k = int(rng.poisson(taps_per_day))
            secs = np.sort(rng.integers(8 * 3600, 22 * 3600, k))
            for s in secs:
                ts = T0 + d * DAY + timedelta(seconds=int(s))
                user = f"u{int(rng.integers(0, 40))}"
                amount = int(rng.lognormal(8.5, 0.8)) + 1
                for channel, at in (("nfc" if rng.random() < 0.5 else "qr", ts),) + (
                    (("qr", ts + timedelta(minutes=4)),) if d == 15 and rng.random() < 0.3
                    else ()
                ):
                    n += 1
                    row = {
                        "event_id": f"e{n}", "ts": at, "payment_id": f"p{n}", "user_id": user,
                        "device_id": "d" + user, "merchant_id": f"m{m}", "channel": channel,
                        "region": "CN-GD" if m % 2 == 0 else "CN-JS", "amount_fen": amount,
                        "outcome": "approved", "response_code": "00", "latency_ms": 100.0,
                        "carrier": "cm", "os": "ios", "app_version": "8.1.0",
                        "device_model": "AP-3", "server_version": "gw-1",
                        "merchant_category": "5812", "risk_decision": "approve",
                    }
                    for key, column in rows.items():
                        column.append(row[key])
    return pl.DataFrame(rows, schema=CANONICAL_SCHEMA).sort("ts")


def fail(events: pl.DataFrame, ids: set[str]) -> pl.DataFrame:
    hit = pl.col("event_id").is_in(sorted(ids))
    return events.with_columns(
        pl.when(hit).then(pl.lit("failed")).otherwise(pl.col("outcome").cast(pl.String))
        .cast(CANONICAL_SCHEMA["outcome"]).alias("outcome"),
        pl.when(hit).then(pl.lit("96")).otherwise(pl.col("response_code")).alias("response_code"),
    )


def candidates(events: pl.DataFrame) -> list[str]:
    inside = events.filter(pl.col("ts").is_between(*WINDOW) & (pl.col("channel") == "nfc"))
    return inside["event_id"].to_list()


def run(events: pl.DataFrame, **kw: object):  # type: ignore[no-untyped-def]
    inc = incident(WINDOW[0], WINDOW[1], SCOPE)
    return assess(events, [inc], **kw)  # type: ignore[arg-type]


def net_by_merchant(result) -> dict[str, int]:  # type: ignore[no-untyped-def]
    m = result.merchants
    return dict(zip(m["merchant_id"].to_list(), m["net_fen"].to_list(), strict=True))


traffic = st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(2, 8))
SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(traffic)
def test_no_outage_no_loss(params: tuple[int, int, int]) -> None:
    events = random_events(*params)
    result = run(events)
    assert result.incidents[0].totals["net_fen"] == 0
    assert result.incidents[0].totals["gross_fen"] == 0
    assert result.merchants.height == 0


@SETTINGS
@given(traffic, st.data())
def test_more_outage_no_less_loss(params: tuple[int, int, int], data: st.DataObject) -> None:
    events = random_events(*params)
    pool = candidates(events)
    small = set(data.draw(st.lists(st.sampled_from(pool), unique=True), label="A")) if pool \
        else set()
    extra = set(data.draw(st.lists(st.sampled_from(pool), unique=True), label="B-A")) if pool \
        else set()
    a = run(fail(events, small))
    b = run(fail(events, small | extra))
    na, nb = net_by_merchant(a), net_by_merchant(b)
    for merchant, loss in na.items():
        assert nb.get(merchant, 0) >= loss, (merchant, loss, nb.get(merchant))
    assert b.incidents[0].totals["net_fen"] >= a.incidents[0].totals["net_fen"]
    for r in (a, b):
        cells = r.cells
        if cells.height:
            assert (cells["net_fen"] >= 0).all()
            assert (cells["recaptured_fen"] <= cells["gross_fen"]).all()
            assert (cells["gross_fen"] >= cells["failed_fen"]).all()
        # the failed taps themselves are a floor on the gross loss
        assert r.incidents[0].totals["gross_fen"] >= (
            r.incidents[0].totals["failed_fen"] - r.incidents[0].totals["rescued_in_slice_fen"])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traffic, st.lists(st.integers(1, 400), min_size=1, max_size=6))
def test_batch_cut_does_not_change_the_result(params: tuple[int, int, int],
                                             cuts: list[int]) -> None:
    events = random_events(*params)
    events = fail(events, set(candidates(events)[::2]))
    whole = run(events)
    bounds = sorted({0, events.height, *[min(c * 7, events.height) for c in cuts]})
    batches = [events.slice(a, b - a) for a, b in pairwise(bounds)]
    parts = run(iter(batches))
    assert whole.cells.equals(parts.cells)
    assert whole.incidents[0].totals == parts.incidents[0].totals


def test_longer_outage_loses_more_in_a_regular_world() -> None:
    losses = []
    for hours in (1, 3, 6):
        start = T0 + 29 * DAY + timedelta(hours=9)
        o = Outage(start=start, end=start + timedelta(hours=hours), recapture_every=3)
        ev = regular_events([Merchant("m1"), Merchant("m2", region="CN-JS")], days=30,
                            outages=[o])
        r = assess(ev, [incident(o.start, o.end, SCOPE)])
        losses.append(r.incidents[0].totals["net_fen"])
    assert losses[0] < losses[1] < losses[2]


def test_fraud_attack_declines_are_not_lost_sales() -> None:
    events = random_events(7, 2, 6)
    events = fail(events, set(candidates(events)))
    r = assess(events, [incident(WINDOW[0], WINDOW[1], SCOPE, cause="fraud_attack")])
    assert r.incidents[0].totals["net_fen"] == 0
    assert r.incidents[0].window.signature is None


def test_counterfactual_falls_back_with_short_history() -> None:
    # one week of history: no hour-of-week samples, enough for hour-of-day
    start = T0 + 7 * DAY + timedelta(hours=9)
    o = Outage(start=start, end=start + timedelta(hours=2))
    ev = regular_events([Merchant("m1")], days=8, outages=[o])
    r = assess(ev, [incident(o.start, o.end, SCOPE)])
    tot = r.incidents[0].totals
    assert tot["hours_week"] == 0 and tot["hours_day"] > 0 and tot["hours_attempts"] == 0
    assert tot["net_fen"] == tot["gross_fen"] > 0
    # a single day of data: only the attempts that showed up
    ev1 = regular_events([Merchant("m1")], start=start.replace(hour=16) - DAY, days=1,
                         outages=[o])
    r1 = assess(ev1, [incident(o.start, o.end, SCOPE)])
    t1 = r1.incidents[0].totals
    assert t1["hours_week"] == 0 and t1["hours_day"] == 0 and t1["hours_attempts"] > 0
    assert t1["gross_fen"] == t1["failed_fen"]


def test_rollout_scope_is_measured_from_attempts() -> None:
    start = T0 + 29 * DAY + timedelta(hours=9)
    o = Outage(start=start, end=start + timedelta(hours=2))
    ev = regular_events([Merchant("m1")], days=30, outages=[o])
    inc = incident(o.start, o.end, [{"channel": "nfc", "app_version": "8.1.0"}], cause="release")
    r = assess(ev, [inc])
    tot = r.incidents[0].totals
    assert tot["hours_week"] == 0 and tot["hours_day"] == 0
    assert tot["gross_fen"] == tot["failed_fen"] > 0


def test_other_incident_windows_are_not_history() -> None:
    # the same outage a week earlier must not lower this week's counterfactual
    s2 = T0 + 29 * DAY + timedelta(hours=9)
    s1 = s2 - 7 * DAY
    o1 = Outage(start=s1, end=s1 + timedelta(hours=3))
    o2 = Outage(start=s2, end=s2 + timedelta(hours=3))
    ev = regular_events([Merchant("m1")], days=30, outages=[o1, o2])
    both = assess(ev, [incident(o1.start, o1.end, SCOPE, id="a"),
                       incident(o2.start, o2.end, SCOPE, id="b")])
    assert both.incidents[0].totals["net_fen"] == both.incidents[1].totals["net_fen"] > 0


def test_open_incident_runs_to_the_last_event() -> None:
    start = T0 + 29 * DAY + timedelta(hours=20)
    o = Outage(start=start, end=start + timedelta(days=2))
    ev = regular_events([Merchant("m1")], days=30, outages=[o])
    r = assess(ev, [incident(o.start, None, SCOPE)])
    assert r.incidents[0].window.end == ev["ts"].max()
    assert r.incidents[0].totals["net_fen"] > 0
    assert datetime(2026, 1, 1, tzinfo=UTC) < r.incidents[0].window.end


def test_config_validation() -> None:
    import pytest

    from tapshield.errors import ContractError

    with pytest.raises(ContractError, match="unknown"):
        ImpactConfig.from_mapping({"nope": 1})
    with pytest.raises(ContractError, match="confidence"):
        ImpactConfig.from_mapping({"confidence": "1.5"})
    cfg = ImpactConfig.from_mapping({"recovery_tail_hours": 2, "confidence": 0.95})
    assert cfg.recovery_tail == timedelta(hours=2)
    assert str(cfg.confidence) == "0.95"


def test_precomputed_history_gives_the_same_answer() -> None:
    """History from a sales table (e.g. a warehouse) + only the recent events == all events."""
    from tapshield.impact.collect import hourly_sales

    start = T0 + 29 * DAY + timedelta(hours=9)
    o = Outage(start=start, end=start + timedelta(hours=3), recapture_every=4)
    ev = regular_events([Merchant("m1"), Merchant("m2", region="CN-JS")], days=30, outages=[o])
    ev = ev.vstack(random_events(3, 2, 5).with_columns(pl.col("ts") + 14 * DAY)).sort("ts")
    inc = incident(o.start, o.end, [{"channel": "nfc", "region": "CN-GD"}, {"channel": "nfc",
                                                                            "region": "CN-JS"}])
    whole = assess(ev, [inc])
    cut = T0 + 29 * DAY
    history = hourly_sales(ev.filter(pl.col("ts") < cut), "Asia/Shanghai")
    split = assess(ev.filter(pl.col("ts") >= cut), [inc], history=history.lazy())
    assert whole.incidents[0].totals["hours_week"] > 0
    assert split.incidents[0].totals == whole.incidents[0].totals
    assert split.cells.equals(whole.cells)
