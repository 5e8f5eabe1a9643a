"""Issue 18's raw-identifier search: run a drill end to end through the command line
with the audit log on, register the simulated customers' contacts in the vault as
the notice sender will, then search every file the drill wrote, its console output
and the database for any raw ``user_id``, ``device_id``, phone number or e-mail
address of a simulated customer. Nothing may be found.

The one file not searched is ``simulation/events.parquet``: the simulated gateway
feed itself, i.e. the input as the payment system sends it, not an output.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from tapshield.cli import app
from tapshield.privacy import FileKeyProvider, Tokenizer
from tapshield.privacy.seal import Sealer
from tapshield.privacy.vault import Vault
from tapshield.storage import Store
from tapshield.storage.vault import SqlVaultStore

runner = CliRunner()

SCENARIO = """\
name: privacy-farm
description: A short device-farm attack, enough traffic to page and open an incident.
why: The raw-identifier search of issue 18.
start: "2026-11-20T09:00:00+08:00"
duration: 2h30m
seed: 18
scale: 0.3
faults:
  - id: farm-gd
    kind: fraud_attack
    pattern: device_farm
    region: CN-GD
    start: "+1h50m"
    duration: 30m
    taps_per_minute: 60
    block_rate: 0.95
"""
TOKEN = re.compile(r"[A-Za-z0-9*]+")  # a masked value (u1***24) is one token, not "u1"


def _contact(user: str) -> tuple[str, str]:
    h = int(hashlib.sha256(user.encode()).hexdigest(), 16)
    return f"13{h % 10**9:09d}", f"c{h % 10**8:08d}@mail.example.cn"


def find_raw(paths: list[Path], texts: dict[str, str], ids: set[str],
             literals: set[str]) -> list[str]:
    """Every place a raw identifier appears: ``where: value``.

    Text is split into tokens and compared with the identifiers. A database is
    searched twice: every value of every table (text split into tokens), and its
    bytes, free pages and write-ahead log included, for every identifier of 6 or
    more characters and every phone and e-mail (shorter ids, like ``d5``, occur by
    chance in hashes and ciphertext, so only the table values are searched for them).
    """
    hits: list[str] = []
    long_ids = {i for i in ids if len(i) >= 6} | literals

    def scan(where: str, text: str) -> None:
        hits.extend(f"{where}: {t}" for t in set(TOKEN.findall(text)) & ids)
        hits.extend(f"{where}: {lit}" for lit in literals if lit in text)

    for p in paths:
        data = p.read_bytes()
        if data.startswith(b"SQLite format 3") or p.name.endswith(("-wal", "-shm")):
            raw = data.decode("latin-1")
            hits.extend(f"{p}: {i}" for i in long_ids if _raw_hit(raw, i))
            if data.startswith(b"SQLite format 3"):
                for where, text in _db_values(p):
                    scan(where, text)
        else:
            scan(str(p), data.decode("latin-1"))
    for where, text in texts.items():
        scan(where, text)
    return hits


_HEX = frozenset("0123456789abcdef")
_B32 = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def _raw_hit(raw: str, ident: str) -> bool:
    """``ident`` occurs in ``raw`` other than by chance inside a digest.

    Ids like ``d56239`` are made of hex digits, so they occur by chance inside the
    hex idempotency keys and hashes the log stores (a drill's thousands of notices
    made that certain). An occurrence counts unless it lies inside a run of 16 or
    more hex or base32 characters, the alphabets of digests and tokens; a raw id
    stored beside other columns (``u123d56239CN``) still counts.
    """
    start = raw.find(ident)
    while start >= 0:
        end = start + len(ident)
        for alphabet in (_HEX, _B32):
            lo, hi = start, end
            if not all(c in alphabet for c in ident):
                continue
            while lo > 0 and raw[lo - 1] in alphabet:
                lo -= 1
            while hi < len(raw) and raw[hi] in alphabet:
                hi += 1
            if hi - lo >= 16:
                break
        else:
            return True
        start = raw.find(ident, start + 1)
    return False


def test_raw_hit_tells_a_stored_id_from_a_digest_that_contains_it() -> None:
    assert _raw_hit("\x03\x11u123d56239CN\x00", "d56239")
    assert _raw_hit("phone 13800138000 here", "13800138000")
    assert not _raw_hit('"key":"9fdf9117894553d562396bd7ad7a444f"', "d56239")
    assert not _raw_hit("tel1_uy332n6zr7fab6u2eywh4oewd4", "fab6u2")
    assert not _raw_hit("nothing here", "d56239")


def _db_values(path: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(path)
    out: list[tuple[str, str]] = []
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):
                out.extend((f"{path.name}:{table}", v) for v in row if isinstance(v, str))
    finally:
        con.close()
    return out


def test_a_drill_leaves_no_raw_identifier_anywhere(tmp_path: Path) -> None:
    scenario = tmp_path / "privacy-farm.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "drill"
    db = f"sqlite:///{tmp_path / 'tapshield.db'}"
    res = runner.invoke(app, ["audit", "keygen", "bank.example/drill-audit", "--out",
                              str(tmp_path / "audit-keys")])
    assert res.exit_code == 0, res.output
    vkey = res.stdout.strip().splitlines()[-1]
    env = {"TAPSHIELD_AUDIT_SIGNER_FILE": str(tmp_path / "audit-keys" / "audit.skey")}
    res = runner.invoke(app, ["drill", str(scenario), "--out", str(out), "--no-failover",
                              "--audit-db", db, "--json"], env=env)
    assert res.exit_code == 0, res.output
    card = json.loads(res.stdout)
    assert card["summary"]["detected"] == 1, "the attack must page: else nothing was tested"

    events = pl.read_parquet(out / "simulation" / "events.parquet")
    ids = set(events["user_id"].unique().to_list()) | set(events["device_id"].unique().to_list())
    assert len(ids) > 5_000

    # The notice sender's contacts for the customers of the attack window, in the vault.
    keys = FileKeyProvider(tmp_path / "keys")
    keys.add("token")
    keys.add("seal")
    store = Store(db)
    vault = Vault(SqlVaultStore(store.engine), Tokenizer(keys), Sealer(keys))
    users = sorted(events.filter(pl.col("region") == "CN-GD")["user_id"].unique().to_list())[:200]
    literals: set[str] = set()
    for u in users:
        phone, email = _contact(u)
        vault.put("phone", phone)
        vault.put("email", email)
        literals |= {phone, email}
    assert vault.reveal(Tokenizer(keys).token("phone", _contact(users[0])[0])) == \
        _contact(users[0])[0]

    # The decisions are on the record, signed, and the record verifies.
    with store.engine.connect() as conn:
        kinds = {k for (k,) in conn.exec_driver_sql("SELECT kind FROM audit_log")}
    assert {"incident.opened", "incident.closed"} <= kinds, kinds
    assert any(k.startswith("alert.") for k in kinds), kinds  # the page
    store.close()
    res_v = runner.invoke(app, ["audit", "verify", "--db", db, "--key", vkey])
    assert res_v.exit_code == 0 and "OK" in res_v.stdout, res_v.output

    files = [p for p in tmp_path.rglob("*") if p.is_file()
             and p != out / "simulation" / "events.parquet" and "keys" not in p.parts
             and "audit-keys" not in p.parts]
    assert any(p.name == "incidents.json" for p in files)
    assert any(p.name == "tapshield.db" for p in files)
    logs = {"stdout": res.stdout, "stderr": res.stderr, "verify": res_v.output}
    hits = find_raw(files, logs, ids, literals)
    assert not hits, hits[:20]

    # The search itself can fail: a raw identifier planted in a copy is found.
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"evidence": f"device {sorted(ids)[7]} seen 40 times"}))
    assert find_raw([planted], {}, ids, literals)
    assert find_raw([], {"log": f"sent to {next(iter(literals))}"}, ids, literals)
