"""What ships in deploy/: the Prometheus rules pass promtool (syntax and unit
tests), and every metric the rules and the Grafana dashboard use is one the
service really exposes (a renamed metric would leave a panel or an alert blind)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from tapshield.service.app import create_app
from tapshield.service.keys import create_key

from .conftest import settings_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "tapshield-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "tapshield-service.json"
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not installed (Debian package prometheus; scripts/services)")
    return exe


def test_rules_pass_promtool() -> None:
    for args in (["check", "rules", str(RULES)],
                 ["test", "rules", str(RULES.with_name("tapshield-rules.test.yml"))]):
        out = subprocess.run([promtool(), *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def _exprs() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    out = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads(DASHBOARD.read_text())
    out += [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    return out


def _names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:tapshield|process)_[a-z0-9_]+)", expr))


def test_dashboard_and_rules_use_only_exposed_metrics(tmp_path: Path, redis_url: str) -> None:
    st = settings_for(f"sqlite:///{tmp_path / 'd.db'}", tmp_path, redis_url=redis_url,
                      redis_namespace=f"test:{uuid.uuid4().hex[:8]}")
    key = create_key(st.keys_file, "gateway")[1]
    h = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(st)) as c:
        b = {"payment_id": "p1", "attempt_id": "a1", "user_id": "u", "device_id": "d",
             "merchant_id": "m", "amount": "1.00", "region": "CN-GD"}
        c.post("/v1/authorize", json=b, headers=h)
        c.post("/v1/authorize", json=b, headers=h)  # a replay
        c.post("/v1/authorize", json={**b, "attempt_id": "a2"}, headers=h)  # a conflict
        c.post("/v1/attempts/a1/result", json={"outcome": "failed", "response_code": "91"},
               headers=h)
        text = c.get("/metrics").text
    exposed = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            exposed.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    families = exposed | {n[: -len(sfx)] for n in exposed for sfx in _SUFFIXES if n.endswith(sfx)}
    used = set().union(*(_names(e) for e in _exprs()))
    assert used, "no metric found in the rules and dashboard"
    missing = sorted(n for n in used if n not in families)
    assert not missing, f"used but not exposed: {missing}"
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "tapshield-service" and len(dash["panels"]) >= 20
