"""Push notices through Apprise's mqtt:// to the real Mosquitto broker, received by a
subscriber (paho-mqtt) the way a customer's app would: each device gets its own notice
once, as JSON carrying the idempotency key, with no other customer's data in it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tapshield.comms.dispatch import Dispatcher
from tapshield.comms.drill import _vault
from tapshield.comms.outbox import Outbox
from tapshield.comms.senders import AppriseSender, Router
from tapshield.respond.notices import personal_data_in
from tapshield.respond.responder import OutboundMessage
from tapshield.storage import Store

T0 = datetime(2026, 11, 24, 3, 41, tzinfo=UTC)


class Subscriber:
    """A paho-mqtt client subscribed to ``<prefix>/#`` that keeps what arrives."""

    def __init__(self, port: int, prefix: str) -> None:
        import paho.mqtt.client as mqtt

        self.got: list[tuple[str, bytes]] = []
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"test-{uuid.uuid4().hex[:8]}")

        def on_connect(client: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
            client.subscribe(f"{prefix}/#", qos=1)

        def on_subscribe(*_a: Any) -> None:
            self._ready.set()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            with self._lock:
                self.got.append((str(msg.topic), bytes(msg.payload)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10), "the subscription was not confirmed"

    def wait_for(self, n: int, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if len(self.got) >= n:
                    return
            time.sleep(0.05)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.mqtt
def test_push_notices_reach_each_device_once_over_mqtt(mqtt_port: int, tmp_path: Path) -> None:
    prefix = f"tapshield-test/{uuid.uuid4().hex[:10]}/notices"
    store = Store(f"sqlite:///{tmp_path / 'o.sqlite'}")
    vault = _vault(store.engine, tmp_path / "keys")
    devices = {f"u{i}": f"dev{uuid.uuid4().hex[:12]}" for i in range(5)}
    tokens = {u: vault.put("device", d) for u, d in devices.items()}
    outbox = Outbox(store.engine)
    outbox.record([], [OutboundMessage(
        key=f"push-{u}", kind="notice", incident_id="INC-P", case_id="INC-P",
        cause="interface", recipient=f"tok-{u}", channel="push",
        due_at=T0 + timedelta(seconds=i), wanted_at=T0,
        body=f"【闪付】您尾号{1000 + i}的账户付款未成功，未扣款。（INC-P）",
        contact_token=tokens[u], language="zh-CN", tz="Asia/Shanghai")
        for i, u in enumerate(devices)])
    sub = Subscriber(mqtt_port, prefix)
    try:
        sender = AppriseSender(
            {"push": f"mqtt://127.0.0.1:{mqtt_port}/{prefix}/{{to}}?qos=1"}, vault.reveal)
        dispatcher = Dispatcher(outbox, Router(sender, None), backoff=0.01, max_backoff=0.1)
        assert dispatcher.drain(timeout=60)
        sub.wait_for(len(devices))
        time.sleep(0.3)  # anything more (a repeat) would arrive now
    finally:
        sub.stop()
        store.close()
    assert outbox.counts()["sent"] == len(devices) and dispatcher.stats.dead == 0
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for topic, payload in sub.got:
        by_topic.setdefault(topic, []).append(json.loads(payload))
    assert set(by_topic) == {f"{prefix}/{d}" for d in devices.values()}
    for u, d in devices.items():
        [doc] = by_topic[f"{prefix}/{d}"]  # exactly one per device
        assert doc["key"] == f"push-{u}" and doc["title"] == "闪付通知"
        assert doc["body"].startswith("【闪付】") and "INC-P" in doc["body"]
        others = frozenset(v for k, v in devices.items() if k != u) | frozenset(devices)
        assert not personal_data_in(doc["body"], known=others)
