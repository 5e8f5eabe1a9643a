"""Live processes on the real PostgreSQL and Redis: two instances sharing the
tap book and router health, Redis going away mid-test and coming back, a
graceful restart (SIGTERM: exit 0, checkpoint) and a crash (SIGKILL)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tapshield.service import tables as t
from tapshield.service.keys import create_key

from .live import LiveServer, OwnRedis

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def body(pid: str, aid: str, region: str = "CN-GD") -> dict[str, Any]:
    return {"payment_id": pid, "attempt_id": aid, "user_id": "u1", "device_id": "d1",
            "merchant_id": "m1", "amount": "66.00", "region": region}


def until(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


class Client:
    def __init__(self, server: LiveServer, key: str) -> None:
        self.server = server
        self.h = {"Authorization": f"Bearer {key}"}

    def authorize(self, b: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.server.url + "/v1/authorize", json=b, headers=self.h, timeout=10)

    def result(self, aid: str, outcome: str, code: str | None) -> httpx.Response:
        return httpx.post(self.server.url + f"/v1/attempts/{aid}/result", headers=self.h,
                          json={"outcome": outcome, "response_code": code, "latency_ms": 120},
                          timeout=10)

    def state(self, channel: str, region: str) -> str | None:
        keys = httpx.get(self.server.url + "/v1/channels/health", headers=self.h,
                         timeout=10).json()["keys"]
        got = {(k["channel"], k["region"]): k["state"] for k in keys}
        return got.get((channel, region))

    def fail(self, region: str, n: int) -> str:
        """n taps whose first attempt fails technically (the gateway's reports);
        returns the channel they were routed to."""
        used = set()
        for _ in range(n):
            b = body(uuid.uuid4().hex, uuid.uuid4().hex, region)
            ch = self.authorize(b).json()["channel"]
            assert ch is not None
            used.add(ch)
            self.result(b["attempt_id"], "failed", "91")
        assert len(used) == 1
        return used.pop()


@pytest.fixture
def redis_server() -> Iterator[OwnRedis]:
    r = OwnRedis().start()
    yield r
    r.kill()


def test_two_instances_redis_going_away_and_restarts(
        tmp_path: Path, pg_schema_url: str, redis_server: OwnRedis) -> None:
    cfg = {"database_url": pg_schema_url, "redis_url": redis_server.url,
           "redis_namespace": f"t{uuid.uuid4().hex[:8]}", "keys_file": "keys.json",
           "checkpoint_interval_s": 1.0, "log_requests": False,
           "router": {"profiles": {c: {"normal_failure_rate": 0.002, "slow_ms": 2000,
                                       "typical_ms": 250}
                                   for c in ("nfc", "qr", "debit_card", "wallet")}}}
    key = create_key(tmp_path / "keys.json", "gateway")[1]
    a = LiveServer(tmp_path, cfg, name="a").start()
    b = LiveServer(tmp_path, cfg, name="b").start()
    servers = [a, b]
    try:
        ca, cb = Client(a, key), Client(b, key)
        # 1. A replay on the other instance gets the same bytes.
        first = body("p-" + uuid.uuid4().hex, "a-" + uuid.uuid4().hex)
        r1 = ca.authorize(first)
        r2 = cb.authorize(first)
        assert r1.status_code == r2.status_code == 200
        assert r2.content == r1.content and r2.headers["idempotent-replayed"] == "true"
        # 2. The same new request on both at once: one attempt, one answer.
        race = body("p-" + uuid.uuid4().hex, "a-" + uuid.uuid4().hex)
        got: list[bytes] = []
        barrier = threading.Barrier(8)

        def fire(c: Client) -> None:
            barrier.wait()
            got.append(c.authorize(race).content)

        ths = [threading.Thread(target=fire, args=(c,)) for c in (ca, cb) * 4]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        assert len(got) == 8 and len(set(got)) == 1
        eng = sa.create_engine(pg_schema_url)
        with eng.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.attempts).where(
                t.attempts.c.payment_id == race["payment_id"])).scalar_one() == 1
        eng.dispose()
        # 3. Failures reported to A eliminate the channel on B too (through Redis).
        assert ca.fail("CN-GD", 3) == "nfc"
        assert ca.state("nfc", "CN-GD") == "eliminated"
        assert until(lambda: cb.state("nfc", "CN-GD") == "eliminated")
        assert cb.authorize(body(uuid.uuid4().hex, uuid.uuid4().hex)).json()["channel"] == "qr"
        # 4. Redis goes away: both keep answering on their local view.
        redis_server.kill()
        assert cb.fail("CN-SH", 3) == "qr"  # nfc is out everywhere since step 3
        assert cb.state("qr", "CN-SH") == "eliminated"
        time.sleep(0.5)
        assert ca.state("qr", "CN-SH") != "eliminated"
        for c in (ca, cb):
            r = c.authorize(body(uuid.uuid4().hex, uuid.uuid4().hex, "CN-BJ"))
            assert r.status_code == 200 and r.json()["channel"] is not None
        health = httpx.get(a.url + "/v1/channels/health", headers=ca.h, timeout=10).json()
        assert health["share"]["configured"] and not health["share"]["up"]
        assert "tapshield_route_share_up 0.0" in httpx.get(b.url + "/metrics").text
        # 5. Redis is back (empty): B's buffered observations reach A.
        redis_server.start()
        assert until(lambda: ca.state("qr", "CN-SH") == "eliminated", 30.0), a.log()
        # 6. Graceful restart of A: exit 0, router health checkpointed and restored.
        assert a.stop() == 0
        assert '"checkpoint": true' in a.log()
        a2 = LiveServer(tmp_path, cfg, name="a", port=a.port).start()
        servers.append(a2)
        ca2 = Client(a2, key)
        again = ca2.authorize(first)
        assert again.content == r1.content and again.headers["idempotent-replayed"] == "true"
        assert ca2.state("nfc", "CN-GD") == "eliminated"
        assert ca2.state("qr", "CN-SH") == "eliminated"
        # 7. A crash (SIGKILL) loses no committed answer.
        crash = body("p-" + uuid.uuid4().hex, "a-" + uuid.uuid4().hex, "CN-BJ")
        before = cb.authorize(crash)
        b.kill()
        b2 = LiveServer(tmp_path, cfg, name="b", port=b.port).start()
        servers.append(b2)
        after = Client(b2, key).authorize(crash)
        assert after.content == before.content and after.headers["idempotent-replayed"] == "true"
    finally:
        for s in servers:
            s.kill()


@pytest.mark.slow
def test_restart_mid_outage_keeps_the_channel_out_without_redis(tmp_path: Path) -> None:
    """SQLite, no Redis: the checkpoint alone carries router health over a restart
    (in the default suite in process: test_taps.py::test_router_health_survives_a_restart)."""
    cfg = {"keys_file": "keys.json", "log_requests": False}
    key = create_key(tmp_path / "keys.json", "gateway")[1]
    s = LiveServer(tmp_path, cfg).start()
    try:
        c = Client(s, key)
        assert c.fail("CN-GD", 4) == "nfc"
        assert c.state("nfc", "CN-GD") == "eliminated"
        assert s.stop() == 0
        s2 = LiveServer(tmp_path, cfg, port=s.port).start()
        c2 = Client(s2, key)
        assert c2.state("nfc", "CN-GD") == "eliminated"
        assert c2.authorize(body(uuid.uuid4().hex, uuid.uuid4().hex)).json()["channel"] == "qr"
        assert s2.stop() == 0
    finally:
        s.kill()
