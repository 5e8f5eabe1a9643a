"""The response in drills: communication figures per library scenario, and dispatch speed.

For each scenario: ``run_drill`` with the response stage (``tapshield.comms.drill``:
real local receivers, Apprise to SMTP and an HTTP SMS gateway, signed partner
webhooks) and the misfire guard; records the scorecard's communication figures.

Dispatch speed: N Apprise SMS notices through the outbox to a local HTTP gateway
with the default 8 workers against 1 worker (the baseline), in the same run.

    nice -n 10 python benchmarks/respond_drill.py [--scenarios a,b] [--messages 300]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine

from tapshield.app.drill import run_drill
from tapshield.comms.dispatch import Dispatcher
from tapshield.comms.drill import respond_in_drill
from tapshield.comms.outbox import Outbox
from tapshield.comms.receivers import LocalHTTP
from tapshield.comms.senders import AppriseSender, Router
from tapshield.respond.responder import OutboundMessage

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 24, 3, 41, tzinfo=UTC)


def dispatch_speed(n: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as d, LocalHTTP() as gw:
        outbox = Outbox(create_engine(f"sqlite:///{d}/o.sqlite"))
        outbox.record([], [OutboundMessage(
            key=f"k{i}", kind="notice", incident_id="INC", case_id="INC", cause="interface",
            recipient=f"u{i}", channel="sms", due_at=T0 + timedelta(seconds=i), wanted_at=T0,
            body="【闪付】测试", contact_token=f"t{i}") for i in range(n)])
        sender = AppriseSender({"sms": f"json://127.0.0.1:{gw.port}/sms?:to={{to}}"},
                               reveal=lambda t: "+86138" + t[1:].zfill(8))
        d_ = Dispatcher(outbox, Router(sender, None), workers=workers)
        t0 = time.perf_counter()
        assert d_.drain(timeout=600)
        secs = time.perf_counter() - t0
        assert gw.ledger.arrivals == n
        return n / secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="nfc-regional-outage,risk-rule-misfire")
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results-respond.json")
    args = ap.parse_args()
    load0 = os.getloadavg()
    speed = {"messages": args.messages, "per_s_8_workers": round(dispatch_speed(
        args.messages, 8), 1), "per_s_1_worker_baseline": round(dispatch_speed(
            args.messages, 1), 1)}
    speed["ratio"] = round(speed["per_s_8_workers"] / speed["per_s_1_worker_baseline"], 2)
    print(json.dumps(speed), flush=True)
    rows = []
    for name in args.scenarios.split(","):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            r = run_drill(name, Path(d), failover=False, respond=respond_in_drill)
            c = dict(r.communication or {})
            c.pop("per_incident", None)
            row = {"scenario": name, "seconds": round(time.perf_counter() - t0, 1),
                   "stage_seconds": {k: round(v, 1) for k, v in r.seconds.items()},
                   "misfire_guard": [g["summary"] for g in r.misfire_guard or []],
                   "communication": c}
            print(json.dumps(row, default=str), flush=True)
            rows.append(row)
    doc = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
           "loadavg_start": load0, "loadavg_end": os.getloadavg(), "dispatch": speed,
           "drills": rows}
    args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
