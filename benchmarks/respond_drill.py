"""The response in every library drill: the scorecard's communication figures, tabulated.

For each library scenario (``tapshield drill --help``; all of them by
default): ``run_drill`` with the response stage (``tapshield.comms.drill``:
real local receivers, Apprise to an aiosmtpd SMTP server and an HTTP SMS
gateway, signed partner webhooks to an HTTP receiver that verifies them) and
the misfire guard, in a child process of its own (one drill's memory is
returned when it ends). Each scenario's row is appended to the results file
as it finishes, so a long run can be resumed (``--resume``) and watched.
``--table`` prints the markdown table of a results file (BENCHMARKS.md,
docs/respond.md).

    nice -n 10 python benchmarks/respond_drill.py [--scenarios a,b] [--resume]
    python benchmarks/respond_drill.py --table [results files]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results-respond.jsonl"


def one(name: str) -> dict[str, Any]:
    """Run one drill with the response stage (in this process)."""
    from tapshield.app.drill import run_drill
    from tapshield.comms.drill import respond_in_drill

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        r = run_drill(name, Path(d), failover=False, respond=respond_in_drill)
        c = dict(r.communication or {})
        c.pop("per_incident", None)
        return {"scenario": name, "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "loadavg": os.getloadavg(), "seconds": round(time.perf_counter() - t0, 1),
                "stage_seconds": {k: round(v, 1) for k, v in r.seconds.items()},
                "communication": c}


def _n(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else ("-" if v is None else str(v))


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| scenario | paging incidents | customers to notify "
            "| notices / follow-ups delivered | exactly one of each "
            "| duplicates (raw repeats) | personal data | quiet-hour messages "
            "| partner webhooks (rejected) | detection -> first notice / webhook (s) "
            "| all delivered | respond stage (s) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    out = []
    for r in rows:
        c = r["communication"]
        if not c:
            out.append(f"| {r['scenario']} | response not run ({r.get('error', '')}) "
                       "| | | | | | | | | | |")
            continue
        out.append(
            f"| {r['scenario']} | {_n(c.get('paging_incidents'))} "
            f"| {_n(c.get('customers_to_notify'))} "
            f"| {_n(c.get('notices_sent'))} / {_n(c.get('followups_sent'))} "
            f"| {_n(c.get('customers_exactly_one_notice_and_followup'))} "
            f"| {_n(c.get('duplicates'))} ({_n(c.get('receiver_repeats'))}) "
            f"| {_n(c.get('messages_with_personal_data'))} "
            f"| {_n(c.get('quiet_hour_messages'))} "
            f"| {_n(c.get('webhooks_sent'))} ({_n(c.get('webhooks_rejected'))}) "
            f"| {_n(c.get('first_notice_after_detection_s'))} / "
            f"{_n(c.get('first_webhook_after_detection_s'))} "
            f"| {'yes' if c.get('drained') else 'NO'} "
            f"| {_n(r.get('stage_seconds', {}).get('respond'))} |")
    return head + "\n".join(out) + "\n"


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _names() -> list[str]:
    from tapshield.simulate.model import scenario_names

    return list(scenario_names())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="all", help="comma-separated names, or all")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--resume", action="store_true", help="skip scenarios already in --out")
    ap.add_argument("--table", nargs="*", type=Path,
                    help="print the table of these results files (default: --out)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one), default=str), flush=True)
        return
    if args.table is not None:
        latest = {r["scenario"]: r for f in (args.table or [args.out]) for r in load(f)}
        rows = list(latest.values())  # a scenario run twice: its last row
        order = {n: i for i, n in enumerate(_names())}
        rows.sort(key=lambda r: order.get(r["scenario"], len(order)))
        print(table(rows), end="")
        return
    names = _names() if args.scenarios == "all" else args.scenarios.split(",")
    done = {r["scenario"] for r in load(args.out)} if args.resume else set()
    if not args.resume:
        args.out.write_text("")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for name in names:
        if name in done:
            continue
        p = subprocess.run([sys.executable, __file__, "--one", name], env=env,
                           capture_output=True, text=True, check=False)
        if p.returncode == 0:
            row = json.loads(p.stdout.strip().splitlines()[-1])
        else:
            row = {"scenario": name, "communication": None,
                   "error": (p.stderr.strip().splitlines() or ["?"])[-1][:200]}
        with args.out.open("a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        c = row.get("communication") or {}
        print(f"{name}: {c.get('customers_to_notify')} to notify, notices "
              f"{c.get('notices_sent')}, follow-ups {c.get('followups_sent')}, exactly "
              f"{c.get('customers_exactly_one_notice_and_followup')}, dup "
              f"{c.get('duplicates')}, pii {c.get('messages_with_personal_data')}, quiet "
              f"{c.get('quiet_hour_messages')}, webhooks {c.get('webhooks_sent')}, drained "
              f"{c.get('drained')} {row.get('error', '')}", flush=True)
    print(table(load(args.out)), end="")


if __name__ == "__main__":
    main()
