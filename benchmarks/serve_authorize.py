"""``POST /v1/authorize`` under load, next to a constant endpoint of the same stack.

Starts ``tapshield serve`` (default config: SQLite in a temporary directory,
JSON request logs on, written to a file) and drives it with ``wrk`` (a C load
generator, Debian package ``wrk``) on the same machine:

* **authorize**: every request is a new tap (unique ``payment_id`` and
  ``attempt_id``, generated in wrk's Lua), so every answer is decided,
  routed and committed to the tap book before it is returned;
* **bare**: ``GET /healthz``, which returns a constant through the same
  server, middleware, logging and metrics: the framework's floor.

Both are run alternately (``--rounds`` each, medians reported) in the same
server process(es), closed loop with ``--connections`` connections. The load
average before and after is printed: the machine may be shared.

    .venv/bin/python benchmarks/serve_authorize.py [--workers 2] [--connections 32]
        [--seconds 10] [--rounds 3] [--db URL] [--server uvicorn|granian] [--out FILE]

Goals (issue 13): at least 3,000 decisions/s with p99 under 20 ms, and at least
0.5x the bare endpoint's throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

LUA_AUTHORIZE = r"""
local counter = 0
local tid = 0
function setup(thread)
  tid = tid + 1
  thread:set("tid", tid)
end
function init(args)
  math.randomseed(os.time() + tid * 7919)
  run = tostring(math.random(1, 2000000000))
end
request = function()
  counter = counter + 1
  local id = run .. "-" .. tid .. "-" .. counter
  local body = '{"payment_id":"p' .. id .. '","attempt_id":"a' .. id ..
    '","user_id":"u' .. (counter % 5000) .. '","device_id":"d' .. (counter % 7000) ..
    '","merchant_id":"m' .. (counter % 300) .. '","amount":"128.50","region":"CN-GD",' ..
    '"carrier":"china_mobile","os":"android","app_version":"5.2.1"}'
  return wrk.format("POST", "/v1/authorize",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer KEY"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text.strip())
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, seconds: float, connections: int, threads: int,
            script: Path | None) -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": pct["50"], "p90_ms": pct["90"], "p99_ms": pct["99"],
            "non_2xx": float(errors.group(1)) if errors else 0.0,
            "socket_errors": 1.0 if sock else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    ap.add_argument("--no-request-log", action="store_true",
                    help="turn the per-request JSON log off (default: on, as in production)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    ap.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn",
                    help="uvicorn: `tapshield serve` as shipped; granian: the same application "
                    "under granian (pip install granian), for the comparison")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="tapshield-bench-"))
    cfg: dict[str, Any] = {"keys_file": "keys.json", "workers": args.workers,
                           "log_requests": not args.no_request_log,
                           "limits": {"rate_limits": {"gateway": {"per_second": 1e9,
                                                                  "burst": 1e9}}}}
    if args.db:
        cfg["database_url"] = args.db
    (work / "serve.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPSHIELD_")}
    key = subprocess.run([sys.executable, "-m", "tapshield", "keys", "create", "--role",
                          "gateway", "--config", str(work / "serve.yaml")], cwd=work, env=env,
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    script = work / "authorize.lua"
    script.write_text(LUA_AUTHORIZE.replace("KEY", key))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "tapshield", "serve", "--config",
                             str(work / "serve.yaml"), "--port", str(port)], cwd=work, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 180:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            sys.exit("the service did not become ready; see " + str(work / "serve.log"))
        time.sleep(1.0 if args.workers == 1 else 3.0)  # let every worker finish starting
        load_before = loadavg()
        print(f"server: {args.server}, {args.workers} worker(s), db {args.db or 'sqlite (temp)'}; "
              f"wrk {args.threads} thread(s), {args.connections} connections; "
              f"load average {load_before}", flush=True)
        run_wrk(url + "/v1/authorize", args.warmup, args.connections, args.threads, script)
        run_wrk(url + "/healthz", args.warmup, args.connections, args.threads, None)
        bare: list[dict[str, float]] = []
        auth: list[dict[str, float]] = []
        for r in range(args.rounds):
            bare.append(run_wrk(url + "/healthz", args.seconds, args.connections,
                                args.threads, None))
            auth.append(run_wrk(url + "/v1/authorize", args.seconds, args.connections,
                                args.threads, script))
            print(f"round {r + 1}: bare {bare[-1]['rps']:,.0f}/s p99 {bare[-1]['p99_ms']:.1f} ms"
                  f" | authorize {auth[-1]['rps']:,.0f}/s p50 {auth[-1]['p50_ms']:.1f} ms "
                  f"p99 {auth[-1]['p99_ms']:.1f} ms non-2xx {auth[-1]['non_2xx']:.0f}",
                  flush=True)
        load_after = loadavg()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        log.close()

    def med(rows: list[dict[str, float]], k: str) -> float:
        return float(statistics.median(r[k] for r in rows))

    res = {
        "server": args.server, "workers": args.workers, "connections": args.connections,
        "seconds": args.seconds,
        "rounds": args.rounds, "db": args.db or "sqlite", "request_log": not args.no_request_log,
        "authorize_rps": med(auth, "rps"), "authorize_p50_ms": med(auth, "p50_ms"),
        "authorize_p99_ms": med(auth, "p99_ms"), "authorize_non_2xx": sum(
            r["non_2xx"] for r in auth),
        "bare_rps": med(bare, "rps"), "bare_p50_ms": med(bare, "p50_ms"),
        "bare_p99_ms": med(bare, "p99_ms"),
        "load_before": load_before, "load_after": load_after, "exit_code": code,
        "cpus": os.cpu_count(),
    }
    res["ratio_to_bare"] = res["authorize_rps"] / res["bare_rps"]
    goals = (res["authorize_rps"] >= 3000 and res["authorize_p99_ms"] < 20
             and res["ratio_to_bare"] >= 0.5)
    print(json.dumps(res, indent=1))
    print(f"authorize {res['authorize_rps']:,.0f}/s (p50 {res['authorize_p50_ms']:.1f} ms, "
          f"p99 {res['authorize_p99_ms']:.1f} ms) = {res['ratio_to_bare']:.2f}x bare "
          f"{res['bare_rps']:,.0f}/s; goals {'met' if goals else 'NOT met'}; "
          f"load {load_before} -> {load_after}; server exit {code}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
