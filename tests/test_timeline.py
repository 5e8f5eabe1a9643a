"""The timeline contract is checked where it is produced and where it is read."""

from __future__ import annotations

import polars as pl
import pytest

from tapshield.errors import ContractError
from tapshield.monitor import Monitor, MonitorConfig
from tapshield.report.html import _charts
from tapshield.timeline import TIMELINE_SCHEMA, check_timeline, empty_timeline

from .monitor.synth import Fault, events


def test_the_monitor_produces_the_contract() -> None:
    m = Monitor(MonitorConfig())
    m.process(events(1800, rate=20, faults=(Fault(900, 1500, {"channel": "qr"}),), seed=5))
    m.close()
    tl = m.timeline()
    assert tl.schema == pl.Schema(TIMELINE_SCHEMA)
    assert tl.height > 0


def test_a_renamed_column_is_an_error_not_a_report_without_charts() -> None:
    renamed = empty_timeline().rename({"technical_rate": "technical_failure_rate"})
    with pytest.raises(ContractError, match=r"missing column technical_rate.*"
                       r"extra column technical_failure_rate"):
        check_timeline(renamed, "report")

    from types import SimpleNamespace

    result = SimpleNamespace(incidents=[], alerts=[], summary={}, timeline=renamed)

    with pytest.raises(ContractError, match="report: timeline breaks its contract"):
        _charts(result, "Asia/Shanghai")  # type: ignore[arg-type]


def test_a_mistyped_column_is_named() -> None:
    bad = empty_timeline().with_columns(pl.col("attempts").cast(pl.Float64))
    with pytest.raises(ContractError, match="column attempts is Float64"):
        check_timeline(bad, "here")
