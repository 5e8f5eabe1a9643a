"""``stream run``: the partitioned workers and the global analysis, started together.

A deployment runs the pieces separately (``stream worker`` replicas in the
consumer group, one ``stream run --workers 0`` for the global stage); on one
machine ``--workers N`` starts N worker processes next to the analysis and
stops them, by their PIDs, when it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tapshield.pipeline import AnalysisResult, Sink
from tapshield.stream.analysis import AnalysisSettings, StreamAnalysis


@dataclass
class WorkerPool:
    """Worker processes we started (``python -m tapshield stream worker``)."""

    brokers: str
    topic: str
    commit_interval: float = 1.0
    session_timeout_ms: int = 10_000
    log_dir: Path | None = None
    group: str | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tapshield", "stream", "worker",
                "--brokers", self.brokers, "--topic", self.topic,
                "--commit-interval", str(self.commit_interval),
                "--session-timeout-ms", str(self.session_timeout_ms),
                *(["--group", self.group] if self.group else [])]

    def start(self, n: int = 1) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(n):
            i = len(self.procs)
            log = (open(self.log_dir / f"worker-{i}.log", "ab")
                   if self.log_dir is not None else subprocess.DEVNULL)
            proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            self.procs.append(proc)
            started.append(proc)
        return started

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """``kill -9`` one worker, as a crashed host would."""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM by PID (Quix commits a last checkpoint), SIGKILL after 30 s."""
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def run_stream(
    settings: AnalysisSettings,
    *,
    workers: int = 1,
    sinks: Sequence[Sink] = (),
    changes: Any = None,
    monitor_config: Path | None = None,
    progress_file: Path | None = None,
    commit_interval: float = 1.0,
    log_dir: Path | None = None,
    on_alerts: Callable[[list[Any]], None] | None = None,
) -> AnalysisResult:
    pool = WorkerPool(settings.brokers, settings.topic, commit_interval,
                      settings.session_timeout_ms, log_dir)
    try:
        pool.start(workers)
        stage = StreamAnalysis(settings, changes=changes, monitor_config=monitor_config,
                               sinks=sinks, on_alerts=on_alerts, progress_file=progress_file)
        return stage.run()
    finally:
        pool.stop()
