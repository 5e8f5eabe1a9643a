"""The transparency log's costs: appending, proving, verifying (issue 18).

1. **Append**: ``--rows`` records (pipeline-like decisions) appended through
   ``AuditLog.append_batch`` in batches of ``--batch``, against the baseline of
   inserting the *same rows* into a plain table of the same shape, primary key and
   index with the same driver path (COPY on PostgreSQL, executemany on SQLite),
   measured in the same run: the ratio is what the canonical form, the Merkle
   tree, the tiles, the lock and the heads cost.
2. **Verify**: ``tapshield audit verify``'s work (``audit.verify.verify``) over
   the appended log, reported per million records.
3. **Inclusion proofs at ``--proof-leaves`` (10 M)**: a tree of that size is
   built with the log's own ``TileBuilder`` from synthetic leaf hashes and its
   tiles stored in ``audit_tiles`` (exactly what appends store; the 10 M entry
   rows themselves are not needed to serve a proof and are not written), then
   ``AuditLog.inclusion_path`` is timed for random leaves, cold (a new log
   object, nothing cached) and warm (full tiles cached), and every proof is
   checked against the root.

    .venv/bin/python benchmarks/audit_log.py [--rows 1000000] [--batch 5000]
        [--proof-leaves 10000000] [--proofs 2000] [--pg URL] [--only sqlite,postgresql]
        [--out benchmarks/results-audit_log.json]

PostgreSQL runs in a schema of its own (dropped at the end); SQLite in a
temporary directory. Prints JSON; the load average is recorded with it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tapshield.audit import merkle
from tapshield.audit.checkpoint import Signer
from tapshield.audit.log import AuditLog, Entry, HeadPolicy, Record
from tapshield.audit.tiles import WIDTH, TileBuilder
from tapshield.audit.verify import verify
from tapshield.storage import Store
from tapshield.storage.audit import SqlAuditStore, _upsert_tiles, insert_entries
from tapshield.storage.tables import JsonDoc, UTCDateTime

ORIGIN = "bench.example/audit"


def records(n: int, seed: int = 18) -> list[Record]:
    """Decisions shaped like the pipeline's: pages and incident transitions."""
    rng = random.Random(seed)
    kinds = ("alert.firing", "alert.escalated", "incident.opened", "incident.escalated",
             "incident.closed", "silence.created", "rule.changed")
    out = []
    for i in range(n):
        k = kinds[rng.randrange(len(kinds))]
        out.append(Record(k, "tapshield/pipeline", f"INC-20261205-{i % 5000:04d}", {
            "level": rng.randrange(1, 5), "cause": "interface",
            "scope": [{"channel": "nfc", "region": "CN-GD"}],
            "failed_payments": rng.randrange(10_000), "lost_fen": rng.randrange(10**9),
            "confidence": "0.93"}))
    return out


def _backend(kind: str, pg: str, tmp: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'audit-{uuid.uuid4().hex[:6]}.db'}", None
    schema = f"bench_audit_{uuid.uuid4().hex[:10]}"
    eng = sa.create_engine(pg)
    with eng.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg else "?"

    def drop() -> None:
        with eng.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        eng.dispose()

    return f"{pg}{sep}options=-csearch_path%3D{schema}", drop


def bench_append(url: str, recs: list[Record], batch: int) -> dict[str, Any]:
    store = Store(url)
    eng = store.engine
    # The baseline: a plain table of the same shape, primary key and index as audit_log.
    md = sa.MetaData()
    sa.Table("plain_log", md,
             sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                       primary_key=True, autoincrement=False),
             sa.Column("ts", UTCDateTime, nullable=False),
             sa.Column("kind", sa.String(64), nullable=False),
             sa.Column("actor", sa.String(128), nullable=False),
             sa.Column("subject", sa.String(256), nullable=False),
             sa.Column("payload", JsonDoc, nullable=False),
             sa.Index("ix_plain_log_subject", "subject"))
    md.create_all(eng)
    signer = Signer.generate(ORIGIN)
    log = AuditLog(SqlAuditStore(eng), signer=signer,
                   policy=HeadPolicy(every_entries=10_000, every_seconds=60))
    ts = datetime.now(UTC)
    plain_rows = [Entry(i, ts, r.kind, r.actor, r.subject, dict(r.payload or {}))
                  for i, r in enumerate(recs)]

    # alternate halves so a change of machine load hits both alike
    half = len(recs) // 2
    t_plain = t_log = c_plain = c_log = 0.0
    for part in (slice(0, half), slice(half, None)):
        rs, ps = recs[part], plain_rows[part]
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(ps), batch):
            with eng.begin() as conn:
                insert_entries(conn, ps[i : i + batch], table="plain_log")
        t_plain += time.perf_counter() - t0
        c_plain += time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(rs), batch):
            log.append_batch(rs[i : i + batch])
        t_log += time.perf_counter() - t0
        c_log += time.process_time() - c0
    t0 = time.perf_counter()
    log.sign_head()
    t_log += time.perf_counter() - t0
    n = len(recs)
    t0, c0 = time.perf_counter(), time.process_time()
    report = verify(SqlAuditStore(eng), [signer.verifier()], origin=ORIGIN)
    t_verify, c_verify = time.perf_counter() - t0, time.process_time() - c0
    assert report.ok, report.findings
    heads = len(SqlAuditStore(eng).heads())
    store.close()
    return {
        "rows": n, "batch": batch,
        "log_records_per_s": round(n / t_log), "plain_rows_per_s": round(n / t_plain),
        "ratio_log_to_plain": round(t_plain / t_log, 3),
        # CPU time of this process only (the client; PostgreSQL's server work is not in it):
        # what a busy shared machine cannot inflate as much as wall time
        "log_cpu_records_per_s": round(n / c_log), "plain_cpu_rows_per_s": round(n / c_plain),
        "heads_signed": heads,
        "verify_s": round(t_verify, 2), "verify_s_per_million": round(t_verify / n * 1e6, 2),
        "verify_cpu_s_per_million": round(c_verify / n * 1e6, 2),
    }


