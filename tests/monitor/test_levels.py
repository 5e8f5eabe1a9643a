"""Four-level warnings: criteria each side of their thresholds, escalation, de-escalation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tapshield.errors import ContractError
from tapshield.levels import NOTICE
from tapshield.monitor.levels import Impact, LevelCriteria, LevelTracker

T0 = datetime(2026, 11, 11, tzinfo=UTC)
C = LevelCriteria.default()


@pytest.mark.parametrize(("impact", "level"), [
    (Impact(), NOTICE),
    (Impact(share_affected=0.0019), NOTICE),
    (Impact(share_affected=0.002), 3),
    (Impact(share_affected=0.0299), 3),
    (Impact(share_affected=0.03), 2),
    (Impact(share_affected=0.1499), 2),
    (Impact(share_affected=0.15), 1),
    (Impact(failed_payments_per_min=29.9), NOTICE),
    (Impact(failed_payments_per_min=30), 3),
    (Impact(failed_payments_per_min=500), 2),
    (Impact(failed_payments_per_min=2000), 1),
    (Impact(lost_fen_per_min=299_999), NOTICE),
    (Impact(lost_fen_per_min=300_000), 3),
    (Impact(lost_fen_per_min=5_000_000), 2),
    (Impact(lost_fen_per_min=20_000_000), 1),
    # the primary channel lowers the bar
    (Impact(share_affected=0.0015), NOTICE),
    (Impact(share_affected=0.0015, primary_involved=True), 3),
    (Impact(share_affected=0.02, primary_involved=True), 2),
    (Impact(share_affected=0.08, primary_involved=True), 1),
])
def test_instant_level(impact: Impact, level: int) -> None:
    assert C.instant(impact)[0] == level


def test_reasons_name_the_criteria() -> None:
    level, why = C.instant(Impact(share_affected=0.05, primary_involved=True))
    assert level == 2
    assert any("share_affected >= 0.03" in w for w in why)
    assert any("primary channel" in w for w in why)


def test_escalates_at_once_and_deescalates_after_the_hold() -> None:
    t = LevelTracker(C)
    assert t.update(Impact(share_affected=0.005), T0) == 3
    assert t.update(Impact(share_affected=0.2), T0 + timedelta(seconds=10)) == 1
    # the wave shrinks: stays red through the 5-minute hold, then drops
    assert t.update(Impact(share_affected=0.005), T0 + timedelta(minutes=1)) == 1
    assert t.update(Impact(share_affected=0.005), T0 + timedelta(minutes=5)) == 1
    assert t.update(Impact(share_affected=0.005), T0 + timedelta(minutes=6, seconds=1)) == 3
    # a bounce back up inside a hold resets it
    assert t.update(Impact(share_affected=0.05), T0 + timedelta(minutes=7)) == 2


def test_a_sustained_wave_escalates_with_time() -> None:
    t = LevelTracker(C)
    impact = Impact(share_affected=0.005)
    assert t.update(impact, T0) == 3
    assert t.update(impact, T0 + timedelta(minutes=29)) == 3
    assert t.update(impact, T0 + timedelta(minutes=30)) == 2
    assert t.update(Impact(share_affected=0.04), T0 + timedelta(minutes=31)) == 2
    assert t.update(Impact(share_affected=0.04), T0 + timedelta(minutes=91)) == 1


def test_business_waves_page_only_after_lasting() -> None:
    t = LevelTracker(C, family="business")
    big = Impact(share_affected=0.2, excess_for=timedelta(minutes=3))
    assert t.update(big, T0) == NOTICE
    later = Impact(share_affected=0.2, excess_for=timedelta(minutes=20))
    assert t.update(later, T0 + timedelta(minutes=17)) == 1
    assert LevelTracker(C, family="technical").update(big, T0) == 1


def test_criteria_load_from_yaml_and_bad_files_name_the_key(tmp_path: Path) -> None:
    good = tmp_path / "levels.yaml"
    good.write_text("primary_channel: qr\nlevels:\n  3: {share_affected: 0.5}\n")
    crit = LevelCriteria.load(good)
    assert crit.primary_channel == "qr"
    assert crit.instant(Impact(share_affected=0.6))[0] == 3
    assert crit.instant(Impact(share_affected=0.4))[0] == NOTICE
    for text, words in [
        ("levels:\n  5: {share_affected: 0.1}\n", "levels.5"),
        ("levels:\n  3: {share_afected: 0.1}\n", "share_afected"),
        ("levels:\n  2: {share_affected: 2}\n", "share_affected"),
        ("levels:\n  2: {lost_amount_per_min: 10.5}\n", "quoted decimal"),
        ("levels:\n  3: {sustained_min: 10}\n", "not allowed for level 3"),
        ("bogus: 1\nlevels:\n  3: {share_affected: 0.1}\n", "bogus"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ContractError, match=words):
            LevelCriteria.load(bad)
