"""Persistence adapter: SQLAlchemy 2 Core tables, Alembic migrations, a small repository.

SQLite (a file, no server) is the default; PostgreSQL when ``TAPSHIELD_DB_URL``
points at one. Domain packages never import this module: the pipeline hands
finished records (runs, incidents, alerts) to a :class:`Store`.
"""

from tapshield.storage.store import DB_URL_ENV, Store, default_url

__all__ = ["DB_URL_ENV", "Store", "default_url"]
