"""Backends for the log: a SQLite file, and a real PostgreSQL in a schema of its own.

Each PostgreSQL test gets a fresh schema (``search_path`` set in the URL), so
parallel runs and other suites sharing the database never see each other's
log, whose tree size is global to its tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tapshield.storage import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
        return
    base: str = request.getfixturevalue("pg_url")
    schema = f"audit_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(base)
    with eng.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with eng.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    eng.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()
