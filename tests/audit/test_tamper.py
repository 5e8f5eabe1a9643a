"""The done-when of issue 18: every kind of change to ``audit_log`` is caught by
``tapshield audit verify`` (exit 1, the first bad entry named); an untouched log
verifies (exit 0). On SQLite and on the real PostgreSQL.

Each test builds a log of 1,500 records appended in batches of 50, with a head
signed every 250 entries and every head also kept in a witness file (the partner's
copy), then plays an insider with full database access.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tapshield.audit import merkle
from tapshield.audit.checkpoint import Checkpoint, Signer, sign_note
from tapshield.audit.log import AuditLog, Entry, HeadPolicy, Record
from tapshield.audit.tiles import TileBuilder
from tapshield.audit.witness import append_witness
from tapshield.cli import app
from tapshield.storage import Store
from tapshield.storage.audit import SqlAuditStore, insert_entries

runner = CliRunner()
N = 1500
EVERY = 250
ORIGIN = "bank.example/tapshield-audit"


@dataclass
class Log:
    url: str
    store: Store
    vkey: Path
    witness: Path
    signer: Signer

    def verify(self, *extra: str) -> tuple[int, dict[str, object]]:
        res = runner.invoke(app, ["audit", "verify", "--db", self.url, "--key", str(self.vkey),
                                  "--json", *extra])
        assert res.exit_code in (0, 1), res.output
        return res.exit_code, json.loads(res.output)

    def sql(self, text: str, **params: object) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(sa.text(text), params)


def _clock() -> Iterator[datetime]:
    t = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    while True:
        t += timedelta(milliseconds=250)
        yield t


@pytest.fixture
def log(db_url: str, tmp_path: Path) -> Iterator[Log]:
    store = Store(db_url)
    signer = Signer.generate(ORIGIN)
    vkey = tmp_path / "audit.vkey"
    vkey.write_text(signer.verifier().vkey() + "\n")
    witness = tmp_path / "partner-heads.jsonl"
    ticks = _clock()
    audit = AuditLog(SqlAuditStore(store.engine), signer=signer,
                     policy=HeadPolicy(every_entries=EVERY, every_seconds=1e9),
                     on_head=lambda note: append_witness(witness, note),
                     clock=lambda: next(ticks))
    for start in range(0, N, 50):
        audit.append_batch([
            Record("incident.opened" if i % 7 else "alert.page", "pipeline", f"INC-{i:05d}",
                   {"level": i % 4, "lost_fen": i * 1001, "scope": [{"channel": "nfc"}]})
            for i in range(start, start + 50)])
    assert audit.sign_head() is not None  # the last 200 entries
    assert audit.sign_head() is None  # nothing new to sign
    yield Log(db_url, store, vkey, witness, signer)
    store.close()


def _first_bad(report: dict[str, object]) -> object:
    return report["first_bad_entry"]


def _rebuild_tree(store: Store) -> None:
    """What a careful insider does after editing rows: recompute every stored hash."""
    audit_store = SqlAuditStore(store.engine)
    b = TileBuilder()
    for e in audit_store.entries():
        b.push([merkle.leaf_hash(e.leaf())])
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_tiles"))
        tiles = [t for t in b.drain() if t.width == 256] + b.edge()
        from tapshield.storage.audit import _upsert_tiles

        _upsert_tiles(conn, tiles)
        conn.execute(sa.text("UPDATE audit_tree SET size = :n"), {"n": b.size})


def test_an_untouched_log_verifies(log: Log) -> None:
    code, report = log.verify("--witness", str(log.witness))
    assert code == 0, report
    assert report["ok"] is True and report["rows"] == N
    # heads at 50 (the first batch), 300, 550, ..., 1,300, and 1,500 signed at the end
    assert report["heads"] == report["witness_heads"] == N // EVERY + 1
    assert report["newest_signed_size"] == N


@pytest.mark.parametrize("column,value", [
    ("subject", "'INC-99999'"), ("actor", "'operator:mallory'"), ("kind", "'incident.closed'"),
    ("ts", None), ("payload", None),
])
def test_altering_a_field_is_caught_at_that_entry(log: Log, column: str, value: str | None) -> None:
    k = 1234
    if column == "ts":
        log.sql("UPDATE audit_log SET ts = :t WHERE seq = :k",
                t=datetime(2026, 12, 5, 8, 0, tzinfo=UTC).replace(tzinfo=None)
                if log.store.engine.dialect.name == "sqlite"
                else datetime(2026, 12, 5, 8, 0, tzinfo=UTC), k=k)
    elif column == "payload":
        with log.store.engine.begin() as conn:
            from tapshield.storage import tables as t

            conn.execute(sa.update(t.audit_log).where(t.audit_log.c.seq == k).values(
                payload={"level": 1, "lost_fen": 0, "scope": [{"channel": "nfc"}]}))
    else:
        log.sql(f"UPDATE audit_log SET {column} = {value} WHERE seq = :k", k=k)
    code, report = log.verify()
    assert code == 1
    assert _first_bad(report) == k, report


def test_deleting_a_row_is_caught(log: Log) -> None:
    log.sql("DELETE FROM audit_log WHERE seq = 777")
    code, report = log.verify()
    assert code == 1 and _first_bad(report) == 777, report
    assert "missing" in json.dumps(report)


def test_deleting_a_row_and_renumbering_is_caught(log: Log) -> None:
    log.sql("DELETE FROM audit_log WHERE seq = 777")
    log.sql("UPDATE audit_log SET seq = -(seq - 1) WHERE seq > 777")
    log.sql("UPDATE audit_log SET seq = -seq WHERE seq < 0")
    log.sql("UPDATE audit_tree SET size = size - 1")
    code, report = log.verify()
    assert code == 1 and _first_bad(report) == 777, report


def _forged(seq: int) -> Entry:
    return Entry(seq, datetime(2026, 12, 5, 9, 5, tzinfo=UTC), "incident.closed",
                 "operator:mallory", "INC-01000", {"reason": "false alarm"})


def test_inserting_a_row_is_caught(log: Log) -> None:
    k = 1000
    log.sql("UPDATE audit_log SET seq = -(seq + 1) WHERE seq >= :k", k=k)
    log.sql("UPDATE audit_log SET seq = -seq WHERE seq < 0")
    with log.store.engine.begin() as conn:
        insert_entries(conn, [_forged(k)])
    log.sql("UPDATE audit_tree SET size = size + 1")
    code, report = log.verify()
    assert code == 1 and _first_bad(report) == k, report


def test_appending_a_row_behind_the_logs_back_is_caught(log: Log) -> None:
    with log.store.engine.begin() as conn:
        insert_entries(conn, [_forged(N)])
    code, report = log.verify()
    assert code == 1 and _first_bad(report) == N, report


def test_swapping_two_rows_is_caught(log: Log) -> None:
    i, j = 555, 1111
    log.sql("UPDATE audit_log SET seq = -1 WHERE seq = :i", i=i)
    log.sql("UPDATE audit_log SET seq = :i WHERE seq = :j", i=i, j=j)
    log.sql("UPDATE audit_log SET seq = :j WHERE seq = -1", j=j)
    code, report = log.verify()
    assert code == 1 and _first_bad(report) == i, report


def test_truncating_the_tail_is_caught_by_the_heads_in_the_database(log: Log) -> None:
    log.sql("DELETE FROM audit_log WHERE seq >= 1300")
    log.sql("UPDATE audit_tree SET size = 1300")
    code, report = log.verify()
    assert code == 1 and _first_bad(report) == 1300, report


def test_truncating_the_tail_and_its_heads_is_caught_by_the_witness(log: Log) -> None:
    log.sql("DELETE FROM audit_log WHERE seq >= 1300")
    log.sql("DELETE FROM audit_heads WHERE size > 1300")
    _rebuild_tree(log.store)
    code, report = log.verify()
    assert code == 0, "without a copy of the heads outside the database this is invisible"
    code, report = log.verify("--witness", str(log.witness))
    assert code == 1 and _first_bad(report) == 1300, report


def _rewrite_tail(log: Log, k: int, *, resign: bool) -> None:
    """Replace every entry from ``k`` on with forged ones and make the tree look valid."""
    log.sql("DELETE FROM audit_log WHERE seq >= :k", k=k)
    log.sql("DELETE FROM audit_heads WHERE size > :k", k=k)
    with log.store.engine.begin() as conn:
        insert_entries(conn, [Entry(s, datetime(2026, 12, 5, 9, 10, tzinfo=UTC), "alert.page",
                                    "pipeline", f"INC-{s:05d}", {"level": 0, "lost_fen": 0})
                              for s in range(k, N)])
    _rebuild_tree(log.store)
    if resign:  # the insider also holds the signing key
        audit = AuditLog(SqlAuditStore(log.store.engine), signer=log.signer)
        root = audit.root(N)
        cp = Checkpoint(ORIGIN, N, root, datetime(2026, 12, 5, 9, 20, tzinfo=UTC))
        with log.store.engine.begin() as conn:
            from tapshield.storage import tables as t

            conn.execute(sa.insert(t.audit_heads).values(
                size=N, ts=cp.timestamp, root=root, note=sign_note(cp.body(), log.signer)))


@pytest.mark.parametrize("resign", [False, True], ids=["no-key", "stolen-key"])
def test_rewriting_the_tail_with_a_new_valid_tree_is_caught_by_the_witness(
        log: Log, resign: bool) -> None:
    k = 1234
    _rewrite_tail(log, k, resign=resign)
    code, report = log.verify()
    assert code == 0, "the database alone is self-consistent after a careful rewrite"
    code, report = log.verify("--witness", str(log.witness))
    assert code == 1, report
    first = _first_bad(report)
    # The newest head that still verifies is the one of size 1,050: every entry from
    # there on is unproven, and the report says the tail was rewritten.
    assert first == 1050 and isinstance(first, int) and first <= k, report
    assert "rewritten" in json.dumps(report)


def test_a_forged_head_in_the_database_is_caught(log: Log) -> None:
    other = Signer.generate(ORIGIN)  # same name, not the log's key
    audit = AuditLog(SqlAuditStore(log.store.engine))
    cp = Checkpoint(ORIGIN, N, audit.root(N), datetime(2026, 12, 6, tzinfo=UTC))
    with log.store.engine.begin() as conn:
        from tapshield.storage import tables as t

        conn.execute(sa.insert(t.audit_heads).values(size=N, ts=cp.timestamp, root=cp.root,
                                                     note=sign_note(cp.body(), other)))
    code, report = log.verify()
    assert code == 1, report
    assert "no signature by a trusted key" in json.dumps(report)


def test_tampering_a_stored_hash_only_is_caught(log: Log) -> None:
    with log.store.engine.begin() as conn:
        row = conn.execute(sa.text("SELECT hashes FROM audit_tiles WHERE level = 0 AND idx = 3")
                           ).one()
        h = bytearray(row[0])
        h[5 * 32] ^= 1
        conn.execute(sa.text("UPDATE audit_tiles SET hashes = :h WHERE level = 0 AND idx = 3"),
                     {"h": bytes(h)})
    code, report = log.verify()
    assert code == 1 and _first_bad(report) == 3 * 256 + 5, report


def test_human_output_names_the_first_bad_entry(log: Log) -> None:
    log.sql("DELETE FROM audit_log WHERE seq = 42")
    res = runner.invoke(app, ["audit", "verify", "--db", log.url, "--key", str(log.vkey)])
    assert res.exit_code == 1
    assert "first bad entry: #42" in res.output
