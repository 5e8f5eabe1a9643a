"""Whatever single change an insider makes to a signed log, verification names it."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.audit.checkpoint import Signer
from tapshield.audit.log import AuditLog, HeadPolicy, Record
from tapshield.audit.verify import verify
from tapshield.storage import Store
from tapshield.storage.audit import SqlAuditStore

ORIGIN = "bank.example/audit"
SIGNER = Signer.generate(ORIGIN)


def _log(path: Path, n: int) -> Store:
    store = Store(f"sqlite:///{path}")
    t = [datetime(2026, 12, 5, tzinfo=UTC)]

    def clock() -> datetime:
        t[0] += timedelta(seconds=1)
        return t[0]

    log = AuditLog(SqlAuditStore(store.engine), signer=SIGNER, clock=clock,
                   policy=HeadPolicy(every_entries=64, every_seconds=1e9))
    for start in range(0, n, 16):
        log.append_batch([Record("incident.noted", f"op:{i % 3}", f"INC-{i}", {"n": i})
                          for i in range(start, min(n, start + 16))])
    log.sign_head()
    return store


@settings(max_examples=15, deadline=None)
@given(n=st.integers(20, 300), data=st.data())
def test_any_single_change_is_named(n: int, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = _log(Path(d) / "a.db", n)
        k = data.draw(st.integers(0, n - 1), label="entry")
        change = data.draw(st.sampled_from(["actor", "subject", "payload", "delete", "swap"]))
        with store.engine.begin() as conn:
            if change == "delete":
                conn.execute(sa.text("DELETE FROM audit_log WHERE seq = :k"), {"k": k})
            elif change == "swap":
                j = data.draw(st.integers(0, n - 1).filter(lambda x: x != k), label="other")
                k, j = min(k, j), max(k, j)
                for a, b in ((k, -1), (j, k), (-1, j)):
                    conn.execute(sa.text("UPDATE audit_log SET seq = :b WHERE seq = :a"),
                                 {"a": a, "b": b})
            elif change == "payload":
                conn.execute(sa.text("UPDATE audit_log SET payload = :p WHERE seq = :k"),
                             {"p": '{"n":-1}', "k": k})
            else:
                conn.execute(sa.text(f"UPDATE audit_log SET {change} = 'x' WHERE seq = :k"),
                             {"k": k})
        report = verify(SqlAuditStore(store.engine), [SIGNER.verifier()], origin=ORIGIN)
        store.close()
        assert not report.ok
        assert report.first_bad is not None and report.first_bad.entry == k, report.findings


def test_deletion_inside_a_full_tile_names_the_deleted_entry(tmp_path: Path) -> None:
    """CI found this one: deleting #208 of 257 also leaves tile 1/0's stored hash
    (#0..#255) unmatched; the exact finding inside that range is the first bad entry,
    not the start of the range."""
    store = _log(tmp_path / "a.db", 257)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = 208"))
    report = verify(SqlAuditStore(store.engine), [SIGNER.verifier()], origin=ORIGIN)
    store.close()
    assert report.first_bad is not None and report.first_bad.entry == 208, report.findings
    assert any(not f.exact and f.entry == 0 for f in report.findings)
