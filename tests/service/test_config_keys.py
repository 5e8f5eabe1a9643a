"""One config file (YAML or TOML) under the environment; API keys created once and
stored hashed; the two commands."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tapshield.cli import app
from tapshield.errors import ContractError
from tapshield.service.config import load_settings
from tapshield.service.keys import KeyStore, create_key


def test_yaml_and_toml_with_the_environment_on_top(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    y = tmp_path / "serve.yaml"
    y.write_text("redis_url: redis://r:6379/1\nkeys_file: k.json\nrouter:\n  budget_ms: 9000\n"
                 "limits:\n  max_body_bytes: 1000\n  rate_limits:\n    operator: "
                 "{per_second: 5, burst: 10}\n")
    t = tmp_path / "serve.toml"
    t.write_text('redis_url = "redis://r:6379/1"\n[router]\nbudget_ms = 9000\n')
    for path in (y, t):
        st = load_settings(path)
        assert st.redis_url == "redis://r:6379/1" and st.router.budget_ms == 9000
        assert st.router.to_router_config().budget_ms == 9000
    st = load_settings(y)
    assert st.keys_file == tmp_path / "k.json"  # relative to the config file
    assert st.limits.rate_limits["operator"].per_second == 5
    assert st.limits.rate_limits["gateway"].per_second == 20_000  # defaults kept
    monkeypatch.setenv("TAPSHIELD_LIMITS__MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("TAPSHIELD_REDIS_URL", "redis://other:6379/2")
    st = load_settings(y)
    assert st.limits.max_body_bytes == 2048 and st.redis_url == "redis://other:6379/2"
    monkeypatch.setenv("TAPSHIELD_CONFIG", str(t))
    assert load_settings().router.budget_ms == 9000


@pytest.mark.parametrize(("text", "needle"), [
    ("router:\n  budget_ms: -1\n", "router.budget_ms"),
    ("routr: {}\n", "routr"),
    ("decision:\n  rules: [{name: x, decision: maybe}]\n", "decision.rules.0.decision"),
    ("decision:\n  rules: [{name: x, decision: decline, when: {colour: [red]}}]\n", "colour"),
    ("decision:\n  rules: [{name: x, decision: decline, amount_at_least: '1.005'}]\n",
     "amount_at_least"),
    ("router:\n  order: [nfc]\n  outage_failure_rate: 0.001\n", "router"),
    ("alertmanager: [ftp://x]\n", "alertmanager"),
    (": : :\n", "serve.yaml"),
])
def test_a_bad_config_is_one_line_naming_the_field(tmp_path: Path, text: str,
                                                   needle: str) -> None:
    p = tmp_path / "serve.yaml"
    p.write_text(text)
    with pytest.raises(ContractError) as exc:
        load_settings(p)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_keys_are_stored_hashed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    kid, key = create_key(path, "operator", name="li.wei")
    _, pkey = create_key(path, "partner", partner={"channel": "nfc"})
    raw = path.read_text()
    assert key not in raw and pkey not in raw and kid in raw
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    store = KeyStore(path, recheck_s=0.0)
    p = store.authenticate(key)
    assert p is not None and p.role == "operator" and p.name == "li.wei"
    assert store.authenticate(pkey).partner == {"channel": "nfc"}  # type: ignore[union-attr]
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.authenticate("Bearer nonsense") is None
    doc = json.loads(raw)
    doc["keys"][0]["disabled"] = True
    path.write_text(json.dumps(doc))
    os.utime(path, (1, 1))  # a different mtime, whatever the clock's resolution
    assert store.authenticate(key) is None  # re-read: disabled
    for bad in ({"role": "admin"}, {"role": "partner"}, {"role": "gateway",
                                                         "partner": {"channel": "nfc"}},
                {"role": "partner", "partner": {"colour": "red"}}):
        with pytest.raises(ContractError):
            create_key(path, **bad)  # type: ignore[arg-type]


def test_keys_create_prints_the_key_alone_on_the_last_line(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["keys", "create", "--role", "gateway", "--name", "gw-1"])
    assert r.exit_code == 0, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("tsk_") and " " not in last
    assert KeyStore(tmp_path / "tapshield-keys.json").authenticate(last) is not None
    r = runner.invoke(app, ["keys", "create", "--role", "root"])
    assert r.exit_code == 2 and "unknown role" in r.output
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("router: {budget_ms: 0}\n")
    r = runner.invoke(app, ["serve", "--config", str(cfg)])
    assert r.exit_code == 2 and "router.budget_ms" in r.output
