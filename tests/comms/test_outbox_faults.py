"""The outbox loses nothing and applies nothing twice, through receiver failures and a
dispatcher killed midway, counted on a real HTTP receiver (and Apprise's JSON target)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from tapshield.comms.dispatch import Dispatcher
from tapshield.comms.outbox import Outbox
from tapshield.comms.receivers import LocalHTTP
from tapshield.comms.senders import AppriseSender, Router, WebhookSender
from tapshield.respond.lifecycle import TimelineEntry
from tapshield.respond.partners import Partner
from tapshield.respond.responder import OutboundMessage
from tapshield.storage import Store

T0 = datetime(2026, 11, 24, 3, 41, tzinfo=UTC)


def messages(n: int, *, kind: str = "webhook", start: int = 0) -> list[OutboundMessage]:
    return [OutboundMessage(
        key=f"{kind}-{i:05d}", kind=kind, incident_id=f"INC-{i // 50:04d}", case_id="C",
        cause="interface", recipient="card-network" if kind == "webhook" else f"u{i}",
        channel="webhook" if kind == "webhook" else "sms", due_at=T0 + timedelta(seconds=i),
        wanted_at=T0, body=f"message {i}",
        contact_token=None if kind == "webhook" else f"tok-{i}",
        payload={"incident_id": f"INC-{i // 50:04d}", "n": i})
        for i in range(start, start + n)]


def test_recording_is_transactional_and_idempotent(tmp_path: Path) -> None:
    outbox = Outbox(Store(f"sqlite:///{tmp_path / 'o.sqlite'}").engine)
    entry = TimelineEntry(T0, "tapshield/monitor", "transition", "open", "paged")
    assert outbox.record([("INC-0000", entry)], messages(10)) == 10
    assert outbox.record([("INC-0000", entry)], messages(10)) == 0  # same plan again
    assert outbox.counts()["pending"] == 10
    assert len(outbox.timeline("INC-0000")) == 1
    bad = [replace(m, due_at=None) for m in messages(1, start=10)]  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        outbox.record([("INC-0001", entry)], bad)
    # the failed transaction left neither its timeline entry nor its message
    assert outbox.timeline("INC-0001") == []
    assert outbox.counts()["pending"] == 10


def test_receiver_failures_lose_nothing_and_apply_nothing_twice(tmp_path: Path) -> None:
    """503s, hangs past the client timeout (applied, but the sender cannot know), and the
    receiver down and back on the same port, injected while 240 webhooks and 120 SMS
    (Apprise json://) are delivered."""
    rng = random.Random(7)
    outbox = Outbox(Store(f"sqlite:///{tmp_path / 'o.sqlite'}").engine)
    outbox.record([], messages(240) + messages(120, kind="notice"))
    partner_rx = LocalHTTP().start()
    gateway = LocalHTTP().start()
    partner_rx.hang_seconds = gateway.hang_seconds = 0.6
    partner = Partner("card-network", {"channel": "nfc"}, f"{partner_rx.url}/p", "s3cret")
    sms = AppriseSender({"sms": f"json://127.0.0.1:{gateway.port}/sms?:to={{to}}&rto=0.3"},
                        reveal=lambda tok: "+86138" + tok.split("-")[1].zfill(8))
    sender = Router(sms, WebhookSender({"card-network": partner}, timeout=0.3))
    dispatcher = Dispatcher(outbox, sender, backoff=0.01, max_backoff=0.1, max_attempts=1000,
                            lease=timedelta(seconds=5), batch=40, workers=4)
    injected = {"fail": 0, "hang": 0, "down": 0}
    stop = threading.Event()

    # Faults queued before the drain starts, so a fast machine (which drains in a couple
    # of seconds) still meets at least 20 of them; the chaos thread adds more at random.
    for rx in (partner_rx, gateway):
        rx.fail_next += 3 * 6
        rx.hang_next += 4
    injected["fail"] += 12
    injected["hang"] += 8
    partner_rx.stop()  # down when the drain starts, back after a moment

    def chaos() -> None:
        time.sleep(0.3)
        partner_rx.start()
        injected["down"] += 1
        while not stop.is_set():
            rx = rng.choice([partner_rx, gateway])
            what = rng.choice(["fail", "fail", "hang", "down"])
            if what == "fail":
                rx.fail_next += 3
            elif what == "hang":
                rx.hang_next += 1
            else:
                rx.stop()
                time.sleep(0.2)
                rx.start()
            injected[what] += 1
            time.sleep(rng.uniform(0.05, 0.2))

    t = threading.Thread(target=chaos, daemon=True)
    t.start()
    try:
        assert dispatcher.drain(timeout=240, idle=0.02)
    finally:
        stop.set()
        t.join()
        partner_rx.stop()
        gateway.stop()
    counts = outbox.counts()
    assert counts == {"pending": 0, "sending": 0, "sent": 360, "dead": 0, "suppressed": 0}
    applied = [r.key for r in partner_rx.ledger.applied + gateway.ledger.applied]
    lost = {m.key for m in messages(240) + messages(120, kind="notice")} - set(applied)
    duplicated = len(applied) - len(set(applied))
    print(f"injected {injected}; retried {dispatcher.stats.retried}; receiver repeats "
          f"{partner_rx.ledger.repeats + gateway.ledger.repeats}")
    assert sum(injected.values()) >= 20, "too few failures injected to mean anything"
    assert dispatcher.stats.retried > 0
    assert not lost and duplicated == 0
    # every repeat the receivers saw was a request they applied while the sender timed out
    assert partner_rx.ledger.repeats + gateway.ledger.repeats <= injected["hang"]


DISPATCHER = textwrap.dedent("""
    import sys
    from datetime import timedelta
    from tapshield.comms.dispatch import Dispatcher
    from tapshield.comms.outbox import Outbox
    from tapshield.comms.senders import Router, WebhookSender
    from tapshield.respond.partners import Partner
    from tapshield.storage import Store

    url, target = sys.argv[1], sys.argv[2]
    outbox = Outbox(Store(url, migrate=False).engine)  # the test migrated it
    partner = Partner("card-network", {"channel": "nfc"}, target, "s3cret")
    d = Dispatcher(outbox, Router(None, WebhookSender({"card-network": partner}, timeout=2)),
                   lease=timedelta(seconds=1), batch=10, workers=2, backoff=0.01,
                   max_backoff=0.05, max_attempts=1000)
    print("ready", flush=True)
    d.drain(timeout=300, idle=0.02)
""")


def _killed_midway(url: str, tmp_path: Path, *, n: int = 300, procs: int = 1) -> None:
    outbox = Outbox(Store(url).engine)
    outbox.record([], messages(n))
    rx = LocalHTTP().start()
    rx.hang_seconds = 0.0
    script = tmp_path / "dispatcher.py"
    script.write_text(DISPATCHER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rng = random.Random(11)
    kills = 0
    rx.delay = 0.01  # each request takes a moment: kills land while requests are in flight
    try:
        for _ in range(6):
            running = [subprocess.Popen([sys.executable, str(script), url, f"{rx.url}/p"],
                                        env=env, stdout=subprocess.PIPE, text=True)
                       for _ in range(procs)]
            for p in running:
                assert p.stdout is not None
                p.stdout.readline()  # imports done: it is dispatching now
            time.sleep(rng.uniform(0.1, 0.4))
            for p in running:
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    kills += 1
                p.wait()
        # a last, undisturbed run finishes whatever the kills left leased
        final = subprocess.run([sys.executable, str(script), url, f"{rx.url}/p"], env=env,
                               timeout=300)
        assert final.returncode == 0
    finally:
        rx.stop()
    counts = outbox.counts()
    applied = [r.key for r in rx.ledger.applied]
    print(f"kills {kills}; arrivals {rx.ledger.arrivals}; repeats {rx.ledger.repeats}")
    assert kills >= 4
    assert counts["sent"] == n and counts["pending"] == counts["sending"] == 0
    assert set(applied) == {m.key for m in messages(n)}  # 0 lost
    assert len(applied) == len(set(applied))  # 0 applied twice
    # a killed dispatcher can leave at most its in-flight requests unmarked (2 workers)
    assert rx.ledger.repeats <= 2 * kills


@pytest.mark.slow
def test_dispatcher_killed_midway_sqlite(tmp_path: Path) -> None:
    _killed_midway(f"sqlite:///{tmp_path / 'o.sqlite'}", tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
def test_dispatcher_killed_midway_postgres(pg_url: str, tmp_path: Path) -> None:
    from sqlalchemy import text

    store = Store(pg_url)  # migrated: the outbox tables exist; start them empty
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM respond_outbox"))
        conn.execute(text("DELETE FROM respond_timeline"))
    store.close()
    _killed_midway(pg_url, tmp_path, procs=2)  # two dispatchers race (SKIP LOCKED)


def test_email_notices_reuse_smtp_sessions(tmp_path: Path) -> None:
    """E-mail through the pool: every notice arrives once, with its key and the recipient's
    own address only, over at most one SMTP session per worker (Apprise's own plugin
    opened one per message, with a new TLS context each: the drills' slow part); a
    session the server dropped is replaced."""
    from tapshield.comms.receivers import LocalSMTP, email_text

    outbox = Outbox(Store(f"sqlite:///{tmp_path / 'o.sqlite'}").engine)
    msgs = [replace(m, channel="email") for m in messages(40, kind="notice")]
    outbox.record([], msgs)
    with LocalSMTP() as smtp:
        sender = AppriseSender(
            {"email": f"mailto://127.0.0.1:{smtp.port}?from=notices@flashpay.example"
                      "&to={to}&mode=insecure"},
            reveal=lambda t: f"c{t.removeprefix('tok-')}@customers.example")
        d = Dispatcher(outbox, Router(sender, None), workers=4, backoff=0.01,
                       max_backoff=0.05)
        assert d.run_once() == 40  # the first 40...
        for free in sender.smtp._free.values():  # ...then the server drops every session
            for conn in free:
                conn.sock.close()  # type: ignore[union-attr]
        outbox.record([], [replace(m, key=f"{m.key}-b") for m in msgs])
        assert d.drain(timeout=60)
        sender.close()
        applied = list(smtp.ledger.applied)
        sessions = smtp.sessions
    assert len(applied) == 80 and smtp.ledger.repeats == 0
    assert {r.key for r in applied} == {m.key for m in msgs} | {f"{m.key}-b" for m in msgs}
    assert sessions <= 2 * 4  # at most one per worker, and once more after the drop
    for r in applied:
        n = r.headers["x-idempotency-key"].split("-")[1]
        assert r.headers["to"] == f"c{int(n)}@customers.example"
        assert r.headers["x-tapshield-due"]  # the quiet-hours check reads it
        assert email_text(r).strip().startswith("message")
