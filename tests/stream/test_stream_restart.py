"""A broker restart mid-stream, with Tansu keeping its log in PostgreSQL."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tapshield.stream.analysis import AnalysisSettings, StreamAnalysis
from tapshield.stream.broker import LocalBroker
from tapshield.stream.produce import produce_file
from tapshield.stream.run import WorkerPool
from tests.stream.conftest import SESSION_MS
from tests.stream.test_stream_broker import _committed, figures


def _tansu_url(pg_url: str) -> str:
    """Tansu takes a plain ``postgres://`` URL (the tests' URL names a SQLAlchemy driver)."""
    rest = pg_url.split("://", 1)[1]
    return "postgres://" + rest


@pytest.mark.postgres
@pytest.mark.slow
def test_the_pipeline_survives_a_broker_restart(pg_url: str, outage_file: Path,
                                                file_result: Any, tmp_path: Path) -> None:
    topic, parts = f"restart-{uuid.uuid4().hex[:8]}", 2
    broker = LocalBroker(storage=_tansu_url(os.environ.get("TAPSHIELD_TEST_PG_URL", pg_url)),
                         log=tmp_path / "tansu.log").start()
    pool = WorkerPool(broker.address, topic, commit_interval=0.2,
                      session_timeout_ms=SESSION_MS, log_dir=tmp_path)
    try:
        produce_file(outage_file, broker.address, topic, partitions=parts)
        pool.start(1)
        deadline = time.monotonic() + 120
        while _committed(broker.address, topic, parts) == 0:
            assert time.monotonic() < deadline, "the worker never committed a checkpoint"
            time.sleep(0.2)
        broker.stop(kill=True)  # the broker dies; the worker keeps retrying
        time.sleep(2)
        broker = LocalBroker(port=broker.port, storage=broker.storage,
                             log=tmp_path / "tansu.log").start()
        settings = AnalysisSettings(broker.address, topic, session_timeout_ms=SESSION_MS)
        result = StreamAnalysis(settings).run()
    finally:
        pool.stop()
        broker.stop()
    assert result.summary["events"] == file_result.summary["events"]
    assert result.summary["stream"]["complete"]
    assert figures(result.incidents) == figures(file_result.incidents)
