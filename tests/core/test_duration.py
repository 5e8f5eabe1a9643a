"""One duration grammar for every YAML file and option."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tapshield.errors import ContractError
from tapshield.monitor.config import MonitorConfig
from tapshield.timeutil import parse_duration


@pytest.mark.parametrize("text,seconds", [
    ("500ms", 0.5), ("90s", 90), ("90", 90), (90, 90), (0.5, 0.5), ("5 m", 300),
    ("5min", 300), ("45m", 2700), ("1h30m", 5400), ("1.5h", 5400), ("2d", 172800),
    ("1w", 604800), ("1d 2h", 93600), (timedelta(minutes=3), 180),
])
def test_accepted(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "m", "-5s", "5x", "1h-30m", "nan", "inf", True, -1,
                                  float("nan"), "10 seconds"])
def test_refused_with_the_grammar_named(text: object) -> None:
    with pytest.raises(ValueError, match=r"not a duration.*1h30m"):
        parse_duration(text)


def test_the_monitor_config_reads_every_form(tmp_path: Path) -> None:
    """``1h30m`` used to be a scenario-only form and ``500ms`` / ``1w`` monitor-only."""
    for text in ("1h30m", "1w", "500ms"):
        p = tmp_path / "m.yaml"
        p.write_text(f"lifecycle: {{quiet_resolve: {text}}}\n")
        assert MonitorConfig.load(p).quiet_resolve == parse_duration(text)
    p.write_text("lifecycle: {quiet_resolve: soon}\n")
    with pytest.raises(ContractError, match=r"lifecycle\.quiet_resolve: not a duration"):
        MonitorConfig.load(p)
