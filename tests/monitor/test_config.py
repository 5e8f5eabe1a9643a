"""Monitor configuration files: every setting overridable, every mistake named."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tapshield.errors import ContractError
from tapshield.monitor import MonitorConfig


def test_defaults_and_overrides(tmp_path: Path) -> None:
    assert MonitorConfig.load(None) == MonitorConfig()
    (tmp_path / "lv.yaml").write_text("levels:\n  3: {share_affected: 0.01}\n")
    f = tmp_path / "monitor.yaml"
    f.write_text(
        "detector: {bucket: 5s, false_alerts_per_week: 2, ratios: [3, 30]}\n"
        "lifecycle: {resolve_hold: 10m, reminders: [1h, 2h]}\n"
        "slices: [[], [channel], [channel, region]]\n"
        "levels: lv.yaml\n"
        "festivals: ['2026-11-11', {start: '2026-12-12T00:00:00+08:00',"
        " end: '2026-12-13T00:00:00+08:00', name: double 12}]\n"
        "silences: [{matchers: {channel: wallet}, starts_at: '2026-11-11T00:00:00+08:00',"
        " ends_at: '2026-11-11T02:00:00+08:00', comment: partner}]\n")
    c = MonitorConfig.load(f)
    assert c.bucket == timedelta(seconds=5)
    assert c.ratios == (3.0, 30.0)
    assert c.resolve_hold == timedelta(minutes=10)
    assert c.reminders == (timedelta(hours=1), timedelta(hours=2))
    assert c.slices == ((), ("channel",), ("channel", "region"))
    assert c.levels.rules[0].share_affected == 0.01
    assert len(c.festivals) == 2 and c.festivals[0].end - c.festivals[0].start == timedelta(days=1)
    assert c.silences[0].matchers == {"channel": "wallet"}


@pytest.mark.parametrize(("text", "words"), [
    ("detector: {bucket: soon}\n", "detector.bucket"),
    ("detector: {bucket: 10s, tick: 3s}\n", "whole number of ticks"),
    ("detector: {nonsense: 1}\n", "detector.nonsense: unknown"),
    ("detector: {ratios: [0.5, 2]}\n", "ratios"),
    ("detector: {false_alerts_per_week: 0}\n", "false_alerts_per_week"),
    ("slices: [[channel]]\n", "must include"),
    ("slices: [[], [planet]]\n", "'planet' is not a dimension"),
    ("slices: [[], [channel, region, carrier]]\n", "at most 2"),
    ("festivals: [{start: '2026-11-11T00:00:00'}]\n", "festivals"),
    ("silences: [{matchers: {channel: qr}}]\n", "starts_at"),
    ("whatever: 1\n", "whatever"),
])
def test_bad_settings_are_named(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(text)
    with pytest.raises(ContractError, match=words):
        MonitorConfig.load(f)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="no such monitor config"):
        MonitorConfig.load(tmp_path / "nope.yaml")
