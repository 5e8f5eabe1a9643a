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

What is pushed: every change of a wave that reached a paging level (1-3),
from its first page on: escalations, de-escalations (also down to a level-4
notice, so Alertmanager never shows a severity tapshield no longer holds),
reminders and the resolution. Waves that stayed level-4 notices and
suppressed waves stay in tapshield's own records (``include_notices`` pushes
notices too).

Labels: ``severity`` in the common vocabulary (``critical`` for levels 1-2,
``warning`` for 3, ``info`` for 4) beside tapshield's ``level`` (``1``-``4``)
and ``level_name`` (red, orange, yellow, blue). With ``describe`` the
diagnosis joins the annotations (cause, confidence, scope, top evidence,
failed payments, lost amount); ``generator_url`` and ``runbook_url`` may hold
``{incident_id}`` / ``{alert_id}`` / ``{cause}`` placeholders.

:meth:`AlertmanagerNotifier.heartbeat` pushes an always-firing
``TapshieldWatchdog`` alert (the kube-prometheus Watchdog pattern): route it to
a dead man's switch, which pages when it stops arriving.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tapshield.monitor.alerts import AlertEvent
from tapshield.notify.base import BackgroundNotifier, Request

SEVERITY = {1: "critical", 2: "critical", 3: "warning", 4: "info"}
"""tapshield's levels in the vocabulary Alertmanager routes and silences use."""
LEVEL_NAMES = {1: "red", 2: "orange", 3: "yellow", 4: "blue"}
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
                 describe: Callable[[AlertEvent], dict[str, str]] | None = None,
                 runbook_url: str = "", extra_labels: dict[str, str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(client=client, **kwargs)
        self.url = url.rstrip("/")
        self.endpoint = f"{self.url}/api/v2/alerts"
        self.generator_url = generator_url
        self.describe = describe
        self.runbook_url = runbook_url
        self.extra_labels = dict(extra_labels or {})
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
        labels["severity"] = SEVERITY.get(ev.level, "info")
        labels["level"] = str(ev.level)
        labels["level_name"] = LEVEL_NAMES.get(ev.level, str(ev.level))
        for k, v in self.extra_labels.items():
            labels.setdefault(_label_name(k), v)
        annotations = {k: str(v) for k, v in ev.annotations.items()}
        annotations["level"] = str(ev.level)
        annotations["state"] = ev.state
        if ev.incident_id:
            annotations["incident_id"] = ev.incident_id
        if self.describe is not None:
            annotations.update(self.describe(ev))
        fill = {"incident_id": ev.incident_id or "", "alert_id": ev.alert_id,
                "cause": annotations.get("cause", "unknown")}
        if self.runbook_url:
            annotations["runbook_url"] = self.runbook_url.format(**fill)
        starts = ev.started_at
        if ends is None:
            ends = max(datetime.now(UTC), starts) + self._horizon()
        elif ends <= starts:
            ends = starts + timedelta(milliseconds=1)
        out: dict[str, Any] = {"labels": labels, "annotations": annotations,
                               "startsAt": _iso(starts), "endsAt": _iso(ends)}
        if self.generator_url:
            out["generatorURL"] = self.generator_url.format(**fill)
        return out

    def heartbeat(self, now: datetime | None = None, *, every: float = 60.0) -> None:
        """Push the always-firing ``TapshieldWatchdog`` alert (call every ``every`` s):
        its ``endsAt`` lies three intervals ahead, so Alertmanager resolves it, and a
        dead man's switch fires, when tapshield stops calling."""
        now = now or datetime.now(UTC)
        labels = {"alertname": "TapshieldWatchdog", "severity": "none",
                  **{_label_name(k): v for k, v in self.extra_labels.items()}}
        body = [{"labels": labels,
                 "annotations": {"summary": "tapshield is alive and watching",
                                 "description": "Always firing while tapshield's monitor "
                                 "runs; route it to a dead man's switch."},
                 "startsAt": _iso(now - timedelta(seconds=1)),
                 "endsAt": _iso(now + timedelta(seconds=3 * every))}]
        if self.generator_url:
            body[0]["generatorURL"] = self.generator_url.format(incident_id="", alert_id="",
                                                                cause="")
        self._enqueue(Request("POST", self.endpoint, body))

    def requests(self, events: Sequence[AlertEvent]) -> list[Request]:
        body: list[dict[str, Any]] = []
        with self._active_lock:
            for ev in events:
                previous = self._active.get(ev.alert_id)
                if ev.state == "suppressed" or not (
                        ev.notify or self.include_notices or previous is not None
                        or (ev.level <= 3 and ev.state != "resolved")):
                    continue
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

    def restore_active(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Take over the alerts a previous process held firing (from its checkpoint):
        they keep being re-sent, and a later change of theirs resolves the old labels."""
        with self._active_lock:
            for p in payloads:
                aid = p.get("labels", {}).get("alert_id")
                if aid:
                    self._active[str(aid)] = dict(p)
        if payloads:
            self._start_resender()

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
