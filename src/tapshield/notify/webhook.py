"""Push alerts to any HTTP endpoint, in Alertmanager's webhook payload (version 4).

Receivers written for Alertmanager webhooks (chat bots, ticketing, paging
bridges) accept it unchanged; the full tapshield alert change rides along under
``tapshield``. Each request carries an ``Idempotency-Key`` (alert id, state,
time) so a receiver can drop the duplicates retries may cause, and, with a
``secret``, an ``X-Tapshield-Signature: sha256=<hmac>`` of the body so it can
check the sender.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import httpx

from tapshield.monitor.alerts import AlertEvent
from tapshield.notify.base import BackgroundNotifier, Request


class WebhookNotifier(BackgroundNotifier):
    name = "webhook"

    def __init__(self, url: str, *, secret: str | None = None, include_notices: bool = False,
                 external_url: str = "", tz: str | None = None,
                 client: httpx.Client | None = None, **kwargs: Any) -> None:
        super().__init__(client=client, **kwargs)
        self.url = url
        self.secret = secret
        self.include_notices = include_notices
        self.external_url = external_url
        self.tz = tz

    def body(self, ev: AlertEvent) -> dict[str, Any]:
        status = "resolved" if ev.state == "resolved" else "firing"
        labels = {str(k): str(v) for k, v in ev.labels.items()} or {"alert_id": ev.alert_id}
        starts = ev.started_at.astimezone(UTC).isoformat(timespec="milliseconds")
        ends = (ev.ts.astimezone(UTC).isoformat(timespec="milliseconds")
                if status == "resolved" else "0001-01-01T00:00:00Z")
        return {
            "version": "4",
            "groupKey": f"{{}}:{{alert_id=\"{ev.alert_id}\"}}",
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "tapshield",
            "groupLabels": {"alert_id": ev.alert_id},
            "commonLabels": labels,
            "commonAnnotations": {str(k): str(v) for k, v in ev.annotations.items()},
            "externalURL": self.external_url,
            "alerts": [{
                "status": status,
                "labels": labels,
                "annotations": {str(k): str(v) for k, v in ev.annotations.items()},
                "startsAt": starts.replace("+00:00", "Z"),
                "endsAt": ends.replace("+00:00", "Z"),
                "generatorURL": self.external_url,
                "fingerprint": hashlib.sha256(ev.alert_id.encode()).hexdigest()[:16],
            }],
            "tapshield": ev.to_dict(self.tz),
        }

    def requests(self, events: Sequence[AlertEvent]) -> list[Request]:
        out: list[Request] = []
        for ev in events:
            if ev.state == "suppressed" or not (ev.notify or self.include_notices):
                continue
            body = self.body(ev)
            headers = {"Idempotency-Key": f"{ev.alert_id}:{ev.state}:{ev.ts.isoformat()}",
                       "Content-Type": "application/json"}
            if self.secret:
                raw = json.dumps(body, sort_keys=True, default=str).encode()
                sig = hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
                headers["X-Tapshield-Signature"] = f"sha256={sig}"
            out.append(Request("POST", self.url, body, headers))
        return out
