"""A restart of ``tapshield serve`` in the middle of an outage: time to ready, time until
the live monitor has resumed, and whether anyone is paged again.

Feeds a simulated stream (40 minutes at ``--rate`` events/s; QR fails in Guangdong
from minute 15 to 25) into the service's inbox (``POST /v1/events``'s path), stops
the service five minutes into the outage (what SIGTERM does: drain, checkpoint),
starts it again on the same database and feeds the rest. Measured in the same
run: a **fresh** start on an empty database (the baseline: what a restart costs
without any state), and the **restart** with the monitor's checkpoint: time until
``ready`` (the tap book serving), until the monitor's leader has restored its
state, the checkpoint's size, and the pages (first pages of a wave) before and
after the restart.

    .venv/bin/python benchmarks/serve_restart.py [--rate 25] [--db URL] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=25.0)
    ap.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name(
        "results-serve_restart.json"))
    args = ap.parse_args()

    from tests.monitor.synth import Fault, events
    from tests.service.test_monitor import wire

    from tapshield.service.config import ServiceSettings
    from tapshield.service.runtime import ServiceRuntime

    frame = events(2400, rate=args.rate, faults=(
        Fault(900, 1500, {"channel": "qr", "region": "CN-GD"}, "technical", 0.8),), seed=13)
    rows = wire(frame)
    t_cut = int((frame["ts"][0].timestamp() + 1200) * 1000)
    cut = next(i for i, r in enumerate(rows) if r["ts"] >= t_cut)
    tmp = Path(tempfile.mkdtemp(prefix="tapshield-restart-"))

    def settings(name: str) -> ServiceSettings:
        url = args.db or f"sqlite:///{tmp / (name + '.db')}"
        return ServiceSettings(database_url=url, keys_file=tmp / "keys.json",
                               log_requests=False, monitor_poll_interval_s=0.1)

    def start(s: ServiceSettings) -> tuple[ServiceRuntime, float, float]:
        t0 = time.perf_counter()
        rt = ServiceRuntime(s)
        rt.start()
        ready = time.perf_counter() - t0
        assert rt.watch is not None and rt.watch.wait_leader(600.0)
        return rt, ready, time.perf_counter() - t0

    def feed(rt: ServiceRuntime, part: list[dict[str, Any]]) -> None:
        for i in range(0, len(part), 5000):
            rt.inbox.accept(part[i:i + 5000])
        w = rt.watch
        assert w is not None
        deadline = time.monotonic() + 600
        while w.position < rt.inbox.position() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)

    load0 = os.getloadavg()
    # warm the compiled kernels once so neither start pays the JIT
    warm, _, _ = start(settings("warm"))
    feed(warm, rows[:2000])
    warm.stop()

    fresh, fresh_ready, fresh_monitor = start(settings("fresh"))
    fresh.stop()

    s = settings("restart")
    rt, _, _ = start(s)
    feed(rt, rows[:cut])
    assert rt.watch is not None
    pages_before = rt.watch.pages
    open_before = [i["incident"]["id"] for i in rt.desk.find(status="open")[0]]
    t0 = time.perf_counter()
    rt.stop()
    stop_s = time.perf_counter() - t0
    rt2, ready, monitor = start(s)
    assert rt2.watch is not None
    restored = rt2.watch.restored
    ckpt = rt2.checkpoints.load("monitor")
    size = int(ckpt[1].get("bytes", 0)) if ckpt else 0
    still_open = [i["incident"]["id"] for i in rt2.desk.find(status="open")[0]]
    feed(rt2, rows[cut:])
    pages_after = rt2.watch.pages - pages_before
    alerts, _ = rt2.desk.alerts(limit=1000)
    firing_pages = sum(1 for a in alerts if a.get("notify") and a.get("state") == "firing")
    closed = [i["incident"]["id"] for i in rt2.desk.find(status="closed")[0]]
    rt2.stop()
    out = {
        "events": len(rows), "rate": args.rate, "database": "sqlite" if not args.db else args.db,
        "fresh": {"ready_s": round(fresh_ready, 3), "monitor_s": round(fresh_monitor, 3)},
        "restart": {"stop_s": round(stop_s, 3), "ready_s": round(ready, 3),
                    "monitor_restored_s": round(monitor, 3), "restored": restored,
                    "checkpoint_bytes": size},
        "incidents_open_before": open_before, "still_open_after_restart": still_open,
        "closed_at_end": closed, "pages_before": pages_before,
        "pages_after_restart": pages_after, "first_pages_in_alerts": firing_pages,
        "load_before": load0, "load_after": os.getloadavg(),
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
