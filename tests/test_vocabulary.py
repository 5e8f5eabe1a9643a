"""Signal and level names are defined once; every map keyed by them covers them all."""

from __future__ import annotations

from tapshield.diagnose.diagnosis import SIGNATURE_OF_SIGNAL
from tapshield.levels import LEVEL_NAMES, NOTICE
from tapshield.monitor.detectors import SIGNAL_NAMES
from tapshield.respond.incidents import _SIGNAL_FAILURE
from tapshield.signals import SIGNALS


def test_every_signal_map_covers_exactly_the_signals() -> None:
    assert set(SIGNAL_NAMES) == set(SIGNALS)
    assert set(SIGNATURE_OF_SIGNAL) == set(SIGNALS)
    assert set(_SIGNAL_FAILURE) == set(SIGNALS)


def test_levels_run_from_one_to_the_notice() -> None:
    assert sorted(LEVEL_NAMES) == list(range(1, NOTICE + 1))
