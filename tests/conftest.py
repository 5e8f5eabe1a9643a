"""Shared fixtures: paths to the public examples and the shared data sets,
and the real servers (PostgreSQL, Redis) the storage and routing tests use.

Server-backed tests are never skipped silently: if the server is missing they
fail, unless the matching ``TAPSHIELD_SKIP_*`` variable is set on purpose, in
which case pytest reports them as skipped with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TAPSHIELD_SHARED", ROOT.parent / "shared"))
EXAMPLES = SHARED / "examples"
DATA = SHARED / "data"

PG_URL = os.environ.get("TAPSHIELD_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TAPSHIELD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
MQTT_PORT = int(os.environ.get("TAPSHIELD_TEST_MQTT_PORT", "1883"))


@pytest.fixture(scope="session")
def examples() -> Path:
    if not EXAMPLES.exists():
        pytest.fail(f"shared examples not found at {EXAMPLES} (set TAPSHIELD_SHARED)")
    return EXAMPLES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.exists():
        pytest.fail(f"shared data not found at {DATA} (set TAPSHIELD_SHARED)")
    return DATA


def _require(server: str, skip_env: str) -> None:
    if os.environ.get(skip_env):
        pytest.skip(f"{server} tests skipped on purpose ({skip_env} is set)")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of a real PostgreSQL; the test fails if it is not reachable."""
    _require("PostgreSQL", "TAPSHIELD_SKIP_PG")
    import sqlalchemy as sa

    try:
        eng = sa.create_engine(PG_URL)
        with eng.connect() as conn:
            conn.execute(sa.text("select 1"))
        eng.dispose()
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    return PG_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a real Redis; the test fails if it is not reachable."""
    _require("Redis", "TAPSHIELD_SKIP_REDIS")
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Redis not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture(scope="session")
def mqtt_port() -> int:
    """Port of the real Mosquitto broker on 127.0.0.1; the test fails if it is not there."""
    import socket

    _require("Mosquitto", "TAPSHIELD_SKIP_MQTT")
    try:
        socket.create_connection(("127.0.0.1", MQTT_PORT), timeout=3).close()
    except OSError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Mosquitto not reachable at 127.0.0.1:{MQTT_PORT}: {exc}")
    return MQTT_PORT
