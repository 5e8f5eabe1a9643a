"""Determinism, the canonical contract, customer behaviour, the World API and live mode."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapshield.events.schema import CANONICAL_SCHEMA
from tapshield.simulate import Scenario, World, generate
from tapshield.simulate.live import stream

from .conftest import write_scenario

OUTAGE = {
    "id": "qr-down",
    "kind": "interface",
    "channel": "qr",
    "start": "+30m",
    "duration": "30m",
    "failure_rate": 0.9,
}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, small_traffic: Path) -> Scenario:
    return write_scenario(
        tmp_path_factory.mktemp("sc"),
        small_traffic,
        name="small",
        duration="90m",
        scale=1.0,
        faults=[OUTAGE],
    )


@pytest.fixture(scope="module")
def events(scenario: Scenario) -> pl.DataFrame:
    return pl.concat(list(generate(scenario)))


def test_batches_are_canonical_and_time_ordered(scenario: Scenario, events: pl.DataFrame) -> None:
    for batch in generate(scenario, chunk_rows=7_000):
        assert batch.schema == pl.Schema(CANONICAL_SCHEMA)
        assert batch.height <= 7_000
    assert events["ts"].is_sorted()
    assert events["event_id"].is_unique().all()
    assert events["ts"].min() >= scenario.start_ts  # type: ignore[operator]
    assert events["ts"].max() < scenario.end_ts  # type: ignore[operator]


def test_same_seed_same_events_other_seed_other_events(
    scenario: Scenario, events: pl.DataFrame
) -> None:
    again = pl.concat(list(generate(scenario)))
    assert again.equals(events)
    other = pl.concat(list(generate(scenario, seed=scenario.seed + 1)))
    assert not other.equals(events)


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunk=st.integers(min_value=1_000, max_value=200_000))
def test_events_do_not_depend_on_the_batch_size(
    scenario: Scenario, events: pl.DataFrame, chunk: int
) -> None:
    assert pl.concat(list(generate(scenario, chunk_rows=chunk))).equals(events)


def test_retries_share_the_payment_and_respect_eligibility(
    scenario: Scenario, events: pl.DataFrame
) -> None:
    per_tap = events.group_by("payment_id").agg(
        pl.len().alias("n"),
        pl.col("channel").n_unique().alias("channels"),
        pl.col("user_id").n_unique().alias("users"),
        pl.col("amount_fen").n_unique().alias("amt"),
        (pl.col("outcome") == "approved").sum().alias("approvals"),
    )
    assert per_tap["n"].max() <= 4
    assert (per_tap["users"] == 1).all() and (per_tap["amt"] == 1).all()
    assert per_tap["approvals"].max() == 1  # nobody is charged by two approvals
    assert per_tap.filter(pl.col("n") > 1).height > 0  # customers retry ...
    assert per_tap.filter(pl.col("channels") > 1).height > 0  # ... and switch method
    world = World.from_scenario(scenario)
    used = events.select("user_id", "channel").unique()
    allowed = world.eligible(used["user_id"].unique())
    assert used.join(allowed, on=["user_id", "channel"], how="anti").height == 0
    has = allowed.group_by("user_id").len()
    assert has["len"].min() >= 1
    assert 1.5 < has["len"].mean() < 3.9  # type: ignore[operator]  # not everyone has everything


def test_an_outage_shows_as_a_traffic_drop_and_retries(
    events: pl.DataFrame, scenario: Scenario
) -> None:
    s = scenario.start_ts + timedelta(minutes=30)
    e = s + timedelta(minutes=30)
    during = events.filter(pl.col("ts").is_between(s, e, closed="left"))
    before = events.filter(pl.col("ts") < s)
    first_tries = pl.col("event_id").str.ends_with("-1")
    qr_share = during.filter(first_tries.not_() & (pl.col("channel") != "qr")).height / max(
        during.filter(first_tries.not_()).height, 1
    )
    assert qr_share > 0.3  # failed QR taps move to other methods
    retries = during.filter(first_tries.not_()).height / during.height
    assert retries > 2 * before.filter(first_tries.not_()).height / before.height


def test_world_attempt_samples_like_the_simulator(scenario: Scenario, events: pl.DataFrame) -> None:
    world = World.from_scenario(scenario)
    s = scenario.start_ts + timedelta(minutes=35)
    base = events.filter(pl.col("ts").is_between(s, s + timedelta(minutes=20)))
    attempts = base.drop("outcome", "response_code", "latency_ms", "risk_decision")
    got = world.attempt(attempts, np.random.default_rng(3))
    assert {"outcome", "response_code", "latency_ms", "authorised", "fault_id"} <= set(got.columns)
    assert got.height == attempts.height
    qr = got.filter(pl.col("channel") == "qr")
    tech = qr["outcome"].cast(pl.String).is_in(["failed", "timeout"])
    p = world.technical_failure_probability(attempts.filter(pl.col("channel") == "qr"))
    assert abs(tech.mean() - p.mean()) < 0.03  # type: ignore[operator]
    assert p.min() > 0.85  # the oracle sees the outage
    assert set(qr.filter(pl.col("fault_id").is_not_null())["response_code"].unique()) <= {
        "91",
        "96",
        "68",
    }
    other = got.filter(pl.col("channel") != "qr")
    assert other["fault_id"].null_count() == other.height
    assert got.filter(pl.col("outcome") == "approved")["authorised"].all()
    # the same channel an hour later (after the outage) is healthy
    later = attempts.with_columns(pl.col("ts") + timedelta(minutes=60))
    assert world.technical_failure_probability(later.filter(pl.col("channel") == "qr")).max() < 0.02


def test_world_refuses_an_unknown_channel(scenario: Scenario, events: pl.DataFrame) -> None:
    world = World.from_scenario(scenario)
    bad = events.head(3).with_columns(pl.lit("carrier_pigeon").alias("channel"))
    with pytest.raises(ValueError, match="carrier_pigeon"):
        world.attempt(bad, np.random.default_rng(0))


def test_live_stream_paces_windows_of_event_time(scenario: Scenario, events: pl.DataFrame) -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    batches = list(
        stream(scenario, speed=600.0, batch_seconds=60.0, clock=lambda: now[0], sleep=sleep)
    )
    assert pl.concat(batches).equals(events)
    for b in batches:
        assert (b["ts"].max() - b["ts"].min()) < timedelta(seconds=60)  # type: ignore[operator]
    # 90 simulated minutes at 600x take 9 wall seconds
    assert now[0] == pytest.approx(90 * 60 / 600, rel=0.02)
    ff: list[float] = []
    list(
        stream(
            scenario,
            speed=600.0,
            batch_seconds=60.0,
            fast_forward=timedelta(minutes=60),
            clock=lambda: 0.0,
            sleep=ff.append,
        )
    )
    assert max(ff) <= 30 * 60 / 600 + 1e-6  # the first hour was not paced


def test_fraud_episodes_started_near_the_end_stop_at_it(
    tmp_path: Path, small_traffic: Path
) -> None:
    """Background fraud comes in episodes of many taps; one started in the last
    minute must not run past the scenario (a trickle after it reads as a silence)."""
    import yaml

    data = yaml.safe_load(small_traffic.read_text(encoding="utf-8"))
    data["fraud"]["share_of_taps"] = 0.05
    heavy = tmp_path / "heavy-fraud.yaml"
    heavy.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    for seed in (1, 2, 3):
        sc = write_scenario(tmp_path, heavy, name=f"fraud-{seed}", duration="20m", seed=seed)
        events = pl.concat(list(generate(sc)))
        assert events["ts"].max() < sc.end_ts  # type: ignore[operator]
