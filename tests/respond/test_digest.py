"""The blocked-fraud digest: the attack-size baseline's statistic and its false-alarm rate,
and the incident book holding risk-decline notices in the digest."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.diagnose.types import Diagnosis, DiagnosisRequest
from tapshield.events.changes import empty_changes
from tapshield.events.validate import validate_frame
from tapshield.monitor.alerts import AlertEvent
from tapshield.pipeline import EventWindow
from tapshield.respond import IncidentBook, IncidentPolicy
from tapshield.respond.digest import AttackSizeBaseline, DigestPolicy, ExpTail, NegBin, Wave
from tests.events.helpers import rows

T0 = datetime(2026, 11, 11, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai


# -- the statistic ----------------------------------------------------------------


def test_negbin_moments_and_poisson_without_overdispersion() -> None:
    nb = NegBin.fit([10, 30, 10, 30, 20, 20])
    assert nb.mean == pytest.approx(20.0)
    var = 80.0  # sample variance (n - 1) of the sizes
    assert nb.k == pytest.approx(20.0 ** 2 / (var - 20.0))
    assert math.isinf(NegBin.fit([5, 5, 5, 5]).k), "variance below the mean: Poisson"


@pytest.mark.parametrize("sizes", [[3, 5, 8, 13, 21, 34, 55], [10.0] * 9, [0, 1, 2, 40]])
@pytest.mark.parametrize("alpha", [0.05, 1e-3, 1e-5])
def test_quantile_is_the_smallest_count_with_tail_at_most_alpha(
    sizes: list[float], alpha: float,
) -> None:
    tail = ExpTail.fit(sizes)
    q = tail.quantile(alpha)
    assert tail.sf(q) <= alpha < tail.sf(q - 1)
    assert q > max(sizes) or alpha >= tail.p_u


def test_the_tail_is_exponential_over_the_median() -> None:
    tail = ExpTail.fit([1, 2, 3, 4, 10, 20])
    assert tail.u == 3.5 and tail.p_u == 0.5
    assert tail.beta == pytest.approx((0.5 + 6.5 + 16.5) / 3)
    assert tail.sf(3.5 + tail.beta) == pytest.approx(0.5 / math.e)


def test_alpha_is_the_weekly_budget_over_the_waves_a_week() -> None:
    base = AttackSizeBaseline(DigestPolicy(false_incidents_per_week=1.0, min_history=3))
    for i in range(100):  # 100 waves in 24 hours: 700 a week
        base.add(10.0, T0 + timedelta(hours=24 * i / 100))
    assert base.alpha(T0 + timedelta(hours=24)) == pytest.approx(1 / 700)
    assert base.ready


def test_warm_up_tests_nothing_and_history_is_bounded() -> None:
    base = AttackSizeBaseline(DigestPolicy(min_history=5, history=8))
    for i in range(4):
        base.add(10.0 + i, T0)
    assert base.threshold(T0) is None
    for i in range(10):
        base.add(100.0 + i, T0)
    assert base.ready and len(base.sizes) == 8 and min(base.sizes) >= 100.0


def test_a_broad_slice_is_tested_against_the_compound_sum_of_its_episodes() -> None:
    """A slice expecting ``n`` ordinary episodes at once (its expected blocked
    attempts over the mean ordinary size) has a bar that grows with ``n``; a
    narrow slice keeps the pooled bar; the bar is deterministic."""
    base = AttackSizeBaseline(DigestPolicy(min_history=3))
    assert base.episodes_at_once(100.0) == 0.0  # nothing seen yet: no claim
    for i in range(40):
        base.add(10.0 + (i % 5) * 5, T0 + timedelta(minutes=30 * i))  # mean 20
    now = T0 + timedelta(hours=20)
    assert base.episodes_at_once(80.0) == pytest.approx(4.0)
    narrow = base.threshold(now)
    assert narrow is not None and base.threshold(now, 0.0) == narrow
    bars = [base.threshold(now, n) for n in (0.5, 2.0, 6.0)]
    assert all(b is not None for b in bars)
    assert narrow <= bars[0] <= bars[1] < bars[2]  # type: ignore[operator]
    assert base.threshold(now, 2.0) == bars[1]


def test_the_compound_bar_keeps_the_rate_for_sums_of_episodes() -> None:
    """Broad-slice waves simulated as their own episode plus Poisson(n) others less
    their mean cross the bar at about alpha (not 10 x, as the pooled bar does)."""
    rng = np.random.default_rng(11)
    base = AttackSizeBaseline(DigestPolicy(min_history=20, history=200))
    sizes = rng.negative_binomial(2, 2 / (2 + 20), 200).astype(float)
    for i, x in enumerate(sizes):
        base.add(float(x), T0 + timedelta(minutes=10 * i))
    now = T0 + timedelta(minutes=10 * 200)
    alpha, n = base.alpha(now), 3.0
    bar, pooled = base.threshold(now, n), base.threshold(now)
    assert bar is not None and pooled is not None
    trials = 20_000
    own = rng.negative_binomial(2, 2 / 22, trials)
    k = rng.poisson(n, trials)
    others = np.array([rng.negative_binomial(2, 2 / 22, c).sum() for c in k])
    waves = own + others - n * 20
    assert float(np.mean(waves >= bar)) <= 3 * alpha
    assert float(np.mean(waves >= pooled)) > 3 * alpha


def _draw(rng: np.random.Generator, mean: float, k: float, n: int) -> np.ndarray:
    if math.isinf(k):
        return rng.poisson(mean, n)
    return rng.negative_binomial(k, k / (k + mean), n)


@settings(max_examples=25, deadline=None)
@given(mean=st.floats(2.0, 60.0), k=st.sampled_from([math.inf, 5.0, 2.0, 0.8]),
       alpha=st.sampled_from([0.02, 0.005]), seed=st.integers(0, 2**31 - 1))
def test_false_alarm_rate_on_simulated_counts_is_near_alpha(
    mean: float, k: float, alpha: float, seed: int,
) -> None:
    """Fit on 200 ordinary sizes, test 20,000 new ordinary ones: the share that
    crosses the threshold stays near the stated alpha whatever the counts' mean
    and dispersion (a fixed threshold fitted to cases would not)."""
    rng = np.random.default_rng(seed)
    tail = ExpTail.fit([float(x) for x in _draw(rng, mean, k, 200)])
    q = tail.quantile(alpha)
    rate = float((_draw(rng, mean, k, 20_000) >= q).mean())
    assert rate <= 3 * alpha + 3 * math.sqrt(alpha / 20_000), (tail, q, rate)


@pytest.mark.parametrize(("mean", "k"), [(20.0, 2.0), (8.0, math.inf), (25.0, 0.8)])
def test_false_alarm_rate_averaged_over_many_histories_is_at_most_alpha(
    mean: float, k: float,
) -> None:
    """The stated rate as a long-run average: over 300 fitted histories of 200
    sizes the exceedance rate at alpha = 0.01 is at most alpha (within sampling
    error); for Poisson's lighter tail well below it."""
    rng = np.random.default_rng(20261207)
    alpha = 0.01
    rates = []
    for _ in range(300):
        tail = ExpTail.fit([float(x) for x in _draw(rng, mean, k, 200)])
        rates.append(float((_draw(rng, mean, k, 2_000) >= tail.quantile(alpha)).mean()))
    assert np.mean(rates) <= 1.3 * alpha


