"""Round trips through a real Prometheus Alertmanager (v2 API)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tapshield.monitor.alerts import AlertEvent
from tapshield.notify import AlertmanagerNotifier, Notifier

pytestmark = pytest.mark.alertmanager


def event(alert_id: str, state: str, level: int = 2, ts: datetime | None = None,
          notify: bool = True) -> AlertEvent:
    now = ts or datetime.now(UTC)
    sev = {1: "red", 2: "orange", 3: "yellow", 4: "blue"}[level]
    return AlertEvent(
        alert_id=alert_id, ts=now, state=state,  # type: ignore[arg-type]
        level=level, started_at=now - timedelta(minutes=2),
        slice={"channel": "nfc", "region": "CN-GD"}, signal="technical", notify=notify,
        figures={"share_affected": 0.05},
        labels={"alertname": "TapshieldFailureWave", "alert_id": alert_id,
                "signal": "technical", "severity": sev, "channel": "nfc", "region": "CN-GD"},
        annotations={"summary": f"level {level}: technical failures in channel=nfc"},
    )


def active(url: str, alert_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v2/alerts", params={"filter": f'alert_id="{alert_id}"'},
                  timeout=5)
    r.raise_for_status()
    out: list[dict[str, Any]] = r.json()
    return out


def wait_for(pred: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_firing_then_resolved_round_trip(alertmanager_url: str) -> None:
    aid = "T-" + uuid.uuid4().hex[:12]
    n = AlertmanagerNotifier(alertmanager_url, resend_interval=0)
    assert isinstance(n, Notifier)
    n.send([event(aid, "firing")])
    assert n.flush(10)
    seen = wait_for(lambda: active(alertmanager_url, aid))
    assert len(seen) == 1
    a = seen[0]
    assert a["labels"]["alert_id"] == aid
    assert a["labels"]["channel"] == "nfc" and a["labels"]["region"] == "CN-GD"
    assert a["labels"]["severity"] == "critical" and a["labels"]["signal"] == "technical"
    assert a["labels"]["level"] == "2" and a["labels"]["level_name"] == "orange"
    assert a["status"]["state"] == "active"
    assert a["annotations"]["summary"].startswith("level 2")

    n.send([event(aid, "resolved")])
    assert n.flush(10)
    assert wait_for(lambda: not active(alertmanager_url, aid))
    n.close()
    assert n.stats.sent == 2 and n.stats.failed == 0


def test_escalation_moves_the_alert_to_its_new_severity(alertmanager_url: str) -> None:
    aid = "T-" + uuid.uuid4().hex[:12]
    n = AlertmanagerNotifier(alertmanager_url, resend_interval=0)
    n.send([event(aid, "firing", level=3)])
    n.send([event(aid, "escalated", level=1)])
    assert n.flush(10)

    def only_red() -> list[dict[str, Any]]:
        got = active(alertmanager_url, aid)
        return got if [a["labels"]["level_name"] for a in got] == ["red"] else []

    assert wait_for(only_red), active(alertmanager_url, aid)
    n.send([event(aid, "resolved", level=1)])
    assert n.flush(10)
    assert wait_for(lambda: not active(alertmanager_url, aid))
    n.close()


def test_every_level_change_is_pushed_down_to_the_notice(alertmanager_url: str) -> None:
    """Escalations that do not page and de-escalations move Alertmanager too: it never
    shows a level tapshield no longer holds."""
    aid = "T-" + uuid.uuid4().hex[:12]
    n = AlertmanagerNotifier(alertmanager_url, resend_interval=0)
    n.send([event(aid, "firing", level=2)])
    n.send([event(aid, "deescalated", level=3, notify=False)])
    assert n.flush(10)

    def levels() -> list[str]:
        return sorted(a["labels"]["level"] for a in active(alertmanager_url, aid))

    assert wait_for(lambda: levels() == ["3"]), active(alertmanager_url, aid)
    got = active(alertmanager_url, aid)[0]
    assert got["labels"]["severity"] == "warning"
    n.send([event(aid, "deescalated", level=4, notify=False)])
    assert n.flush(10)
    assert wait_for(lambda: levels() == ["4"]), active(alertmanager_url, aid)
    assert active(alertmanager_url, aid)[0]["labels"]["severity"] == "info"
    n.send([event(aid, "resolved", level=4, notify=False)])
    assert n.flush(10)
    assert wait_for(lambda: not active(alertmanager_url, aid))
    n.close()


def test_heartbeat_is_an_always_firing_watchdog(alertmanager_url: str) -> None:
    inst = "hb-" + uuid.uuid4().hex[:10]
    n = AlertmanagerNotifier(alertmanager_url, resend_interval=0, extra_labels={"instance": inst})
    n.heartbeat(every=60.0)
    assert n.flush(10)
    got = wait_for(lambda: httpx.get(f"{alertmanager_url}/api/v2/alerts", params={
        "filter": f'instance="{inst}"'}, timeout=5).json())
    assert [a["labels"]["alertname"] for a in got] == ["TapshieldWatchdog"]
    assert got[0]["status"]["state"] == "active"
    n.close()


def test_notices_and_suppressed_changes_are_not_pushed(alertmanager_url: str) -> None:
    aid = "T-" + uuid.uuid4().hex[:12]
    n = AlertmanagerNotifier(alertmanager_url, resend_interval=0)
    n.send([event(aid, "firing", level=4, notify=False), event(aid, "suppressed", notify=False)])
    assert n.flush(5)
    assert n.stats.queued == 0
    time.sleep(0.3)
    assert active(alertmanager_url, aid) == []
    n.close()


def test_firing_alerts_are_resent_so_alertmanager_keeps_them() -> None:
    got: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    n = AlertmanagerNotifier("http://am.invalid", resend_interval=0.05, client=client)
    n.send([event("T-resend", "firing")])
    assert wait_for(lambda: len(got) >= 3, 5)
    n.close()
