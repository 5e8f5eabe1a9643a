"""Senders: Apprise for customers, signed webhooks for partners.

A sender gets one leased outbox row and says what happened: delivered,
retry later (connection refused, timeout, 5xx, 429), or refused for good (a
4xx: the message itself is wrong; a contact the vault does not hold). Every
request carries the row's idempotency key, so a receiver that saw it already
(a retry after a timeout that had in fact arrived) applies it once.
"""

from __future__ import annotations

import contextlib
import json
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Any, Protocol
from urllib.parse import quote

import apprise
import httpx
from apprise.plugins.email import NotifyEmail

from tapshield.comms.outbox import OutboxRow
from tapshield.respond.partners import Partner, body_bytes, signed_headers

KEY_HEADER = "X-Idempotency-Key"
DUE_HEADER = "X-Tapshield-Due"
TITLES = {"zh-CN": "闪付通知", "en": "FlashPay notice"}


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    retry: bool = False
    error: str = ""


class Sender(Protocol):
    def send(self, row: OutboxRow) -> SendResult: ...


class SmtpPool:
    """Open SMTP sessions kept between messages, per server and login.

    Apprise's e-mail plugin opens a session per message (connect, greeting,
    EHLO, maybe STARTTLS and login, then QUIT) and builds a TLS context with
    the system's CA bundle every time, even for plain SMTP: about 0.1 s of CPU
    per message, which made e-mail the slowest part of a drill's delivery.
    Here Apprise still parses the URL (server, port, security mode, login,
    sender, recipient, extra headers); the message goes over a session taken
    from this pool and returned after use. A session the server closed is
    replaced once; any other failure drops the session and lets the
    dispatcher retry the row (same idempotency key, applied once).
    """

    def __init__(self) -> None:
        self._free: dict[tuple[Any, ...], list[smtplib.SMTP]] = {}
        self._lock = threading.Lock()
        self._contexts: dict[bool, ssl.SSLContext] = {}

    def _context(self, verify: bool) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get(verify)
            if ctx is None:
                ctx = ssl.create_default_context()
                if not verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                self._contexts[verify] = ctx
            return ctx

    @staticmethod
    def _key(plugin: Any) -> tuple[Any, ...]:
        return (plugin.smtp_host, plugin.port, str(plugin.secure_mode), plugin.user,
                plugin.password, bool(plugin.verify_certificate))

    def _open(self, plugin: Any) -> smtplib.SMTP:
        mode = str(getattr(plugin.secure_mode, "value", plugin.secure_mode))
        timeout = float(getattr(plugin, "socket_connect_timeout", 15) or 15)
        ctx = self._context(bool(plugin.verify_certificate)) if mode != "insecure" else None
        conn: smtplib.SMTP
        if mode == "ssl":
            conn = smtplib.SMTP_SSL(plugin.smtp_host, plugin.port, timeout=timeout, context=ctx)
        else:
            conn = smtplib.SMTP(plugin.smtp_host, plugin.port, timeout=timeout)
            if mode == "starttls":
                conn.starttls(context=ctx)
        if plugin.user and plugin.password:
            conn.login(plugin.user, plugin.password)
        return conn

    def send(self, plugin: Any, title: str, body: str) -> SendResult:
        sender = plugin.from_addr[1]
        targets = sorted(plugin.targets) if not isinstance(plugin.targets, list) else [
            t[1] if isinstance(t, tuple | list) else t for t in plugin.targets]
        if len(targets) != 1:
            return SendResult(False, False, f"e-mail: one recipient per notice, not "
                                            f"{len(targets)}")
        msg = EmailMessage()
        msg["Subject"] = title
        msg["From"] = formataddr((plugin.from_addr[0] or None, sender)) \
            if plugin.from_addr[0] else sender
        msg["To"] = targets[0]
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=plugin.smtp_host or None)
        for k, v in (plugin.headers or {}).items():
            msg[k] = v
        msg.set_content(body)
        key = self._key(plugin)
        with self._lock:
            free = self._free.setdefault(key, [])
            conn = free.pop() if free else None
        for attempt in (0, 1):
            reused = conn is not None
            try:
                if conn is None:
                    conn = self._open(plugin)
                refused = conn.send_message(msg, from_addr=sender, to_addrs=targets)
            except smtplib.SMTPServerDisconnected as exc:
                conn = None
                if reused and attempt == 0:
                    continue  # the server closed an idle session: open a new one
                return SendResult(False, True, f"SMTPServerDisconnected: {exc}")
            except smtplib.SMTPRecipientsRefused as exc:
                self._release(key, conn)
                return SendResult(False, False, f"SMTPRecipientsRefused: {exc}")
            except smtplib.SMTPResponseException as exc:
                self._release(key, conn)
                return SendResult(False, exc.smtp_code >= 400 and exc.smtp_code < 500,
                                  f"SMTP {exc.smtp_code}: {exc.smtp_error!r}")
            except (OSError, smtplib.SMTPException) as exc:
                self._discard(conn)
                return SendResult(False, True, f"{type(exc).__name__}: {exc}")
            self._release(key, conn)
            if refused:
                return SendResult(False, False, f"SMTP refused {', '.join(refused)}")
            return SendResult(True)
        return SendResult(False, True, "SMTP: no session")  # pragma: no cover

    def _release(self, key: tuple[Any, ...], conn: smtplib.SMTP | None) -> None:
        if conn is None:
            return
        with self._lock:
            self._free.setdefault(key, []).append(conn)

    @staticmethod
    def _discard(conn: smtplib.SMTP | None) -> None:
        if conn is None:
            return
        with contextlib.suppress(OSError):
            conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for free in self._free.values() for c in free]
            self._free.clear()
        for c in conns:
            try:
                c.quit()
            except (OSError, smtplib.SMTPException):
                self._discard(c)


