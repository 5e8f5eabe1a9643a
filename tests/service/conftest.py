"""Fixtures of the service tests: settings on SQLite or a private PostgreSQL schema,
keys, and live ``tapshield serve`` processes (tests/service/live.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tapshield.service.config import ServiceSettings


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """The test PostgreSQL with a schema of its own (dropped afterwards), so
    parallel runs and other tests' tables never meet."""
    schema = f"ts_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(pg_url)
    with eng.begin() as conn:
        conn.execute(sa.text(f"create schema {schema}"))
    url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with eng.begin() as conn:
        conn.execute(sa.text(f"drop schema {schema} cascade"))
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'svc.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


def settings_for(url: str, tmp: Path, **kw: object) -> ServiceSettings:
    return ServiceSettings(database_url=url, keys_file=tmp / "keys.json",  # type: ignore[arg-type]
                           log_requests=False, **kw)
