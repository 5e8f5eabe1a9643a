"""The impact config loads like every other config: pydantic, lines named in errors."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tapshield.errors import ContractError
from tapshield.impact.config import ImpactConfig


def test_fields_durations_and_decimals(tmp_path: Path) -> None:
    p = tmp_path / "impact.yaml"
    p.write_text("impact:\n  confidence: 0.95\n  recovery_tail: 1h30m\n  recapture_minutes: 20\n")
    cfg = ImpactConfig.load(p)
    assert cfg.confidence == Decimal("0.95")
    assert cfg.recovery_tail == timedelta(minutes=90)
    assert cfg.recapture_window == timedelta(minutes=20)
    assert cfg.history_weeks == ImpactConfig().history_weeks


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    p = tmp_path / "impact.yaml"
    p.write_text("impact:\n  confidence: 0.95\n  history_weeks: many\n  recover_tail: 1h\n")
    with pytest.raises(ContractError) as info:
        ImpactConfig.load(p)
    text = str(info.value)
    assert "impact.yaml line 3: history_weeks:" in text
    assert "impact.yaml line 4: recover_tail: unknown field" in text


def test_rules_between_fields_still_hold(tmp_path: Path) -> None:
    p = tmp_path / "impact.yaml"
    p.write_text("min_weeks: 1\n")
    with pytest.raises(ContractError, match="min_weeks >= 2"):
        ImpactConfig.load(p)