def bench_proofs(url: str, leaves: int, proofs: int, seed: int = 7) -> dict[str, Any]:
    store = Store(url)
    eng = store.engine
    b = TileBuilder()
    t0 = time.perf_counter()
    chunk = 1 << 16
    for start in range(0, leaves, chunk):
        n = min(chunk, leaves - start)
        b.push(merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(start, start + n))
        full = [t for t in b.drain() if t.width == WIDTH]
        if full:
            with eng.begin() as conn:
                _upsert_tiles(conn, full)
    with eng.begin() as conn:
        _upsert_tiles(conn, b.edge())
        conn.exec_driver_sql(f"UPDATE audit_tree SET size = {leaves}")
    build_s = time.perf_counter() - t0
    log = AuditLog(SqlAuditStore(eng))
    root = log.root(leaves)
    rng = random.Random(seed)
    picks = [rng.randrange(leaves) for _ in range(proofs)]

    cpu: list[float] = []

    def timed(lg: AuditLog) -> list[float]:
        out = []
        c0 = time.process_time()
        for seq in picks:
            a = time.perf_counter_ns()
            path = lg.inclusion_path(seq, leaves)
            out.append((time.perf_counter_ns() - a) / 1e6)
            assert merkle.verify_inclusion(seq, leaves, merkle.leaf_hash(seq.to_bytes(8, "big")),
                                           path, root)
        cpu.append((time.process_time() - c0) / len(picks) * 1000)  # incl. the check
        return out

    cold = timed(AuditLog(SqlAuditStore(eng)))  # a fresh log: every tile read from the db
    warm = timed(log)
    warm = timed(log)
    store.close()

    def q(xs: list[float], p: float) -> float:
        return round(sorted(xs)[min(len(xs) - 1, int(p * len(xs)))], 3)

    return {"leaves": leaves, "build_s": round(build_s, 1), "proofs": proofs,
            "path_length": len(log.inclusion_path(picks[0], leaves)),
            "cold_ms_median": round(statistics.median(cold), 3), "cold_ms_p99": q(cold, 0.99),
            "warm_ms_median": round(statistics.median(warm), 3), "warm_ms_p99": q(warm, 0.99),
            # client CPU per proof (serve + verify), cold then warm: load-independent-ish
            "cpu_ms_per_proof_cold": round(cpu[0], 3), "cpu_ms_per_proof_warm": round(cpu[-1], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--proof-leaves", type=int, default=10_000_000)
    ap.add_argument("--proofs", type=int, default=2000)
    ap.add_argument("--pg", default=os.environ.get(
        "TAPSHIELD_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/postgres"))
    ap.add_argument("--only", default="sqlite,postgresql")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: append,proofs")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    recs = records(args.rows) if "append" not in skip else []
    result: dict[str, Any] = {"loadavg_before": os.getloadavg(), "cpus": os.cpu_count(),
                              "args": vars(args) | {"out": str(args.out)}}
    with tempfile.TemporaryDirectory(prefix="tapshield-audit-bench-") as d:
        for kind in args.only.split(","):
            part: dict[str, Any] = {}
            if "append" not in skip:
                url, drop = _backend(kind, args.pg, Path(d))
                try:
                    part["append"] = bench_append(url, recs, args.batch)
                finally:
                    if drop:
                        drop()
                print(json.dumps({kind: part}), flush=True)
            if "proofs" not in skip:
                url, drop = _backend(kind, args.pg, Path(d))
                try:
                    part["proofs"] = bench_proofs(url, args.proof_leaves, args.proofs)
                finally:
                    if drop:
                        drop()
                print(json.dumps({kind: part}), flush=True)
            result[kind] = part
    result["loadavg_after"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
