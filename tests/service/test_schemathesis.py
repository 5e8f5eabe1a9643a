"""Schemathesis against the live OpenAPI schema of a running ``tapshield serve``.

Every operation is fuzzed with bounded examples (12 valid and 12 invalid
requests: bodies, paths and queries), each with a key of a role allowed to call it. What must
hold: no server error at all, and every answer (status code, content type,
body, headers) conforms to the published schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from tapshield.service.keys import create_key

from .live import LiveServer

ROLE_FOR = {
    "/v1/authorize": "gateway", "/v1/attempts/{attempt_id}/result": "gateway",
    "/v1/attempts/{attempt_id}/inquiry": "gateway", "/v1/probes/due": "gateway",
    "/v1/probes/results": "gateway", "/v1/channels/health": "read-only",
}
KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    for role in ("gateway", "operator", "read-only"):
        KEYS[role] = create_key(tmp / "keys.json", role)[1]
    server = LiveServer(tmp, {"keys_file": "keys.json", "log_requests": False, "limits": {
        "rate_limits": {r: {"per_second": 100000, "burst": 100000}
                        for r in ("gateway", "operator", "read-only")}}}).start()
    yield server
    assert server.stop() == 0


CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.response_headers_conformance]


def _fuzz(op: Any, headers: dict[str, str], mode: GenerationMode) -> None:
    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=12, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        # Nothing to break in an operation without parameters or body.
        assert mode is GenerationMode.NEGATIVE, op.path


def test_every_answer_conforms_and_none_is_a_server_error(live: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    tested = []
    for result in schema.get_all_operations():
        op = result.ok()
        role = ROLE_FOR.get(op.path) or (
            "operator" if op.method.upper() in ("POST", "DELETE") else "read-only")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(op, {"Authorization": f"Bearer {KEYS[role]}"}, mode)
        tested.append(f"{op.method.upper()} {op.path}")
    assert len(tested) >= 19, tested
