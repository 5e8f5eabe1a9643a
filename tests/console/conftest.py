"""A running ``tapshield serve`` fed by a simulated outage, and Chromium to look at it.

The data is real pipeline output: the scenario in ``outage.yaml`` (a nationwide
NFC outage still open when the data ends) is simulated, given a loan book,
analysed with ``tapshield analyze --portfolio`` into the service's database, and
the service is started on it with the impact file configured. Chromium is
Debian's (``scripts/services`` installs it); Playwright drives it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.service.live import LiveServer, free_port

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("TAPSHIELD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _cli(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPSHIELD_")}
    out = subprocess.run([sys.executable, "-m", "tapshield", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


@dataclass
class Console:
    url: str
    operator_key: str
    credit_key: str
    workdir: Path
    red_id: str
    server: LiveServer


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots land here (``TAPSHIELD_TEST_ARTEFACTS`` keeps them for CI)."""
    where = os.environ.get("TAPSHIELD_TEST_ARTEFACTS")
    path = Path(where) / "console" if where else tmp_path_factory.mktemp("artefacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def outage_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulated, valued and analysed once per session (about a minute)."""
    work = tmp_path_factory.mktemp("console-outage")
    _cli("simulate", "--scenario", str(HERE / "outage.yaml"), "--out", "sim", cwd=work)
    _cli("portfolio", "--events", "sim/events.parquet", "--out", "book.csv", cwd=work)
    # report.html in Chinese (--lang zh): the report tests check it renders with the CJK font
    out = _cli("analyze", "sim/events.parquet", "--out", "analysis", "--portfolio", "book.csv",
               "--db", f"sqlite:///{work / 'tapshield.db'}", "--lang", "zh", cwd=work)
    (work / "analyze.out").write_text(out)  # the terminal summary the reports must agree with
    return work


def _key(work: Path, role: str, name: str) -> str:
    out = _cli("keys", "create", "--role", role, "--name", name, "--config",
               str(work / "svc.yaml"), cwd=work)
    return out.strip().splitlines()[-1].strip()


@pytest.fixture(scope="session")
def console(outage_dir: Path) -> Iterator[Console]:
    import json

    port = free_port()
    config: dict[str, Any] = {
        "database_url": f"sqlite:///{outage_dir / 'tapshield.db'}",
        "keys_file": "keys.json", "log_requests": False,
        # WebAuthn needs a host name for its relying party: localhost, not 127.0.0.1.
        "public_url": f"http://localhost:{port}",
        "console": {"impact_file": "analysis/impact.json"},
        "decision": {"version": "rules-console-1", "rules": [
            {"name": "large-amount", "decision": "step_up",
             "reason": "2,000 yuan or more", "amount_at_least": "2000.00"},
            {"name": "gambling", "decision": "decline", "reason": "merchant category 7995",
             "when": {"merchant_category": ["7995"]}}]}}
    import yaml

    (outage_dir / "svc.yaml").write_text(yaml.safe_dump(config))
    op = _key(outage_dir, "operator", "on-call")
    credit = _key(outage_dir, "credit", "credit-officer")
    server = LiveServer(outage_dir, config, name="svc", port=port).start()
    _taps(server.url, _key(outage_dir, "gateway", "gateway-1"))
    incidents = json.loads((outage_dir / "analysis" / "incidents.json").read_text())
    red = next(i["id"] for i in incidents if i["level"] == 1)
    try:
        yield Console(f"http://localhost:{port}", op, credit, outage_dir, red, server)
    finally:
        assert server.stop() == 0, server.log()


def _taps(url: str, gateway_key: str) -> None:
    """A few taps through the service's decision port, for the Risk page."""
    import httpx

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {gateway_key}"}) as c:
        for i in range(60):
            big, bet = i % 7 == 0, i % 11 == 0
            r = c.post("/v1/authorize", json={
                "payment_id": f"p-{i}", "attempt_id": f"p-{i}-1", "user_id": f"u-{i % 13}",
                "device_id": f"d-{i % 13}", "merchant_id": f"m-{i % 5}",
                "amount": "2500.00" if big else "88.00", "region": "CN-GD",
                "merchant_category": "7995" if bet else "5812",
                "channels": ["nfc", "qr"]})
            assert r.status_code == 200, r.text


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run scripts/services "
                    "(apt-get install chromium fonts-noto-cjk)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM,
                               args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()
