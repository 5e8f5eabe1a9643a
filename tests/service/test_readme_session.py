"""The README's "Run it as a service" session, run as written (bash, curl, the
installed ``tapshield`` command), on a free port instead of 8080."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .live import free_port

ROOT = Path(__file__).resolve().parents[2]


def session() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- serve-session:start -->\n```bash\n(.*?)```\n<!-- serve-session:end -->",
                  text, re.S)
    assert m, "README's serve session is missing"
    return m.group(1)


def test_the_readme_curl_session_works(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl not installed")
    script = session()
    assert "PORT=8080" in script
    script = script.replace("PORT=8080", f"PORT={free_port()}", 1)
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPSHIELD_")}
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["TMPDIR"] = str(tmp_path)  # mktemp -d lands here
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    docs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"')]
    authorize, result, incidents, incident = docs[-4:]
    assert authorize["decision"] == "approve" and authorize["channel"] == "nfc"
    assert authorize["payment_id"] == "pay-1001" and authorize["idempotency_key"]
    assert result["tap_status"] == "approved" and result["action"] == "done"
    assert incidents["total"] >= 1
    assert "INC-20261124-0001" in [i["incident"]["id"] for i in incidents["items"]]
    inc = incident["incident"]
    assert inc["id"] == "INC-20261124-0001" and inc["cause"] == "interface"
    assert {"channel": "nfc", "region": "CN-GD"} in inc["scope"]
    assert incident["status"] == "closed"
    # The README shows these answers; keep it honest.
    readme = session()
    assert '"decision":"approve"' in readme and '"channel":"nfc"' in readme
    assert f'"level":{inc["level"]}' in readme