def test_a_mixture_of_episode_kinds_keeps_the_rate() -> None:
    """Ordinary waves mix small (account takeover) and large (card testing)
    episodes: the tail follows the large ones, within a factor 2 of alpha
    (measured: 1.7; the large component's tail is a little heavier than
    exponential, docs/monitoring.md)."""
    rng = np.random.default_rng(7)
    alpha = 0.005

    def mix(n: int) -> np.ndarray:
        small = _draw(rng, 5.0, 3.0, n)
        large = _draw(rng, 30.0, 1.5, n)
        return np.where(rng.random(n) < 0.6, small, large)

    rates = []
    for _ in range(200):
        tail = ExpTail.fit([float(x) for x in mix(200)])
        rates.append(float((mix(5_000) >= tail.quantile(alpha)).mean()))
    assert np.mean(rates) <= 2 * alpha


# -- the wave's size -----------------------------------------------------------------


def risk_events(specs: list[tuple[float, str, bool]]) -> pl.DataFrame:
    """(minute, region, blocked) -> canonical events; blocked = a 59 risk decline."""
    frame = rows(*[
        {"event_id": f"e{i}", "payment_id": f"p{i}", "region": r, "amount": "10.00",
         "outcome": "declined" if b else "approved", "response_code": "59" if b else "00",
         "risk_decision": "decline" if b else "approve", "device_id": f"dev{i % 3}",
         "merchant_id": f"m{i % 2}", "ts": (T0 + timedelta(minutes=m)).isoformat()}
        for i, (m, r, b) in enumerate(specs)
    ])
    result = validate_frame(frame)
    assert result.rejects.height == 0, result.errors()
    return result.valid.sort("ts")


