"""Shared state through a real Redis, and routing on when Redis is gone."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from tapshield.route import ChannelProfile, Probe, Router, RouterConfig
from tapshield.share.redis import RedisShare

pytestmark = pytest.mark.redis

ALL = frozenset({"nfc", "qr", "debit_card", "wallet"})
QUIET = ChannelProfile(normal_failure_rate=0.002, slow_ms=2_000.0, typical_ms=250.0)


def config() -> RouterConfig:
    return RouterConfig(profiles=dict.fromkeys(ALL, QUIET))


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    ns = f"test:route:{uuid.uuid4().hex[:10]}"
    yield ns
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{ns}:*"))
    if keys:
        client.delete(*keys)


def pair(url: str, ns: str) -> tuple[Router, RedisShare, Router, RedisShare]:
    sa = RedisShare(url, namespace=ns, instance="a")
    sb = RedisShare(url, namespace=ns, instance="b")
    return Router(config(), share=sa), sa, Router(config(), share=sb), sb


def test_instances_pool_their_evidence(redis_url: str, namespace: str) -> None:
    ra, sa, rb, sb = pair(redis_url, namespace)
    # Three gateway instances' worth of failures, split across two routers.
    ra.observe("nfc", "CN-GD", 1.0, "failed", "91", 200.0)
    ra.observe("nfc", "CN-GD", 1.1, "failed", "96", 200.0)
    rb.observe("nfc", "CN-GD", 1.2, "timeout", "68", 200.0)
    assert not ra.is_down("nfc") and not rb.is_down("nfc")
    assert sa.sync() and sb.sync() and sa.sync()
    assert ra.is_down("nfc") and rb.is_down("nfc")
    assert rb.choose("CN-GD", ALL, 1.3).channel == "qr"
    assert sa.stats.received == 1 and sb.stats.received == 2


def test_probe_results_readmit_everywhere(redis_url: str, namespace: str) -> None:
    ra, sa, rb, sb = pair(redis_url, namespace)
    for t in (1.0, 1.1, 1.2):
        ra.observe("nfc", "CN-GD", t, "failed", "91", 200.0)
    sa.sync()
    sb.sync()
    assert rb.is_down("nfc")
    t = 2.0
    for _ in range(10):
        t += 1.0
        for p in ra.due_probes(t):
            if p.channel == "nfc" and sa.claim(p, t, 1.0):
                ra.observe_probe(p, True, t)
    sa.sync()
    sb.sync()
    assert not ra.is_down("nfc") and not rb.is_down("nfc")


def test_one_instance_wins_each_probe_slot(redis_url: str, namespace: str) -> None:
    _, sa, _, sb = pair(redis_url, namespace)
    p = Probe("nfc", "CN-GD")
    assert sa.claim(p, 10.2, 1.0) is True
    assert sb.claim(p, 10.7, 1.0) is False
    assert sb.claim(p, 11.1, 1.0) is True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redis_unreachable_the_router_routes_on_its_local_view() -> None:
    share = RedisShare(f"redis://127.0.0.1:{_free_port()}/0", namespace="x", timeout_s=0.05)
    r = Router(config(), share=share)
    t0 = time.monotonic()
    assert share.sync() is False
    assert time.monotonic() - t0 < 1.0  # short timeouts, no client-side retries
    for t in (1.0, 1.1, 1.2):
        r.observe("nfc", "CN-GD", t, "failed", "91", 200.0)
    assert r.choose("CN-GD", ALL, 1.3).channel == "qr"
    assert share.claim(Probe("nfc", None), 2.0, 1.0) is True  # probe locally
    assert share.stats.errors >= 1 and not share.stats.healthy
    assert share.pending == 3  # kept for when Redis is back


@pytest.fixture
def own_redis() -> Iterator[tuple[str, subprocess.Popen[bytes], int]]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server binary not found (apt-get install redis-server)")
    port = _free_port()
    proc = _start(exe, port)
    yield exe, proc, port
    proc.terminate()
    proc.wait(5)


def _start(exe: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port, socket_timeout=0.2).ping()
            return proc
        except redis.RedisError:
            time.sleep(0.05)
    proc.terminate()
    pytest.fail("could not start a private redis-server")


def test_redis_dies_mid_run_and_comes_back(
    own_redis: tuple[str, subprocess.Popen[bytes], int],
) -> None:
    exe, proc, port = own_redis
    url = f"redis://127.0.0.1:{port}/0"
    ra, sa, rb, sb = pair(url, "mid")
    ra.observe("nfc", "CN-GD", 1.0, "approved", "00", 200.0)
    assert sa.sync() and sb.sync()
    # Redis goes away in the middle of the run.
    proc.terminate()
    proc.wait(5)
    for t in (2.0, 2.1, 2.2):
        ra.observe("qr", "CN-ZJ", t, "failed", "96", 200.0)
    assert sa.sync() is False
    assert ra.choose("CN-ZJ", {"qr", "wallet"}, 2.3).channel == "wallet"  # local view
    assert rb.choose("CN-ZJ", {"qr", "wallet"}, 2.3).channel == "qr"  # b has not heard
    # Redis is back (same port): the buffered observations reach b.
    revived = _start(exe, port)
    try:
        sa._next_try = sb._next_try = 0.0  # skip the back-off wait in the test
        assert sa.sync() and sb.sync()
        assert rb.is_down("qr", "CN-ZJ")
        assert sa.pending == 0
    finally:
        revived.terminate()
        revived.wait(5)


def test_background_sync_converges(redis_url: str, namespace: str) -> None:
    ra, sa, rb, sb = pair(redis_url, namespace)
    sa.start(0.01)
    sb.start(0.01)
    try:
        for t in (1.0, 1.1, 1.2):
            ra.observe("wallet", "CN-SH", t, "failed", "96", 200.0)
        deadline = time.monotonic() + 3.0
        while not rb.is_down("wallet") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rb.is_down("wallet")
    finally:
        sa.stop()
        sb.stop()


def test_a_new_instance_warms_up_from_recent_peer_evidence(redis_url: str, namespace: str) -> None:
    ra, sa, _, _ = pair(redis_url, namespace)
    for t in (1.0, 1.1, 1.2):
        ra.observe("nfc", "CN-GD", t, "failed", "91", 200.0)
    assert sa.sync()
    late = RedisShare(redis_url, namespace=namespace, instance="c")
    rc = Router(config(), share=late)
    assert late.sync()
    assert rc.is_down("nfc", "CN-GD")
