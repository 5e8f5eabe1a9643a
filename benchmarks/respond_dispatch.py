"""Delivery speed of the response: customer notices through the outbox to real local receivers.

What a drill's response stage does, at a chosen size: N customers (the drill's
made-up contacts: 70 % SMS to an HTTP gateway through Apprise ``json://``, 30 %
e-mail to an aiosmtpd server through Apprise ``mailto://``), contacts sealed
in the privacy vault and revealed at send time, one notice each recorded in
the transactional outbox (SQLite, like the drill) and drained by the
dispatcher with 8 workers. Every message is checked on the receivers: N
applied, 0 repeats.

The baseline in the same run is the same script run against another source
tree (``--baseline-src``, e.g. a checkout of main before the change): the
script uses only what both trees have. This tree runs twice: with the
receivers in the dispatcher's process (the drill's default, like the
baseline) and in a process of their own.

    nice -n 10 python benchmarks/respond_dispatch.py --messages 600 \\
        --baseline-src /path/to/old/src
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

T0 = datetime(2026, 11, 24, 3, 41, tzinfo=UTC)


def measure(n: int, workers: int, receivers: str = "process") -> dict[str, Any]:
    """One run in this process (whatever ``tapshield`` is on the path)."""
    from tapshield.comms import drill as cd
    from tapshield.comms.dispatch import Dispatcher
    from tapshield.comms.outbox import Outbox
    from tapshield.comms.senders import AppriseSender, Router
    from tapshield.respond.responder import OutboundMessage

    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{d}/respond.sqlite"
        opener = getattr(cd, "open_outbox_db", None)
        if opener is not None:
            store, engine = opener(url)
        else:  # the tree before the change
            from tapshield.storage import Store

            store = Store(url)
            engine = store.engine
        if receivers == "process":
            targets = cd.LocalTargets.start(separate_process=True)
        else:
            targets = cd.LocalTargets.start()  # in-process: the drill's default
        try:
            vault = cd._vault(engine, Path(d) / "keys")
            directory = cd.SimulatedDirectory(vault)
            msgs = []
            for i in range(n):
                rec = directory(f"u{i}")
                assert rec is not None
                msgs.append(OutboundMessage(
                    key=f"bench-{i}", kind="notice", incident_id="INC-B", case_id="INC-B",
                    cause="interface", recipient=rec.user_id, channel=rec.channel,
                    due_at=T0 + timedelta(milliseconds=i), wanted_at=T0,
                    body=f"【闪付】您尾号{rec.account_last4}的账户付款未成功，未扣款。（INC-B）",
                    contact_token=rec.contact_token, language=rec.language, tz=rec.tz))
            outbox = Outbox(engine)
            outbox.record([], msgs)
            sender = Router(AppriseSender(targets.apprise_targets(), vault.reveal), None)
            disp = Dispatcher(outbox, sender, workers=workers, backoff=0.05, max_backoff=1.0)
            t0 = time.perf_counter()
            drained = disp.drain(timeout=300)
            secs = time.perf_counter() - t0
            getattr(sender.customers, "close", lambda: None)()
            getattr(targets, "collect", lambda: None)()
            applied = len(targets.gateway.ledger.applied) + len(targets.smtp.ledger.applied)
            repeats = targets.gateway.ledger.repeats + targets.smtp.ledger.repeats
        finally:
            targets.stop()
            store.close()
    return {"messages": n, "workers": workers, "receivers": receivers, "drained": drained,
            "seconds": round(secs, 2),
            "per_s": round(n / secs, 1), "applied": applied, "repeats": repeats,
            "email": sum(1 for i in range(n) if cd.simulated_contact(f"u{i}").channel ==
                         "email")}


def _child(src: str, n: int, workers: int, receivers: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run([sys.executable, __file__, "--child", "--messages", str(n),
                          "--workers", str(workers), "--receivers", receivers],
                         env=env, check=True,
                         capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=600)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--baseline-src", help="source tree of the baseline (same run)")
    ap.add_argument("--rounds", type=int, default=1, help="alternate new/baseline this often")
    ap.add_argument("--receivers", default="inproc,process",
                    help="where the receivers run: inproc (the drill's default), process")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.messages, args.workers, args.receivers)), flush=True)
        return
    here = str(Path(__file__).resolve().parents[1] / "src")
    load0 = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        for mode in args.receivers.split(","):
            rows.append({"tree": "this", **_child(here, args.messages, args.workers, mode)})
            print(json.dumps(rows[-1]), flush=True)
        if args.baseline_src:
            old = _child(args.baseline_src, args.messages, args.workers, "inproc")
            rows.append({"tree": "baseline", **old})
            print(json.dumps(rows[-1]), flush=True)
    doc: dict[str, Any] = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                           "loadavg_start": load0, "loadavg_end": os.getloadavg(),
                           "runs": rows}
    if args.baseline_src:
        base = sum(r["per_s"] for r in rows if r["tree"] == "baseline")
        doc["ratio"] = {}
        for mode in args.receivers.split(","):
            this = sum(r["per_s"] for r in rows if r["tree"] == "this"
                       and r["receivers"] == mode)
            doc["ratio"][mode] = round(this / max(base, 1e-9), 2)
        print(f"ratio this/baseline (receivers: ratio): {doc['ratio']}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