def alert(state: str, minute: float, level: int = 4, alert_id: str = "w1",
          region: str = "CN-GD", expected_rate: float = 0.0) -> AlertEvent:
    sl = {"region": region}
    return AlertEvent(
        alert_id=alert_id, ts=T0 + timedelta(minutes=minute), state=state,  # type: ignore[arg-type]
        level=level, started_at=T0, slice=sl, signal="risk_decline", notify=level <= 3,
        figures={"members": [{"slice": sl, "signal": "risk_decline",
                              "expected_rate": expected_rate}]},
    )


def test_wave_size_is_the_largest_excess_over_a_window_and_crossing_is_exact() -> None:
    w = Wave(first=alert("firing", 0.0), expected_rate=0.1, span=timedelta(minutes=10),
             threshold=5)
    # 4 blocked in minutes 0-3, quiet 20 attempts, then 6 blocked in minutes 30-31
    ev = risk_events([(0.5 * i, "CN-GD", True) for i in range(4)]
                     + [(5 + 0.5 * i, "CN-GD", False) for i in range(20)]
                     + [(30 + 0.1 * i, "CN-GD", True) for i in range(6)]
                     + [(1.0, "CN-BJ", True)] * 1)
    crossed = w.count(ev, exclude=[])
    assert w.declines == 10 and w.attempts == 30, "the other region is not the wave's"
    # the two bursts are 27 minutes apart: never in one 10-minute window
    assert w.excess_max == pytest.approx(6 * 0.9)
    assert crossed == T0 + timedelta(minutes=30.5), "the 6th blocked attempt of the burst"


def test_the_window_carries_over_batches() -> None:
    w = Wave(first=alert("firing", 0.0), expected_rate=0.0, threshold=None)
    ev = risk_events([(float(i), "CN-GD", True) for i in range(6)])
    w.count(ev.head(3), exclude=[])
    w.count(ev.tail(3), exclude=[])
    assert w.excess_max == 6.0


def test_attempts_inside_an_open_incident_scope_are_not_counted() -> None:
    w = Wave(first=alert("firing", 0.0), expected_rate=0.0, threshold=None)
    ev = risk_events([(float(i), "CN-GD", True) for i in range(6)])
    w.count(ev, exclude=[{"merchant_id": "m0"}])
    assert w.declines == 3


# -- the incident book -------------------------------------------------------------


class FraudDiagnosis:
    def __init__(self) -> None:
        self.requests: list[DiagnosisRequest] = []

    def __call__(self, request: DiagnosisRequest) -> Diagnosis:
        self.requests.append(request)
        return Diagnosis(scope=[{"region": "CN-GD"}], cause="fraud_attack", confidence=0.9,
                         evidence=["declines on a few devices"], failure="risk_decline")


