"""Push alerts to a Prometheus Alertmanager through its v2 API (``POST /api/v2/alerts``).

Alertmanager semantics, as Prometheus itself uses them:

* the **labels identify** an alert: ``alertname``, ``alert_id`` (one tapshield
  wave), ``signal``, ``severity`` (red/orange/yellow/blue, for routing) and the
  slice's dimensions. When a wave changes severity, the old label set is
  resolved and the new one fires, so Alertmanager routes on the current level;
* a firing alert carries ``endsAt`` a few resend intervals ahead and is
  **re-sent** every ``resend_interval`` while it fires (Prometheus' resend
  delay), otherwise Alertmanager would resolve it by itself;
* **resolution** is the same labels with ``endsAt`` set to when the wave ended.

Only changes meant for people (``notify``) are pushed by default: level-4
notices and suppressed waves stay in tapshield's own records.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tapshield.monitor.alerts import AlertEvent
from tapshield.notify.base import BackgroundNotifier, Request

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _label_name(k: str) -> str:
    name = "".join(c if c in _NAME_OK else "_" for c in k)
    return name if name and not name[0].isdigit() else f"_{name}"


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AlertmanagerNotifier(BackgroundNotifier):
    name = "alertmanager"

    def __init__(self, url: str, *, generator_url: str = "", include_notices: bool = False,
                 resend_interval: float = 60.0, client: httpx.Client | None = None,
                 **kwargs: Any) -> None:
        super().__init__(client=client, **kwargs)
        self.url = url.rstrip("/")
        self.endpoint = f"{self.url}/api/v2/alerts"
        self.generator_url = generator_url
        self.include_notices = include_notices
        self.resend_interval = resend_interval
        self._active: dict[str, dict[str, Any]] = {}
        self._active_lock = threading.Lock()
        self._resender: threading.Thread | None = None

    def payload(self, ev: AlertEvent, *, ends: datetime | None = None) -> dict[str, Any]:
        """One Alertmanager alert object for an event (``ends`` = resolved at)."""
        labels = {_label_name(k): str(v) for k, v in ev.labels.items()}
        labels.setdefault("alertname", "TapshieldFailureWave")
        labels.setdefault("alert_id", ev.alert_id)
        labels.setdefault("signal", ev.signal)
        for k, v in ev.slice.items():
            labels.setdefault(_label_name(k), str(v))
        annotations = {k: str(v) for k, v in ev.annotations.items()}
        annotations["level"] = str(ev.level)
        annotations["state"] = ev.state
        if ev.incident_id:
            annotations["incident_id"] = ev.incident_id
        starts = ev.started_at
        if ends is None:
            ends = max(datetime.now(UTC), starts) + self._horizon()
        elif ends <= starts:
            ends = starts + timedelta(milliseconds=1)
        out: dict[str, Any] = {"labels": labels, "annotations": annotations,
                               "startsAt": _iso(starts), "endsAt": _iso(ends)}
        if self.generator_url:
            out["generatorURL"] = self.generator_url
        return out

    def requests(self, events: Sequence[AlertEvent]) -> list[Request]:
        body: list[dict[str, Any]] = []
        with self._active_lock:
            for ev in events:
                if ev.state == "suppressed" or not (ev.notify or self.include_notices):
                    continue
                previous = self._active.get(ev.alert_id)
                if ev.state == "resolved":
                    body.append(self.payload(ev, ends=ev.ts))
                    self._active.pop(ev.alert_id, None)
                    if previous and previous["labels"] != body[-1]["labels"]:
                        old = dict(previous)
                        old["endsAt"] = body[-1]["endsAt"]
                        body.append(old)
                    continue
                p = self.payload(ev)
                if previous and previous["labels"] != p["labels"]:
                    old = dict(previous)
                    old["endsAt"] = _iso(max(ev.ts, ev.started_at + timedelta(milliseconds=1)))
                    body.append(old)  # the old severity's series ends here
                self._active[ev.alert_id] = p
                body.append(p)
        if body:
            self._start_resender()
        return [Request("POST", self.endpoint, body)] if body else []

    def _horizon(self) -> timedelta:
        """How far ahead a firing alert's ``endsAt`` lies: four resends (as Prometheus
        does), at least four minutes even when resending is off."""
        return timedelta(seconds=4 * max(self.resend_interval, 60.0))

    def active(self) -> list[dict[str, Any]]:
        with self._active_lock:
            return [dict(p) for p in self._active.values()]

    def _start_resender(self) -> None:
        if self._resender is None and self.resend_interval > 0:
            self._resender = threading.Thread(target=self._resend_loop, daemon=True,
                                              name="tapshield-alertmanager-resend")
            self._resender.start()

    def _resend_loop(self) -> None:
        while not self._stop.wait(self.resend_interval):
            ends = _iso(datetime.now(UTC) + self._horizon())
            with self._active_lock:
                body = []
                for p in self._active.values():
                    p["endsAt"] = max(p["endsAt"], ends)
                    body.append(dict(p))
            if body:
                self._enqueue(Request("POST", self.endpoint, body))
