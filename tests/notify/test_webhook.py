"""The webhook notifier against a real local HTTP server, and delivery failures."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tapshield.monitor.alerts import AlertEvent
from tapshield.notify import AlertmanagerNotifier, WebhookNotifier


class Receiver:
    def __init__(self, fail_first: int = 0, status: int = 500) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.fail_first = fail_first
        self.status = status
        self.calls = 0


@pytest.fixture
def server() -> Iterator[tuple[str, Receiver]]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            rec.calls += 1
            if rec.calls <= rec.fail_first:
                self.send_response(rec.status)
                self.end_headers()
                return
            rec.raw.append(raw)
            rec.bodies.append(json.loads(raw))
            rec.headers.append(dict(self.headers))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", rec
    httpd.shutdown()


def ev(state: str = "firing", notify: bool = True) -> AlertEvent:
    now = datetime.now(UTC)
    return AlertEvent(
        alert_id="A-123", ts=now, state=state, level=2,  # type: ignore[arg-type]
        started_at=now - timedelta(minutes=1), slice={"channel": "qr"}, signal="technical",
        notify=notify, figures={"share_affected": 0.04, "ended_at": now},
        labels={"alertname": "TapshieldFailureWave", "alert_id": "A-123", "severity": "orange",
                "channel": "qr"},
        annotations={"summary": "level 2 (orange): technical in channel=qr"},
    )


def test_webhook_posts_alertmanager_payload_with_signature(server: tuple[str, Receiver]
                                                           ) -> None:
    url, rec = server
    n = WebhookNotifier(url, secret="s3cret")
    n.send([ev("firing"), ev("resolved")])
    assert n.flush(10)
    n.close()
    assert len(rec.bodies) == 2
    first, second = rec.bodies
    assert first["version"] == "4" and first["status"] == "firing"
    assert first["alerts"][0]["labels"]["channel"] == "qr"
    assert first["tapshield"]["alert_id"] == "A-123"
    assert first["tapshield"]["figures"]["ended_at"].endswith("+08:00")
    assert second["status"] == "resolved"
    assert rec.headers[0]["Idempotency-Key"].startswith("A-123:firing:")
    body = json.dumps(rec.bodies[0], sort_keys=True, default=str).encode()
    want = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert rec.headers[0]["X-Tapshield-Signature"] == want
    assert n.stats.sent == 2 and n.stats.failed == 0


def test_webhook_retries_a_server_error_then_delivers(server: tuple[str, Receiver]) -> None:
    url, rec = server
    rec.fail_first = 2
    n = WebhookNotifier(url, backoff=0.01)
    n.send([ev()])
    assert n.flush(10)
    n.close()
    assert rec.calls == 3 and len(rec.bodies) == 1
    assert n.stats.retried == 2 and n.stats.sent == 1 and n.stats.failed == 0


def test_a_client_error_is_not_retried(server: tuple[str, Receiver]) -> None:
    url, rec = server
    rec.fail_first, rec.status = 1, 400
    n = WebhookNotifier(url, backoff=0.01)
    n.send([ev()])
    assert n.flush(10)
    n.close()
    assert rec.calls == 1 and n.stats.failed == 1 and n.stats.retried == 0
    assert "HTTP 400" in (n.stats.last_error or "")


def test_a_dead_receiver_is_counted_not_raised_and_does_not_block() -> None:
    n = AlertmanagerNotifier("http://127.0.0.1:9", resend_interval=0, max_attempts=3,
                             backoff=0.01, timeout=1.0)
    t0 = time.monotonic()
    n.send([ev()])  # returns at once: delivery happens in the background
    queued_in = time.monotonic() - t0
    assert n.flush(20)
    n.close()
    assert n.stats.failed == 1 and n.stats.retried == 2 and n.stats.sent == 0
    assert queued_in < n.timeout  # never waited for the network
    assert "ConnectError" in (n.stats.last_error or "")


def test_notices_are_not_sent_unless_asked(server: tuple[str, Receiver]) -> None:
    url, rec = server
    n = WebhookNotifier(url)
    n.send([ev(notify=False)])
    m = WebhookNotifier(url, include_notices=True)
    m.send([ev(notify=False)])
    assert n.flush(5) and m.flush(5)
    n.close()
    m.close()
    assert len(rec.bodies) == 1


def test_a_full_queue_drops_and_counts() -> None:
    n = WebhookNotifier("http://127.0.0.1:9/x", queue_size=1, max_attempts=1, timeout=0.5)
    n.send([ev(), ev(), ev(), ev()])
    assert n.stats.dropped >= 1
    n.flush(10)
    n.close()