def book_with(policy: IncidentPolicy) -> tuple[IncidentBook, EventWindow, FraudDiagnosis]:
    window = EventWindow(timedelta(hours=2))
    diag = FraudDiagnosis()
    return IncidentBook(diagnose=diag, window=window, changes=empty_changes(),
                        policy=policy), window, diag


def feed(book: IncidentBook, window: EventWindow, batch: pl.DataFrame,
         alerts: list[AlertEvent]) -> list[AlertEvent]:
    """What the pipeline does per batch."""
    now = batch["ts"].max()
    assert isinstance(now, datetime)
    book.observe(batch, now)
    window.add(batch)
    return book.on_alerts(alerts)


def ordinary_history(book: IncidentBook, n: int = 30) -> None:
    rng = np.random.default_rng(3)
    for i, x in enumerate(rng.negative_binomial(3, 3 / 23, n)):
        book.baseline.add(float(x), T0 - timedelta(hours=24) + timedelta(hours=24 * i / n))


def test_an_ordinary_notice_goes_to_the_digest_not_the_incident_list() -> None:
    book, window, diag = book_with(IncidentPolicy())
    ordinary_history(book)
    batch = risk_events([(0.2 * i, "CN-GD", i % 2 == 0) for i in range(20)])
    out = feed(book, window, batch, [alert("firing", 2.0)])
    assert book.incidents() == [] and diag.requests == []
    assert out[0].incident_id is None
    later = risk_events([(10 + i, "CN-GD", False) for i in range(5)])
    feed(book, window, later, [alert("resolved", 14.0)])
    assert book.incidents() == []
    rows_ = book.digest_rows()
    assert [r["hour"] for r in rows_] == ["2026-11-11T12:00:00.000+08:00"]
    (hour,) = rows_
    assert hour["blocked_attempts"] == 10 and hour["blocked_amount"] == "100.00"
    assert hour["attempts"] == 25 and hour["waves"] == 1 and hour["incidents"] == []
    assert hour["top_devices"][0]["device_id"].endswith("*"), "device ids are masked"
    (notice,) = hour["notices"]
    assert notice["blocked_attempts"] == 10 and notice["incident_id"] is None
    assert len(book.baseline.sizes) == 31, "the ordinary wave joins the baseline"


def test_an_attack_unusual_for_the_baseline_opens_one_incident_detected_at_the_notice() -> None:
    book, window, diag = book_with(IncidentPolicy())
    ordinary_history(book)
    first = risk_events([(0.1 * i, "CN-GD", True) for i in range(10)])
    feed(book, window, first, [alert("firing", 0.5)])
    (wave,) = book.waves
    assert wave.threshold is not None and 10 < wave.threshold < 290
    assert book.incidents() == []
    burst = risk_events([(1 + 0.01 * i, "CN-GD", True) for i in range(300)])
    burst = burst.with_columns(pl.col("event_id") + "b", pl.col("payment_id") + "b")
    feed(book, window, burst, [])
    (inc,) = book.incidents()
    assert inc.detected_at == T0 + timedelta(minutes=0.5), "detected when first raised"
    assert inc.cause == "fraud_attack" and inc.level == 4
    crossing = wave.threshold - 10  # blocked attempts of the burst needed (expected 0)
    opened = T0 + timedelta(minutes=1 + 0.01 * (crossing - 1))
    assert inc.extra["digest"]["opened_by"] == "attack_size"
    assert inc.extra["digest"]["opened_at"] == opened.astimezone(
        inc.start.tzinfo).astimezone(book._tz).isoformat(timespec="milliseconds")
    assert diag.requests[-1].now == opened, "diagnosed as of the crossing, not the batch end"
    assert inc.failed_attempts == 310
    out = feed(book, window, risk_events([(8.0, "CN-GD", False)]).with_columns(
        pl.col("event_id") + "c", pl.col("payment_id") + "c"), [alert("escalated", 8.0, 2)])
    assert out[0].incident_id == inc.id and inc.level == 2 and len(book.incidents()) == 1
    assert [h["state"] for h in inc.extra["level_history"]] == ["firing", "escalated"]
    # a wave beside the open attack (another slice of it) stays out of the baseline
    n = len(book.baseline.sizes)
    other = risk_events([(9.0, "CN-BJ", True)]).with_columns(
        pl.col("event_id") + "d", pl.col("payment_id") + "d")
    feed(book, window, other, [alert("firing", 9.0, alert_id="w2", region="CN-BJ")])
    feed(book, window, other.with_columns(pl.col("event_id") + "e", pl.col("payment_id") + "e"),
         [alert("resolved", 12.0, alert_id="w2", region="CN-BJ")])
    assert book.waves[-1].beside == inc.id and len(book.baseline.sizes) == n


