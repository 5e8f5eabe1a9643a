"""Local receivers for drills and tests: what the SMS gateway, the mail server and a
partner would see, on 127.0.0.1, with failures injected on demand.

* :class:`LocalSMTP`: an SMTP server (aiosmtpd) keeping every message;
* :class:`LocalHTTP`: an HTTP server keeping every JSON / form request, that
  can fail (``fail_next``: 503s), hang past the client's timeout (``hang_next``:
  it applies the request *then* stalls, the case that makes naive senders
  duplicate), or refuse connections (``stop`` / ``start`` again on the same
  port). It applies each idempotency key once, as the partner protocol asks,
  and counts raw arrivals and repeats separately, so a test sees both.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

KEY_HEADERS = ("idempotency-key", "x-idempotency-key")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    key: str | None

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(slots=True)
class Ledger:
    """What a receiver applied (first arrival of each key) and how often keys repeated."""

    applied: list[Received] = field(default_factory=list)
    arrivals: int = 0
    repeats: int = 0
    keys: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, r: Received) -> bool:
        with self.lock:
            self.arrivals += 1
            if r.key is not None and r.key in self.keys:
                self.repeats += 1
                return False
            if r.key is not None:
                self.keys.add(r.key)
            self.applied.append(r)
            return True


class LocalHTTP:
    def __init__(self, port: int | None = None, *,
                 verify: Callable[[str, Mapping[str, str], bytes], str | None] | None = None
                 ) -> None:
        self.port = port or free_port()
        self.ledger = Ledger()
        self.fail_next = 0
        self.hang_next = 0
        self.hang_seconds = 2.0
        self.delay = 0.0
        """Seconds every request takes before it is applied (a slow receiver)."""
        self.verify = verify
        """``(path, headers, body) -> None`` to accept or an error text to refuse with 401."""
        self.rejected = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalHTTP:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                return

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with owner._lock:
                    fail = owner.fail_next > 0
                    if fail:
                        owner.fail_next -= 1
                    hang = not fail and owner.hang_next > 0
                    if hang:
                        owner.hang_next -= 1
                if fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                if owner.verify is not None:
                    err = owner.verify(self.path, headers, body)
                    if err is not None:
                        with owner._lock:
                            owner.rejected += 1
                        self.send_response(401)
                        self.end_headers()
                        self.wfile.write(err.encode())
                        return
                if owner.delay:
                    time.sleep(owner.delay)
                key = next((headers[h] for h in KEY_HEADERS if h in headers), None)
                owner.ledger.add(Received(self.path, headers, body, time.time(), key))
                if hang:
                    time.sleep(owner.hang_seconds)  # applied, but the client times out
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok":true}')

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="tapshield-local-http")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalHTTP:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def form_or_json(r: Received) -> dict[str, Any]:
    ctype = r.headers.get("content-type", "")
    if "json" in ctype:
        d = r.json()
        return d if isinstance(d, dict) else {"_": d}
    return {k: v[0] for k, v in parse_qs(r.text()).items()}


class LocalSMTP:
    """An SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.ledger = Ledger()
        self.sessions = 0
        """SMTP sessions opened (greetings): a sender that reuses sessions opens few."""
        self._controller: Any = None

    def start(self) -> LocalSMTP:
        from aiosmtpd.controller import Controller

        owner = self

        class Handler:
            async def handle_EHLO(  # noqa: N802 (the name aiosmtpd calls)
                    self, server: Any, session: Any, envelope: Any, hostname: str,
                    responses: list[str]) -> list[str]:
                with owner.ledger.lock:
                    owner.sessions += 1
                session.host_name = hostname
                return responses

            async def handle_DATA(  # noqa: N802 (the name aiosmtpd calls)
                    self, server: Any, session: Any, envelope: Any) -> str:
                raw = envelope.content if isinstance(envelope.content, bytes) else \
                    str(envelope.content).encode()
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                headers = {k.lower(): str(v) for k, v in msg.items()}
                key = next((headers[h] for h in KEY_HEADERS if h in headers), None)
                owner.ledger.add(Received("smtp", headers, raw, time.time(), key))
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> LocalSMTP:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def email_text(r: Received) -> str:
    """The plain-text body of a received e-mail."""
    msg = email.message_from_bytes(r.body, policy=email.policy.default)
    if isinstance(msg, EmailMessage):
        part = msg.get_body(preferencelist=("plain",))
        if part is not None:
            return str(part.get_content())
    return r.text()
