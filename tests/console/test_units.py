"""The console's pieces without a browser: translations, money, sessions, the map."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest

from tapshield.console import auth, i18n, provinces
from tapshield.console.data import ImpactFilter, borrower_rows, points
from tapshield.report import present
from tapshield.service.keys import Principal


def test_every_string_a_template_asks_for_exists_in_both_languages() -> None:
    used: set[str] = set()
    tpl = resources.files("tapshield.console").joinpath("templates")
    for f in tpl.iterdir():
        used |= set(re.findall(r"\bt\('([a-z0-9_]+)'\)", f.read_text()))
    src = Path(str(resources.files("tapshield.console")))
    for f in src.glob("*.py"):
        used |= set(re.findall(r"\bt\(\"([a-z0-9_]+)\"", f.read_text()))
    used |= {f"level_{n}" for n in (1, 2, 3, 4)} | {f"health_{s}" for s in
                                                    ("ok", "down", "trial", "none")}
    missing = used - i18n.keys()
    assert not missing, missing
    for k in used:
        en, zh = i18n.t(k, "en"), i18n.t(k, "zh")
        assert en and zh and (en != zh or k in {"dora"}), k


def test_the_browser_language_decides_unless_overridden() -> None:
    assert i18n.negotiate("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert i18n.negotiate("en-GB,en;q=0.9,zh;q=0.5") == "en"
    assert i18n.negotiate("fr-FR") == "en"
    assert i18n.negotiate(None) == "en"
    assert i18n.negotiate("zh-TW", override="en") == "en"
    assert i18n.negotiate("de", override="bogus") == "en"


def test_money_is_exact_with_thousands_separators() -> None:
    assert present.yuan("749994.54") == "749,994.54"
    assert present.yuan(97528314, fen=True) == "975,283.14"
    assert present.yuan(Decimal("0.005")) == "0.00"  # half-even
    assert present.yuan(Decimal("0.015")) == "0.02"
    assert present.yuan("-1234.5") == "-1,234.50"
    assert present.yuan(None) == "–" and present.yuan("NaN") == "–"
    assert present.count(4320) == "4,320"


def test_the_outage_amount_never_counts_refused_fraud() -> None:
    docs = [{"cause": "interface", "lost_amount": "749994.54"},
            {"cause": "fraud_attack", "lost_amount": "225288.60"}]
    assert present.outage_amount(docs) == Decimal("749994.54")


def test_notices_are_folded_and_the_red_one_comes_first() -> None:
    docs = [{"id": f"N{i}", "level": 4, "cause": "fraud_attack",
             "start": f"2026-11-27T0{i}:00:00+08:00", "end": "x"} for i in range(5)]
    docs += [{"id": "Y", "level": 3, "cause": "network", "start": "2026-11-27T13:00:00+08:00",
              "end": None},
             {"id": "R", "level": 1, "cause": "interface", "start": "2026-11-27T12:00:00+08:00",
              "end": "2026-11-27T12:40:00+08:00"}]
    paging, groups = present.split_by_attention(docs)
    assert [d["id"] for d in paging] == ["R", "Y"]
    assert [(g.cause, len(g.items)) for g in groups] == [("fraud_attack", 5)]
    assert groups[0].items[0]["id"] == "N4"  # newest first within a kind


def test_sessions_are_signed_expire_and_end_with_their_key() -> None:
    signer = auth.Signer(b"k" * 32)
    p = Principal(key_id="abc", role="operator", name="on-call")
    keys = {"abc": p}
    tok = auth.new_session_token(signer, "abc", "passkey", 1.0)
    s = auth.read_session(signer, tok, keys.get)
    assert s is not None and s.method == "passkey" and s.may_act(True)
    assert s.csrf != auth.read_session(
        signer, auth.new_session_token(signer, "abc", "passkey", 1.0), keys.get).csrf  # type: ignore[union-attr]
    body, mac = tok.split(".")
    assert auth.read_session(signer, body + "." + mac[:-2] + "AA", keys.get) is None
    assert auth.read_session(auth.Signer(b"x" * 32), tok, keys.get) is None
    assert auth.read_session(signer, tok, {}.get) is None  # key disabled: session over
    old = signer.sign("session", {"k": "abc", "m": "key", "exp": time.time() - 1})
    assert auth.read_session(signer, old, keys.get) is None
    by_key = auth.read_session(signer, auth.new_session_token(signer, "abc", "key", 1.0),
                               keys.get)
    assert by_key is not None and not by_key.may_act(True) and by_key.may_act(False)
    reader = auth.read_session(signer, tok, {"abc": Principal("abc", "credit")}.get)
    assert reader is not None and not reader.may_act(False)
    assert reader.sees("impact") and not reader.sees("risk")
    gw = auth.read_session(signer, tok, {"abc": Principal("abc", "gateway")}.get)
    assert gw is None


def test_the_secret_and_passkeys_live_beside_the_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    s1 = auth.load_secret(keys)
    assert s1 == auth.load_secret(keys) and len(s1) == 32
    assert (tmp_path / "keys.json.console-secret").stat().st_mode & 0o077 == 0
    store = auth.PasskeyStore(keys)
    store.add(b"\x01\x02", "abc", b"pk", 0, "laptop")
    entry = store.get(auth.b64(b"\x01\x02"))
    assert entry is not None and entry["key_id"] == "abc"
    assert auth.public_key_of(entry) == b"pk"
    store.used(auth.b64(b"\x01\x02"), 7)
    assert store.of_key("abc")[0]["sign_count"] == 7 and store.of_key("zzz") == []


def test_the_tile_grid_has_every_province_once() -> None:
    codes = [t.code for t in provinces.TILES]
    assert len(codes) == 31 == len(set(codes))
    cells = {(t.col, t.row) for t in provinces.TILES}
    assert len(cells) == 31
    assert provinces.name("CN-GD", "zh") == "广东" and provinces.name("CN-XX", "en") == "CN-XX"


def test_an_outage_does_not_lower_its_own_expectation() -> None:
    rows = [{"t": 60 * i, "taps": 100, "attempts": 100,
             "approved": 98 if i < 20 else 60, "technical_failures": 1 if i < 20 else 39,
             "expected_technical_rate": 0.01} for i in range(40)]
    pts = points(rows, [(60 * 20, 60 * 40)])
    assert pts[-1].success == pytest.approx(0.60)
    assert pts[-1].expected_success == pytest.approx(0.98)
    assert pts[-1].expected_taps == pytest.approx(100.0)


def test_borrowers_filter_and_put_the_stressed_first() -> None:
    doc = {"periods": {"day0": "2026-11-27"}, "borrowers": [
        {"borrower_id": "a", "region": "CN-GD", "status": "affected", "label": None,
         "lost_net": "900.00", "incidents": ["I1"], "actions": []},
        {"borrower_id": "b", "region": "CN-JS", "status": "operational_stress",
         "label": "operational", "lost_net": "10.00", "incidents": ["I1"],
         "first_operational_miss_date": "2026-12-05",
         "actions": [{"action": "grace_period", "reason": "r"}]},
        {"borrower_id": "c", "region": "CN-GD", "status": "affected", "label": None,
         "lost_net": "5.00", "incidents": ["I2"], "actions": []}]}
    rows = borrower_rows(doc, ImpactFilter())
    assert [r["borrower_id"] for r in rows] == ["b", "a", "c"]
    assert rows[0]["days_to_miss"] == 8 and rows[0]["actions"] == ["grace_period"]
    assert [r["borrower_id"] for r in borrower_rows(doc, ImpactFilter(region="CN-GD"))] == [
        "a", "c"]
    assert [r["borrower_id"] for r in borrower_rows(doc, ImpactFilter(incident="I2"))] == ["c"]
    assert [r["borrower_id"] for r in borrower_rows(doc, ImpactFilter(stressed=True))] == ["b"]
