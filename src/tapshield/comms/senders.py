"""Senders: Apprise for customers, signed webhooks for partners.

A sender gets one leased outbox row and says what happened: delivered,
retry later (connection refused, timeout, 5xx, 429), or refused for good (a
4xx: the message itself is wrong; a contact the vault does not hold). Every
request carries the row's idempotency key, so a receiver that saw it already
(a retry after a timeout that had in fact arrived) applies it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import apprise
import httpx

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


class AppriseSender:
    """Customer notices through Apprise, one URL template per channel.

    ``targets`` maps a channel (``sms``, ``email``, ``push``) to an Apprise URL
    with ``{to}`` where the recipient's contact goes (URL-quoted), e.g.
    ``json://sms-gateway.internal/send?:to={to}`` for an SMS gateway's JSON API,
    ``mailtos://user:pass@smtp.example.com?to={to}``,
    ``mqtt://broker/flashpay/notices/{to}`` for push, or a WeCom / DingTalk /
    Feishu URL. ``reveal`` turns the row's vault token back into the phone
    number or e-mail address at send time; it is never stored anywhere else.
    """

    def __init__(self, targets: Mapping[str, str], reveal: Callable[[str], str | None]) -> None:
        self.targets = dict(targets)
        self.reveal = reveal
        self._asset = apprise.AppriseAsset()

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
        ok = plugin.notify(title=TITLES.get(row.language or "", TITLES["zh-CN"]),
                           body=row.body)
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