def test_a_notice_that_pages_opens_its_incident_then() -> None:
    book, window, _ = book_with(IncidentPolicy())  # warming up: no size test
    batch = risk_events([(0.1 * i, "CN-GD", True) for i in range(10)])
    feed(book, window, batch, [alert("firing", 0.5)])
    assert book.incidents() == []
    later = risk_events([(20.0, "CN-GD", True)]).with_columns(
        pl.col("event_id") + "x", pl.col("payment_id") + "x")
    out = feed(book, window, later, [alert("escalated", 20.0, 3)])
    (inc,) = book.incidents()
    assert out[0].incident_id == inc.id and inc.level == 3
    assert inc.detected_at == T0 + timedelta(minutes=0.5)
    assert inc.extra["digest"]["opened_by"] == "page"
    assert inc.failed_attempts == 11, "measured from the wave's start"


def test_without_the_digest_every_notice_is_an_incident() -> None:
    book, window, _ = book_with(IncidentPolicy(digest=DigestPolicy(enabled=False)))
    batch = risk_events([(0.1 * i, "CN-GD", True) for i in range(10)])
    feed(book, window, batch, [alert("firing", 0.5)])
    assert len(book.incidents()) == 1 and book.waves == []


def test_a_long_stream_keeps_only_the_last_days_of_digest() -> None:
    book, window, _ = book_with(IncidentPolicy(digest=DigestPolicy(keep=timedelta(hours=2))))
    feed(book, window, risk_events([(0.1 * i, "CN-GD", True) for i in range(10)]),
         [alert("firing", 0.5)])
    feed(book, window, risk_events([(30.0, "CN-GD", False)]).with_columns(
        pl.col("event_id") + "r", pl.col("payment_id") + "r"), [alert("resolved", 30.0)])
    late = risk_events([(300.0, "CN-GD", True)]).with_columns(
        pl.col("event_id") + "z", pl.col("payment_id") + "z")
    feed(book, window, late, [])
    assert book.waves == []
    assert [r["hour"] for r in book.digest_rows()] == ["2026-11-11T17:00:00.000+08:00"]


def test_a_wave_counts_only_up_to_its_resolution_whatever_the_batches() -> None:
    """A replay batch runs hours past the alert changes it produced: a wave that
    fired and resolved inside it must not count a later burst in its slice."""
    ev = risk_events([(0.1 * i, "CN-GD", True) for i in range(10)]
                     + [(60 + 0.01 * i, "CN-GD", True) for i in range(200)])
    alerts = [alert("firing", 0.5), alert("resolved", 30.0)]
    one, w1, _ = book_with(IncidentPolicy())
    feed(one, w1, ev, alerts)
    two, w2, _ = book_with(IncidentPolicy())
    feed(two, w2, ev.filter(pl.col("ts") <= T0 + timedelta(minutes=0.5)), alerts[:1])
    feed(two, w2, ev.filter((pl.col("ts") > T0 + timedelta(minutes=0.5))
                            & (pl.col("ts") <= T0 + timedelta(minutes=30))), alerts[1:])
    feed(two, w2, ev.filter(pl.col("ts") > T0 + timedelta(minutes=30)), [])
    assert one.waves[0].declines == two.waves[0].declines == 10
    assert one.baseline.sizes == two.baseline.sizes == [10.0]
