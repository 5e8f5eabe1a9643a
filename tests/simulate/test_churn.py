"""The churn model: off changes nothing, on only removes taps, and the truth is exact."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tapshield.events.read import EventReader
from tapshield.simulate import Scenario, ScenarioError, simulate
from tapshield.simulate.churn import true_effect
from tapshield.timeutil import parse_rfc3339

from .conftest import write_scenario

OUTAGE = {"id": "qr-down", "kind": "interface", "channel": "qr", "start": "+60m",
          "duration": "30m", "failure_rate": 0.9}
DECOY = {"id": "shop", "kind": "small_merchant", "merchant_id": "m3", "start": "+30m",
         "duration": "2h", "decline_rate": 0.9}
KEYS = ["ts", "user_id", "merchant_id", "channel", "amount_fen", "outcome", "response_code",
        "latency_ms"]


def _scenario(folder: Path, traffic: Path, churn: dict[str, Any] | None) -> Scenario:
    fields: dict[str, Any] = {"name": "churny", "duration": "4h", "scale": 1.0,
                              "faults": [OUTAGE, DECOY]}
    if churn is not None:
        fields["churn"] = churn
    return write_scenario(folder, traffic, **fields)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, small_traffic: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, churn in (("off", None), ("zero", {"enabled": True, "hazard": 0.0}),
                        ("on", {"enabled": True, "hazard": 0.6})):
        folder = tmp_path_factory.mktemp(name)
        r = simulate(_scenario(folder, small_traffic, churn), folder / "sim", labels=False)
        out[name] = (r, pl.concat(list(EventReader(r.events_path))))
    return out


def test_churn_off_or_at_zero_hazard_leaves_every_event_as_it_was(runs: dict[str, Any]) -> None:
    off, zero = runs["off"][1], runs["zero"][1]
    assert off.height > 10_000
    assert off.equals(zero), "churn must not shift any random stream"
    assert "churn" not in runs["off"][0].truth
    assert not (runs["off"][0].out_dir / "churn.parquet").exists()
    # at hazard 0 the notices are still logged, and nobody leaves
    assert runs["zero"][0].truth["churn"]["customers_left"] == 0
    assert runs["zero"][0].truth["churn"]["faults"][0]["notified"] > 0


def test_churn_only_removes_the_taps_of_customers_who_left(runs: dict[str, Any]) -> None:
    r, on = runs["on"]
    off = runs["off"][1]
    customers = pl.read_parquet(r.out_dir / "churn.parquet")
    taps = pl.read_parquet(r.out_dir / "churn_taps.parquet")
    left = customers.filter(pl.col("churned_at").is_not_null())
    assert left.height > 20 and taps.height > 0
    # every event with churn is an event without it; the rest are the removed taps
    missing = off.select(KEYS).join(on.select(KEYS), on=KEYS, how="anti")
    assert on.select(KEYS).join(off.select(KEYS), on=KEYS, how="anti").height == 0
    first = missing.sort("ts").unique(subset=["user_id", "ts"], keep="first")
    assert set(first["user_id"].unique().to_list()) <= set(left["user_id"].to_list())
    assert missing.select("user_id", "ts").unique().height >= taps.height
    # nobody pays after leaving (an account takeover's taps, on the thief's new device,
    # are not the customer's and go on)
    own = on.filter(pl.col("device_id").str.slice(1) == pl.col("user_id").str.slice(1))
    starts = own.group_by("payment_id", "user_id").agg(pl.col("ts").min())
    gone = starts.join(left.group_by("user_id").agg(pl.col("churned_at").min()), on="user_id")
    bad = gone.filter(pl.col("ts") > pl.col("churned_at"))
    assert bad.height == 0
    # the decoy does not drive anybody away, and only the paging outage sends notices
    assert set(customers["fault_id"].to_list()) == {"qr-down"}
    assert customers.filter(pl.col("notified_at").is_not_null()).height > 0


def test_truth_states_the_exact_effect_and_is_deterministic(runs: dict[str, Any],
                                                            tmp_path: Path,
                                                            small_traffic: Path) -> None:
    r, on = runs["on"]
    t = r.truth["churn"]["faults"][0]
    assert t["fault_id"] == "qr-down" and t["churned"] > 0
    assert t["retention_effect"] < 0 and t["lost_spending_fen"] > 0
    # the effect recomputed from the files: affected customers who paid in the window
    # without churn (events + removed taps) and with it (events)
    customers = pl.read_parquet(r.out_dir / "churn.parquet")
    taps = pl.read_parquet(r.out_dir / "churn_taps.parquet")
    f = r.truth["faults"][0]
    lo = parse_rfc3339(f["end"])
    hi = min(parse_rfc3339(r.truth["end"]), lo + timedelta(hours=2))
    users = customers.filter(pl.col("fault_id") == "qr-down")["user_id"].to_list()
    approved = on.filter((pl.col("outcome").cast(pl.String) == "approved")
                         & (pl.col("ts") > lo) & (pl.col("ts") <= hi)
                         & pl.col("user_id").is_in(users))
    with_churn = set(approved["user_id"].to_list())
    restored = with_churn | set(taps.filter(pl.col("approved") & (pl.col("ts") > lo)
                                            & (pl.col("ts") <= hi)
                                            & pl.col("user_id").is_in(users))["user_id"]
                                .to_list())
    exact = (len(with_churn) - len(restored)) / len(users)
    assert t["retention_effect"] == pytest.approx(exact, abs=1e-6)
    assert true_effect(customers, taps, users, lo, hi).effect == pytest.approx(exact)
    again = simulate(_scenario(tmp_path, small_traffic, {"enabled": True, "hazard": 0.6}),
                     tmp_path / "sim", labels=False)
    assert again.truth["churn"] == r.truth["churn"]
    assert pl.read_parquet(again.out_dir / "churn.parquet").equals(customers)


def test_a_late_notice_is_not_prompt_and_does_not_relieve(tmp_path: Path,
                                                            small_traffic: Path) -> None:
    """Notices 25 min into the outage, prompt within 10 min: those who failed in its
    first quarter hour were told late; every later failure was told at once."""
    sc = _scenario(tmp_path, small_traffic, {"enabled": True, "hazard": 0.6,
                                             "notice_after": "25m", "prompt_within": "10m",
                                             "reach": 1.0})
    r = simulate(sc, tmp_path / "sim", labels=False)
    c = pl.read_parquet(tmp_path / "sim" / "churn.parquet")
    f = r.truth["faults"][0]
    notice = parse_rfc3339(f["start"]) + timedelta(minutes=25)
    assert c["notified_at"].null_count() == 0  # everybody reached
    expected = c.select(pl.max_horizontal(pl.col("failed_at"), pl.lit(notice))
                        .alias("at"))["at"]
    assert (c["notified_at"] == expected).all()
    late = c.filter(pl.col("notified_at") - pl.col("failed_at") > timedelta(minutes=10))
    assert late.height > 0 and not late["prompt"].any()
    assert c.filter(pl.col("notified_at") - pl.col("failed_at")
                    <= timedelta(minutes=10))["prompt"].all()
    # told late, the full hazard; told promptly, 0.6 x (1 - 0.5)
    late_rate = late["churned_at"].is_not_null().sum() / late.height
    prompt = c.filter(pl.col("prompt"))
    assert prompt.height > 0
    assert late_rate > prompt["churned_at"].is_not_null().sum() / prompt.height


def test_a_bad_churn_block_names_the_field(tmp_path: Path, small_traffic: Path) -> None:
    with pytest.raises(ScenarioError, match=r"churn\.hazard"):
        _scenario(tmp_path, small_traffic, {"enabled": True, "hazard": 1.5})
    with pytest.raises(ScenarioError, match=r"churn"):
        _scenario(tmp_path, small_traffic, {"enabled": True, "causes": ["festival"]})
