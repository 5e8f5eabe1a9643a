"""A broker restart mid-stream, with the broker keeping its log (Tansu on S3 storage).

The wheel's Tansu is built with memory and S3 storage only; moto's S3 server
(a separate process that outlives the broker) holds the log across the restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tapshield.stream.analysis import AnalysisSettings, StreamAnalysis
from tapshield.stream.broker import LocalBroker, free_port
from tapshield.stream.produce import produce_file
from tapshield.stream.run import WorkerPool
from tests.stream.conftest import SESSION_MS
from tests.stream.test_stream_broker import _committed, figures


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An S3 server on a free port with a ``tansu`` bucket; stopped by its PID."""
    port = free_port()
    log = open(tmp_path / "s3.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.put(f"{endpoint}/tansu", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the S3 server did not start"
            time.sleep(0.3)
        yield {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT": endpoint,
               "AWS_ALLOW_HTTP": "true"}
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_the_pipeline_survives_a_broker_restart(s3: dict[str, str], outage_file: Path,
                                                file_result: Any, tmp_path: Path) -> None:
    topic, parts = f"restart-{uuid.uuid4().hex[:8]}", 2
    broker = LocalBroker(storage="s3://tansu/", env=s3, log=tmp_path / "tansu.log").start()
    pool = WorkerPool(broker.address, topic, commit_interval=0.2,
                      session_timeout_ms=SESSION_MS, log_dir=tmp_path)
    try:
        produce_file(outage_file, broker.address, topic, partitions=parts)
        pool.start(1)
        deadline = time.monotonic() + 120
        while _committed(broker.address, topic, parts) == 0:
            assert time.monotonic() < deadline, "the worker never committed a checkpoint"
            time.sleep(0.2)
        broker.stop(kill=True)  # the broker dies mid-stream; the worker keeps retrying
        time.sleep(2)
        broker = LocalBroker(port=broker.port, storage=broker.storage, env=s3,
                             log=tmp_path / "tansu.log").start()
        settings = AnalysisSettings(broker.address, topic, session_timeout_ms=SESSION_MS)
        result = StreamAnalysis(settings).run()
    finally:
        pool.stop()
        broker.stop()
    assert result.summary["events"] == file_result.summary["events"]
    assert result.summary["stream"]["complete"]
    assert figures(result.incidents) == figures(file_result.incidents)
