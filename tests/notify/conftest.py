"""The real Alertmanager the notifier tests talk to.

``TAPSHIELD_TEST_ALERTMANAGER_URL`` (default http://127.0.0.1:9093); scripts/services
starts it with .ci/alertmanager.yml. If it is unreachable the tests fail, unless
``TAPSHIELD_SKIP_ALERTMANAGER`` is set, in which case they are skipped with that reason.
"""

from __future__ import annotations

import os

import httpx
import pytest

AM_URL = os.environ.get("TAPSHIELD_TEST_ALERTMANAGER_URL", "http://127.0.0.1:9093")


@pytest.fixture(scope="session")
def alertmanager_url() -> str:
    if os.environ.get("TAPSHIELD_SKIP_ALERTMANAGER"):
        pytest.skip("Alertmanager tests skipped on purpose (TAPSHIELD_SKIP_ALERTMANAGER is set)")
    try:
        httpx.get(f"{AM_URL}/api/v2/status", timeout=5).raise_for_status()
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Alertmanager not reachable at {AM_URL}: {exc} "
                    "(start it with scripts/services, or set TAPSHIELD_SKIP_ALERTMANAGER)")
    return AM_URL
