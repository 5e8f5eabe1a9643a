"""Running the service: uvicorn, one or several workers, a graceful stop.

SIGTERM (and Ctrl-C): uvicorn stops accepting connections, lets in-flight
requests finish (up to ``limits.drain_timeout_s``), then the application's
shutdown drains the tap book, pushes the last observations to Redis and
checkpoints router health; the process exits 0. uvicorn re-raises the signal
after its own shutdown; a no-op handler installed here receives it, so the
exit status says "stopped as asked", not "killed".

Several workers (``workers > 1``) share one listening socket; the schema is
migrated once here before they start, and their counters are summed through
prometheus_client's multiprocess directory (a fresh temporary one per run).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any

from tapshield.errors import ContractError
from tapshield.service import logs
from tapshield.service.config import CONFIG_ENV, ServiceSettings

log = logging.getLogger("tapshield.service")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ContractError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def serve(settings: ServiceSettings, *, host: str, port: int,
          config_path: Path | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status (0 after a clean stop)."""
    import uvicorn

    from tapshield.service.runtime import load_monitor_config, migrate

    load_monitor_config(settings)  # a bad monitoring config stops the start here
    logs.setup(settings.log_level)
    try:
        migrate(settings.resolved_database_url())
    except Exception as exc:
        raise ContractError(f"database {settings.resolved_database_url()}: {exc}") from None
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    common: dict[str, Any] = {
        "http": "httptools", "loop": "uvloop", "lifespan": "on", "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": int(max(1, settings.limits.drain_timeout_s)),
        "limit_concurrency": settings.limits.max_concurrency,
        # Workers import the whole application before they answer the supervisor's
        # health pings; on a busy machine that takes longer than uvicorn's 5 s.
        "timeout_worker_healthcheck": 60,
        "log_config": logs.uvicorn_log_config(settings.log_level), "proxy_headers": False,
    }
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    log.info("listening", extra={"url": f"http://{host}:{bound}", "workers": settings.workers,
                                 "pid": os.getpid()})
    if settings.workers == 1:
        from tapshield.service.app import create_app

        app = create_app(settings, migrate_schema=False)
        server = uvicorn.Server(uvicorn.Config(app, **common))
        server.run(sockets=[sock])
        if not server.started:
            log.error("the service did not start (see the errors above)")
            return 2
        log.info("exited cleanly")
        return 0
    from uvicorn.supervisors.multiprocess import Multiprocess

    if config_path is not None:
        os.environ[CONFIG_ENV] = str(config_path.resolve())
    os.environ["TAPSHIELD_WORKERS"] = str(settings.workers)
    with tempfile.TemporaryDirectory(prefix="tapshield-metrics-") as mp:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = mp
        config = uvicorn.Config("tapshield.service.app:create_app_from_env", factory=True,
                                workers=settings.workers, **common)
        Multiprocess(config, sockets=[sock]).run()
    log.info("exited cleanly")
    return 0
