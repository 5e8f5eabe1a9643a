"""The log's API on both backends: appends, heads, proofs, several writers, the
canonical form surviving the database, the pipeline sink, and the CLI an auditor uses."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tapshield.audit import merkle
from tapshield.audit.canonical import (
    CanonicalError,
    dumps,
    format_ts,
    leaf_object,
    leaf_text,
    payload_text,
)
from tapshield.audit.checkpoint import NoteError, Signer, add_signature, open_note
from tapshield.audit.log import AuditLog, HeadPolicy, Record
from tapshield.audit.sink import AuditSink
from tapshield.cli import app
from tapshield.incident import Incident
from tapshield.monitor.alerts import AlertEvent
from tapshield.storage import Store
from tapshield.storage.audit import SqlAuditStore

runner = CliRunner()
ORIGIN = "bank.example/audit"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**62), 2**62)
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=8), kids, max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(payload=st.dictionaries(st.text(max_size=6).filter(lambda k: "\x00" not in k),
                               json_values, max_size=5),
       seq=st.integers(0, 2**40), kind=st.text(min_size=1, max_size=10))
def test_leaf_text_is_the_canonical_json_of_the_leaf(payload: dict[str, object], seq: int,
                                                     kind: str) -> None:
    ts = datetime(2026, 12, 5, 1, 2, 3, 4567, tzinfo=UTC)
    value, text = payload_text(payload)
    want = dumps(leaf_object(seq, ts, kind, "svc:ops", "INC-1", value))
    assert leaf_text(seq, format_ts(ts), kind, "svc:ops", "INC-1", text).encode() == want
    assert json.loads(want)["payload"] == value


def test_canonical_form_refuses_floats_and_normalises_money() -> None:
    with pytest.raises(CanonicalError, match="floats"):
        payload_text({"amount": 12.5})
    with pytest.raises(CanonicalError, match="NUL"):
        payload_text({"x": "a\x00b"})
    _, text = payload_text({"lost": Decimal("12.50"), "at": datetime(2026, 1, 1, tzinfo=UTC),
                            "ids": ("a", "b")})
    assert text == '{"at":"2026-01-01T00:00:00.000000Z","ids":["a","b"],"lost":"12.50"}'


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


def test_append_prove_and_sign_on_the_real_database(store: Store, signer: Signer) -> None:
    heads: list[str] = []
    log = AuditLog(SqlAuditStore(store.engine), signer=signer,
                   policy=HeadPolicy(every_entries=100, every_seconds=3600), on_head=heads.append)
    assert log.append("key.created", "admin:li", "key:ops-7", {"role": "operator"}) == 0
    seqs = log.append_batch([Record("alert.firing", "tapshield/pipeline", f"A{i}",
                                    {"level": 2, "big": 2**62 + i, "zh": "广东 NFC 故障"})
                             for i in range(700)])
    assert seqs == list(range(1, 701))
    assert len(heads) == 2  # the first append, then the batch of 700 (>= 100 entries)
    assert log.sign_head() is None  # nothing new since
    note = heads[-1]
    assert log.latest_head().note == note  # type: ignore[union-attr]
    cp, names = open_note(note, [signer.verifier()])
    assert (cp.size, names) == (701, [ORIGIN])
    for seq in (0, 1, 255, 256, 511, 700):
        proof = log.inclusion_proof(seq)
        assert proof.size == 701 and proof.note == note
        assert proof.entry == store_entry(store, seq)
        assert merkle.verify_inclusion(seq, 701, proof.entry.leaf_hash(), proof.path, cp.root)
    first = open_note(heads[0], [signer.verifier()])[0]
    path = log.consistency_proof(first.size, 701)
    assert merkle.verify_consistency(first.size, 701, first.root, cp.root, path)
    # values survive the database byte for byte (JSONB on PostgreSQL)
    e = store_entry(store, 5)
    assert e.payload == {"level": 2, "big": 2**62 + 4, "zh": "广东 NFC 故障"}
    with pytest.raises(ValueError, match="kind"):
        log.append("", "x", "y")
    assert log.size() == 701  # a refused record changes nothing


def store_entry(store: Store, seq: int):  # type: ignore[no-untyped-def]
    return SqlAuditStore(store.engine).entry(seq)


def test_several_writers_share_one_log(store: Store, signer: Signer) -> None:
    logs = [AuditLog(SqlAuditStore(store.engine), signer=signer) for _ in range(3)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for b in range(10):
                logs[i].append_batch([Record("incident.note", f"op:{i}", f"INC-{b}",
                                             {"n": j}) for j in range(7)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert logs[0].size() == 210
    logs[1].sign_head()
    from tapshield.audit.verify import verify

    report = verify(SqlAuditStore(store.engine), [signer.verifier()], origin=ORIGIN)
    assert report.ok, report.findings


def test_notes_are_checkpoints_anyone_can_cosign(signer: Signer) -> None:
    from tapshield.audit.checkpoint import Checkpoint, Verifier, sign_note

    cp = Checkpoint(ORIGIN, 5, merkle.EMPTY_ROOT, datetime(2026, 12, 5, tzinfo=UTC))
    note = sign_note(cp.body(), signer)
    assert note.startswith(f"{ORIGIN}\n5\n") and "\n\n\u2014 " in note
    witness = Signer.generate("partner.example/witness")
    both = add_signature(note, witness)
    assert open_note(both, [witness.verifier()])[1] == ["partner.example/witness"]
    assert Verifier.from_vkey(signer.verifier().vkey()) == signer.verifier()
    assert Signer.from_skey(signer.skey()).public == signer.public
    with pytest.raises(NoteError):
        open_note(note.replace("\n5\n", "\n6\n"), [signer.verifier()])
    with pytest.raises(NoteError, match="trusted"):
        open_note(note, [witness.verifier()])


def _alert(state: str, level: int, notify: bool = True) -> AlertEvent:
    t = datetime(2026, 12, 5, 12, tzinfo=UTC)
    return AlertEvent(alert_id="nfc|CN-GD", ts=t, state=state, level=level,  # type: ignore[arg-type]
                      started_at=t - timedelta(minutes=2), slice={"channel": "nfc"},
                      signal="technical", notify=notify, figures={"rate": 0.31, "n": 812})


def _incident(level: int, end: bool = False) -> Incident:
    t = datetime(2026, 12, 5, 12, tzinfo=UTC)
    return Incident(id="INC-1", start=t, detected_at=t, level=level,
                    end=t + timedelta(minutes=40) if end else None,
                    scope=[{"channel": "nfc", "region": "CN-GD"}], cause="interface",
                    confidence=0.93, failed_payments=812, lost_fen=1_234_500)


def test_the_sink_records_pages_and_incident_transitions(store: Store, signer: Signer) -> None:
    log = AuditLog(SqlAuditStore(store.engine), signer=signer)
    sink = AuditSink(log, run_id="run-1")
    sink.alerts([_alert("firing", 2), _alert("reminder", 4, notify=False)])
    sink.incidents([_incident(2)])
    sink.incidents([_incident(1)])
    sink.incidents([_incident(1, end=True)])
    sink.close(type("R", (), {"incidents": [_incident(1, end=True)]})())
    kinds = [(e.kind, e.subject) for e in SqlAuditStore(store.engine).entries()]
    assert kinds == [("alert.firing", "nfc|CN-GD"), ("incident.opened", "INC-1"),
                     ("incident.escalated", "INC-1"), ("incident.closed", "INC-1")]
    e = SqlAuditStore(store.engine).entry(0)
    assert e is not None and e.payload["figures"] == {"rate": "0.31", "n": 812}  # type: ignore[index]
    assert log.latest_head() is not None and log.latest_head().size == 4  # type: ignore[union-attr]


def test_an_auditor_session_through_the_cli(tmp_path: Path) -> None:
    res = runner.invoke(app, ["audit", "keygen", ORIGIN, "--out", str(tmp_path / "keys")])
    assert res.exit_code == 0, res.output
    vkey = res.stdout.strip().splitlines()[-1]
    assert vkey.startswith(ORIGIN + "+")
    db = f"sqlite:///{tmp_path / 't.db'}"
    store = Store(db)
    signer = Signer.from_skey((tmp_path / "keys" / "audit.skey").read_text())
    log = AuditLog(SqlAuditStore(store.engine), signer=signer)
    log.append_batch([Record("silence.created", "op:wang", f"S{i}", {"hours": 2})
                      for i in range(40)])
    env = {"TAPSHIELD_AUDIT_SIGNER_FILE": str(tmp_path / "keys" / "audit.skey")}
    witness = tmp_path / "witness.jsonl"
    res = runner.invoke(app, ["audit", "head", "--db", db, "--sign", "--witness", str(witness)],
                        env=env)
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"{ORIGIN}\n40\n") and witness.exists()
    res = runner.invoke(app, ["audit", "proof", "17", "--db", db, "-o", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["audit", "check-proof", str(tmp_path / "p.json"), "--key", vkey])
    assert res.exit_code == 0 and "entry #17" in res.stdout, res.output
    doc = json.loads((tmp_path / "p.json").read_text())
    doc["entry"]["payload"]["hours"] = 200
    (tmp_path / "p.json").write_text(json.dumps(doc))
    res = runner.invoke(app, ["audit", "check-proof", str(tmp_path / "p.json"), "--key", vkey])
    assert res.exit_code == 1 and "INVALID" in res.stdout
    res = runner.invoke(app, ["audit", "consistency", "10", "--db", db])
    assert res.exit_code == 0 and json.loads(res.stdout)["second"] == 40
    res = runner.invoke(app, ["audit", "verify", "--db", db, "--key", vkey, "-w", str(witness)])
    assert res.exit_code == 0 and "OK" in res.stdout, res.output
    res = runner.invoke(app, ["audit", "show", "--db", db, "-n", "2"])
    assert [json.loads(x)["seq"] for x in res.stdout.splitlines()] == [38, 39]
    # unusable input: exit 2 with one line, never a traceback
    res = runner.invoke(app, ["audit", "verify", "--db", f"sqlite:///{tmp_path / 'none.db'}",
                              "--key", vkey])
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = runner.invoke(app, ["audit", "verify", "--db", db])
    assert res.exit_code == 2 and "verifier key" in res.output


def test_proofs_read_tiles_through_the_primary_key(store: Store) -> None:
    """A proof at 10 M leaves reads 3-6 tiles out of 80,000: never a table scan
    (SQLite scans for a row-value IN, which this query avoids)."""
    import sqlalchemy as sa

    from tapshield.storage.audit import tiles_sql

    text, params = tiles_sql([(0, 5), (0, 9), (1, 0), (2, 0)], "?")
    for v in params:
        text = text.replace("?", str(v), 1)
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            plan = " ".join(str(r[3]) for r in conn.execute(sa.text("EXPLAIN QUERY PLAN " + text)))
            assert "SCAN audit_tiles" not in plan and "SEARCH audit_tiles" in plan, plan
        else:
            conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(r[0] for r in conn.execute(sa.text("EXPLAIN " + text)))
            assert "Index Scan on pk_audit_tiles" in plan, plan
