"""Tokens, sealing, key rotation with background re-encryption, masks."""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.privacy import EnvKeyProvider, FileKeyProvider, Tokenizer
from tapshield.privacy.keys import MissingKeyError
from tapshield.privacy.mask import mask_email, mask_id, mask_phone
from tapshield.privacy.seal import Sealer, SealError
from tapshield.privacy.vault import Vault
from tapshield.storage import Store
from tapshield.storage.vault import SqlVaultStore


@pytest.fixture
def keys(tmp_path: Path) -> FileKeyProvider:
    k = FileKeyProvider(tmp_path / "keys")
    k.add("token")
    k.add("seal")
    return k


def test_key_files_are_private_and_never_overwritten(keys: FileKeyProvider) -> None:
    f = keys.directory / "seal.v1.key"
    assert (os.stat(f).st_mode & 0o777) == 0o600
    assert keys.add("seal") == 2
    assert keys.current("seal") == 2  # highest by default...
    keys.make_current("seal", 1)
    assert keys.current("seal") == 1  # ...until one is named
    with pytest.raises(MissingKeyError):
        keys.make_current("seal", 7)


def test_tokens_are_stable_keyed_and_separate_kinds(keys: FileKeyProvider, tmp_path: Path) -> None:
    tok = Tokenizer(keys)
    a = tok.token("user", "u142424")
    assert a == Tokenizer(keys).token("user", "u142424")
    assert a.startswith("usr1_") and "u142424" not in a
    assert tok.token("device", "u142424") != a.replace("usr", "dev")
    other = FileKeyProvider(tmp_path / "other")
    other.add("token")
    assert Tokenizer(other).token("user", "u142424") != a  # without the key: another token
    assert tok.token("email", " Zhang.Wei@Example.com") == tok.token("email",
                                                                     "zhang.wei@example.com")
    assert tok.token("phone", "+86 138-1234-5678") == tok.token("phone", "+8613812345678")


def test_frame_tokenises_each_distinct_value_once(keys: FileKeyProvider) -> None:
    tok = Tokenizer(keys)
    df = pl.DataFrame({"user_id": ["u1", "u2", "u1", None], "device_id": ["d1", "d1", "d2", "d3"],
                       "merchant_id": ["m1"] * 4})
    out = tok.frame(df)
    assert out["merchant_id"].to_list() == ["m1"] * 4
    assert out["user_id"][0] == out["user_id"][2] == tok.token("user", "u1")
    assert out["user_id"][3] is None
    assert out["device_id"].n_unique() == 3


def test_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    k1, k2 = (base64.b64encode(bytes([i]) * 32).decode() for i in (1, 2))
    env = {"TAPSHIELD_KEY_SEAL_V1": k1, "TAPSHIELD_KEY_SEAL_V2": k2,
           "TAPSHIELD_KEY_SEAL_CURRENT": "1"}
    p = EnvKeyProvider(env)
    assert p.versions("seal") == [1, 2] and p.current("seal") == 1
    assert p.key("seal", 2) == bytes([2]) * 32
    with pytest.raises(MissingKeyError):
        EnvKeyProvider({"TAPSHIELD_KEY_SEAL_V1": "short"}).key("seal", 1)


def test_sealed_values_are_bound_to_their_row(keys: FileKeyProvider) -> None:
    s = Sealer(keys)
    blob = s.seal("phone", "tel1_a", "13812345678")
    assert b"13812345678" not in blob
    assert s.open("phone", "tel1_a", blob) == "13812345678"
    with pytest.raises(SealError):
        s.open("phone", "tel1_b", blob)  # copied onto another customer's row
    with pytest.raises(SealError):
        s.open("email", "tel1_a", blob)
    bad = bytearray(blob)
    bad[-1] ^= 1
    with pytest.raises(SealError):
        s.open("phone", "tel1_a", bytes(bad))


def test_rotation_keeps_every_value_readable_while_reencrypting(
        store: Store, keys: FileKeyProvider) -> None:
    vault = Vault(SqlVaultStore(store.engine), Tokenizer(keys), Sealer(keys))
    phones = [f"138{i:08d}" for i in range(300)]
    tokens = vault.put_many("phone", phones)
    assert vault.versions() == {1: 300}
    keys.make_current("seal", keys.add("seal"))  # rotate: version 2 is current
    new = vault.put("email", "li.na@example.com")
    assert vault.versions() == {1: 300, 2: 1}
    errors: list[str] = []

    def reader() -> None:  # a notice sender reading during the re-encryption
        for _ in range(3):
            for tk, ph in zip(tokens[::17], phones[::17], strict=True):
                if vault.reveal(tk) != ph:
                    errors.append(tk)

    th = threading.Thread(target=reader)
    th.start()
    moved = vault.reencrypt(batch=50)
    th.join()
    assert not errors
    assert moved == 300
    assert vault.versions() == {2: 301}
    assert [vault.reveal(t) for t in tokens] == phones
    assert vault.reveal(new) == "li.na@example.com"
    assert vault.reencrypt() == 0


def test_the_vault_holds_no_raw_identifier(store: Store, keys: FileKeyProvider,
                                           tmp_path: Path) -> None:
    vault = Vault(SqlVaultStore(store.engine), Tokenizer(keys), Sealer(keys))
    vault.put("email", "zhang.wei@example.com")
    vault.put("phone", "13812345678")
    if store.engine.dialect.name == "sqlite":
        store.close()
        raw = Path(str(store.engine.url.database)).read_bytes()
        assert b"zhang.wei" not in raw and b"13812345678" not in raw


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=8, max_size=20, alphabet="0123456789"))
def test_phone_masks_keep_only_prefix_and_last_four(digits: str) -> None:
    m = mask_phone(digits)
    assert m.endswith(digits[-4:]) and "****" in m
    assert digits not in m


def test_masks() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_email("zhang.wei@example.com") == "z***@example.com"
    assert mask_id("u142424") == "u1***24"


def test_rotation_through_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tapshield.cli import app

    runner = CliRunner()
    keys = tmp_path / "keys"
    assert runner.invoke(app, ["privacy", "keygen", "--keys", str(keys)]).exit_code == 0
    db = f"sqlite:///{tmp_path / 'v.db'}"
    store = Store(db)
    p = FileKeyProvider(keys)
    vault = Vault(SqlVaultStore(store.engine), Tokenizer(p), Sealer(p))
    tok = vault.put("email", "li.na@example.com")
    res = runner.invoke(app, ["privacy", "rotate", "seal", "--keys", str(keys)])
    assert res.exit_code == 0 and "version 2 is current" in res.output
    res = runner.invoke(app, ["privacy", "reencrypt", "--db", db, "--keys", str(keys)])
    assert res.exit_code == 0 and "1 value(s) re-sealed" in res.output, res.output
    assert SqlVaultStore(store.engine).versions() == {2: 1}
    assert Vault(SqlVaultStore(store.engine), Tokenizer(FileKeyProvider(keys)),
                 Sealer(FileKeyProvider(keys))).reveal(tok) == "li.na@example.com"
    res = runner.invoke(app, ["privacy", "rotate", "nope", "--keys", str(keys)])
    assert res.exit_code == 2