class AppriseSender:
    """Customer notices through Apprise, one URL template per channel.

    ``targets`` maps a channel (``sms``, ``email``, ``push``) to an Apprise URL
    with ``{to}`` where the recipient's contact goes (URL-quoted), e.g.
    ``json://sms-gateway.internal/send?:to={to}`` for an SMS gateway's JSON API,
    ``mailtos://user:pass@smtp.example.com?to={to}``,
    ``mqtt://broker:1883/flashpay/notices/{to}?qos=1`` for push (``{to}``: the
    device's push token; the payload is JSON with the idempotency key, needs
    ``paho-mqtt``), or a WeCom / DingTalk /
    Feishu URL. ``reveal`` turns the row's vault token back into the phone
    number or e-mail address at send time; it is never stored anywhere else.
    """

    def __init__(self, targets: Mapping[str, str], reveal: Callable[[str], str | None]) -> None:
        self.targets = dict(targets)
        self.reveal = reveal
        self._asset = apprise.AppriseAsset()
        self.smtp = SmtpPool()

    def url(self, row: OutboxRow) -> str | None:
        template = self.targets.get(row.channel)
        if template is None or row.contact_token is None:
            return None
        contact = self.reveal(row.contact_token)
        if contact is None:
            return None
        url = template.replace("{to}", quote(contact, safe="@+"))
        sep = "&" if "?" in url else "?"
        return (f"{url}{sep}+{KEY_HEADER}={row.key}"
                f"&+{DUE_HEADER}={quote(row.due_at.isoformat(), safe='')}")

    def close(self) -> None:
        """End the open SMTP sessions (QUIT)."""
        self.smtp.close()

    def send(self, row: OutboxRow) -> SendResult:
        url = self.url(row)
        if url is None:
            return SendResult(False, False, f"no {row.channel} target or contact for the row")
        # The service plugin itself, not an ``Apprise`` collection: a collection hands
        # every notify to a thread pool, a hop that cost each message a context
        # switch and most of its latency; the dispatcher's workers are the pool.
        plugin = apprise.Apprise.instantiate(url, asset=self._asset)
        if plugin is None:
            return SendResult(False, False, f"Apprise does not accept the {row.channel} URL")
        title = TITLES.get(row.language or "", TITLES["zh-CN"])
        if isinstance(plugin, NotifyEmail):
            return self.smtp.send(plugin, title, row.body)
        if type(plugin).__name__ == "NotifyMQTT":
            # Push over MQTT carries no headers and QoS 1 may deliver twice: the app gets
            # one JSON document with the key, to show each notice once (the title goes in
            # it: Apprise would otherwise put it in front of the payload).
            doc = json.dumps({"key": row.key, "title": title, "body": row.body,
                              "due": row.due_at.isoformat()}, ensure_ascii=False)
            ok = plugin.notify(title="", body=doc)
        else:
            ok = plugin.notify(title=title, body=row.body)
        return SendResult(True) if ok else SendResult(False, True, "Apprise: delivery failed")


class WebhookSender:
    """Partner webhooks: the shared record, HMAC-signed with a timestamp."""

    def __init__(self, partners: Mapping[str, Partner], *, timeout: float = 5.0,
                 client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.partners = dict(partners)
        self.client = client or httpx.Client(timeout=timeout)
        self.clock = clock

    def send(self, row: OutboxRow) -> SendResult:
        p = self.partners.get(row.recipient)
        if p is None:
            return SendResult(False, False, f"partner {row.recipient!r} is not configured")
        body = body_bytes(row.payload)
        headers = signed_headers(p.secret, int(self.clock()), body, row.key)
        try:
            r = self.client.post(p.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return SendResult(False, True, f"{type(exc).__name__}: {exc}")
        if r.is_success:
            return SendResult(True)
        retry = r.status_code >= 500 or r.status_code in (408, 429)
        return SendResult(False, retry, f"HTTP {r.status_code}")


class Router:
    """Picks the sender by the row's kind."""

    def __init__(self, customers: Sender | None, partners: Sender | None) -> None:
        self.customers = customers
        self.partners = partners

    def send(self, row: OutboxRow) -> SendResult:
        sender = self.partners if row.kind == "webhook" else self.customers
        if sender is None:
            return SendResult(False, True, f"no sender configured for {row.kind}")
        return sender.send(row)
