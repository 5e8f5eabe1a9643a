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
average before and after is printed: the machine may be shared. The server's
CPU time per request (its processes, from /proc) is reported too: it depends
much less on what else the machine runs than throughput and latency do.

    .venv/bin/python benchmarks/serve_authorize.py [--workers 2] [--connections 32]
        [--seconds 10] [--rounds 3] [--db URL] [--server uvicorn[,granian]] [--out FILE]

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


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    todo, total = [pid], 0.0
    while todo:
        cur = todo.pop()
        total += stats.get(cur, (0, 0.0))[1]
        todo.extend(c for c, (ppid, _) in stats.items() if ppid == cur)
    return total


def run_wrk(url: str, seconds: float, connections: int, threads: int,
            script: Path | None, server_pid: int | None = None) -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    cpu0 = tree_cpu_s(server_pid) if server_pid else 0.0
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    cpu = tree_cpu_s(server_pid) - cpu0 if server_pid else float("nan")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    done = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50_ms": pct["50"], "p90_ms": pct["90"], "p99_ms": pct["99"],
            "server_cpu_us_per_request": cpu / done * 1e6,
            "non_2xx": float(errors.group(1)) if errors else 0.0,
            "socket_errors": 1.0 if sock else 0.0}


class Server:
    """One server under test: ``tapshield serve`` (uvicorn), or the same application
    under granian, on its own database and port."""

    def __init__(self, kind: str, workers: int, db: str | None, request_log: bool) -> None:
        self.kind = kind
        self.work = Path(tempfile.mkdtemp(prefix=f"tapshield-bench-{kind}-"))
        self.db = db or f"sqlite:///{self.work / 'tapshield.db'}"
        cfg: dict[str, Any] = {"keys_file": "keys.json", "workers": workers,
                               "log_requests": request_log, "database_url": self.db,
                               "limits": {"rate_limits": {"gateway": {"per_second": 1e9,
                                                                      "burst": 1e9}}}}
        conf = self.work / "serve.yaml"
        conf.write_text(json.dumps(cfg))  # JSON is YAML
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAPSHIELD_")}
        self.key = subprocess.run(
            [sys.executable, "-m", "tapshield", "keys", "create", "--role", "gateway",
             "--config", str(conf)], cwd=self.work, env=env, capture_output=True, text=True,
            check=True).stdout.strip().splitlines()[-1]
        self.script = self.work / "authorize.lua"
        self.script.write_text(LUA_AUTHORIZE.replace("KEY", self.key))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        if kind == "uvicorn":
            cmd = [sys.executable, "-m", "tapshield", "serve", "--config", str(conf),
                   "--port", str(port)]
        else:
            granian = Path(sys.executable).with_name("granian")
            if not granian.exists():
                sys.exit("granian not installed: .venv/bin/pip install granian")
            subprocess.run([sys.executable, "-c", "import sys; from tapshield.service.runtime "
                            "import migrate; migrate(sys.argv[1])", self.db], check=True,
                           env=env)
            env["TAPSHIELD_CONFIG"] = str(conf)
            if workers > 1:
                (self.work / "metrics").mkdir()
                env["PROMETHEUS_MULTIPROC_DIR"] = str(self.work / "metrics")
            cmd = [str(granian), "--interface", "asgi", "--factory", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", str(workers), "--loop", "uvloop",
                   "--no-log", "tapshield.service.app:create_app_from_env"]
        self.log = open(self.work / "serve.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.work, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, workers: int) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 180:
            if self.proc.poll() is not None:
                sys.exit(f"{self.kind} exited; see {self.work / 'serve.log'}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    time.sleep(1.0 if workers == 1 else 5.0)  # every worker up
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        sys.exit(f"{self.kind} did not become ready; see {self.work / 'serve.log'}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = -9
        self.log.close()
        shutil.rmtree(self.work, ignore_errors=True)
        return code


def summary(auth: list[dict[str, float]], bare: list[dict[str, float]]) -> dict[str, Any]:
    def med(rows: list[dict[str, float]], k: str) -> float:
        return float(statistics.median(r[k] for r in rows))

    res: dict[str, Any] = {
        "authorize_rps": med(auth, "rps"), "authorize_p50_ms": med(auth, "p50_ms"),
        "authorize_p99_ms": med(auth, "p99_ms"),
        "authorize_non_2xx": sum(r["non_2xx"] for r in auth),
        "bare_rps": med(bare, "rps"), "bare_p50_ms": med(bare, "p50_ms"),
        "bare_p99_ms": med(bare, "p99_ms"),
        "authorize_server_cpu_us_per_request": med(auth, "server_cpu_us_per_request"),
        "bare_server_cpu_us_per_request": med(bare, "server_cpu_us_per_request"),
        "rounds_authorize": auth, "rounds_bare": bare,
    }
    res["ratio_to_bare"] = res["authorize_rps"] / res["bare_rps"]
    res["goals_met"] = bool(res["authorize_rps"] >= 3000 and res["authorize_p99_ms"] < 20
                            and res["ratio_to_bare"] >= 0.5)
    return res


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
    ap.add_argument("--server", default="uvicorn",
                    help="uvicorn (`tapshield serve` as shipped), granian (the same app under "
                    "granian: pip install granian), or both, comma-separated: each round then "
                    "measures every server in turn, so they share the machine's conditions")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    kinds = [k.strip() for k in args.server.split(",") if k.strip()]
    if not kinds or any(k not in ("uvicorn", "granian") for k in kinds):
        sys.exit("--server: uvicorn, granian or both")
    servers = {k: Server(k, args.workers, args.db, not args.no_request_log) for k in kinds}
    results: dict[str, Any] = {}
    try:
        for srv in servers.values():
            srv.wait_ready(args.workers)
        load_before = loadavg()
        print(f"servers: {', '.join(kinds)}; {args.workers} worker(s) each; db "
              f"{args.db or 'sqlite (temp)'}; wrk {args.threads} thread(s), "
              f"{args.connections} connections; load average {load_before}", flush=True)
        for srv in servers.values():
            run_wrk(srv.url + "/v1/authorize", args.warmup, args.connections, args.threads,
                    srv.script)
            run_wrk(srv.url + "/healthz", args.warmup, args.connections, args.threads, None)
        bare: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        auth: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        for r in range(args.rounds):
            for k, srv in servers.items():
                bare[k].append(run_wrk(srv.url + "/healthz", args.seconds, args.connections,
                                       args.threads, None, srv.proc.pid))
                auth[k].append(run_wrk(srv.url + "/v1/authorize", args.seconds,
                                       args.connections, args.threads, srv.script,
                                       srv.proc.pid))
                b, a = bare[k][-1], auth[k][-1]
                print(f"round {r + 1} {k}: bare {b['rps']:,.0f}/s p99 {b['p99_ms']:.1f} ms "
                      f"{b['server_cpu_us_per_request']:.0f} us cpu/req | authorize "
                      f"{a['rps']:,.0f}/s p50 {a['p50_ms']:.1f} ms p99 {a['p99_ms']:.1f} ms "
                      f"{a['server_cpu_us_per_request']:.0f} us cpu/req non-2xx "
                      f"{a['non_2xx']:.0f}", flush=True)
        load_after = loadavg()
    finally:
        codes = {k: srv.stop() for k, srv in servers.items()}
    for k in kinds:
        res = summary(auth[k], bare[k])
        res.update(server=k, exit_code=codes[k])
        results[k] = res
        print(f"{k}: authorize {res['authorize_rps']:,.0f}/s (p50 {res['authorize_p50_ms']:.1f}"
              f" ms, p99 {res['authorize_p99_ms']:.1f} ms) = {res['ratio_to_bare']:.2f}x bare "
              f"{res['bare_rps']:,.0f}/s; server CPU per request "
              f"{res['authorize_server_cpu_us_per_request']:.0f} us vs "
              f"{res['bare_server_cpu_us_per_request']:.0f} us; goals "
              f"{'met' if res['goals_met'] else 'NOT met'}; exit {codes[k]}")
    print(f"load average {load_before} -> {load_after} on {os.cpu_count()} CPUs")
    if args.out:
        args.out.write_text(json.dumps({
            "workers": args.workers, "connections": args.connections, "seconds": args.seconds,
            "rounds": args.rounds, "db": args.db or "sqlite", "request_log":
            not args.no_request_log, "load_before": load_before, "load_after": load_after,
            "cpus": os.cpu_count(), "servers": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
