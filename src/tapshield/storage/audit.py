"""The transparency log's tables in SQLite or PostgreSQL (SQLAlchemy Core).

Implements :class:`tapshield.audit.log.AuditStore`. Every append runs in one
transaction that first updates the single ``audit_tree`` row: a row lock on
PostgreSQL and the database write lock on SQLite, so appends from several
processes are serialised and each sees the size the previous one committed.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from tapshield.audit.checkpoint import Checkpoint
from tapshield.audit.log import Entry, StoredHead
from tapshield.audit.tiles import Tile
from tapshield.storage import tables as t


class _Txn:
    def __init__(self, conn: Connection, size: int, last_ts: datetime | None) -> None:
        self.conn = conn
        self._size = size
        self._last_ts = last_ts

    @property
    def size(self) -> int:
        return self._size

    @property
    def last_ts(self) -> datetime | None:
        return self._last_ts

    def tiles(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], Tile]:
        return _load_tiles(self.conn, keys)

    def write(self, entries: Sequence[Entry], tiles: Sequence[Tile], size: int) -> None:
        if entries:
            insert_entries(self.conn, entries)
        if tiles:
            _upsert_tiles(self.conn, tiles)
        last = entries[-1].ts if entries else self._last_ts
        self.conn.execute(update(t.audit_tree).where(t.audit_tree.c.id == 1)
                          .values(size=size, last_ts=last))
        self._size, self._last_ts = size, last

    def add_head(self, checkpoint: Checkpoint, note: str) -> None:
        self.conn.execute(insert(t.audit_heads).values(
            size=checkpoint.size, ts=checkpoint.timestamp, root=checkpoint.root, note=note))

    def last_head(self) -> StoredHead | None:
        row = self.conn.execute(
            select(t.audit_heads.c.id, t.audit_heads.c.size, t.audit_heads.c.note)
            .order_by(t.audit_heads.c.id.desc()).limit(1)).first()
        return StoredHead(int(row.id), int(row.size), str(row.note)) if row else None


_COLUMNS = "seq, ts, kind, actor, subject, payload"


def insert_entries(conn: Connection, entries: Sequence[Entry], table: str = "audit_log") -> None:
    """Bulk insert through the driver's fastest path, inside ``conn``'s transaction.

    PostgreSQL: ``COPY ... FROM STDIN``; SQLite: one prepared ``executemany``.
    The payload goes in as the canonical text the log already made (JSONB
    parses it on PostgreSQL; SQLite's JSON is text), instead of a second
    serialisation per row by SQLAlchemy's JSON type. Rows read back through
    SQLAlchemy Core exactly as if it had written them (``tests/audit``).
    """
    dialect = conn.dialect.name
    texts = [e.payload_json if e.payload_json is not None else _json(e.payload)
             for e in entries]
    if dialect == "postgresql":
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({_COLUMNS}) FROM STDIN") as cp:
            for e, text in zip(entries, texts, strict=True):
                cp.write_row((e.seq, e.ts, e.kind, e.actor, e.subject, text))
        return
    if dialect == "sqlite":
        last: list[Any] = [None, ""]

        def stamp(ts: datetime) -> str:  # a batch shares one time: format it once
            if ts is not last[0]:
                last[0], last[1] = ts, ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            return str(last[1])

        conn.exec_driver_sql(
            f"INSERT INTO {table} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            [(e.seq, stamp(e.ts), e.kind, e.actor, e.subject, text)
             for e, text in zip(entries, texts, strict=True)])
        return
    target = t.audit_log if table == "audit_log" else t.metadata.tables[table]  # pragma: no cover
    conn.execute(insert(target), [  # pragma: no cover
        {"seq": e.seq, "ts": e.ts, "kind": e.kind, "actor": e.actor, "subject": e.subject,
         "payload": e.payload} for e in entries])


def _json(value: Any) -> str:
    from tapshield.audit.canonical import dumps

    return dumps(value).decode("utf-8")


def _upsert_tiles(conn: Connection, tiles: Sequence[Tile]) -> None:
    rows = [{"level": x.level, "idx": x.index, "width": x.width, "hashes": x.hashes}
            for x in tiles]
    # A batch can rewrite the same edge tile only once (the builder drains the latest copy
    # of each), but a completed tile and the next edge tile are distinct keys.
    dialect = conn.dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(t.audit_tiles)
        conn.execute(pg.on_conflict_do_update(
            index_elements=["level", "idx"],
            set_={"width": pg.excluded.width, "hashes": pg.excluded.hashes}), rows)
    elif dialect == "sqlite":
        lite = sqlite.insert(t.audit_tiles)
        conn.execute(lite.on_conflict_do_update(
            index_elements=["level", "idx"],
            set_={"width": lite.excluded.width, "hashes": lite.excluded.hashes}), rows)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        for r in rows:
            conn.execute(t.audit_tiles.delete().where(and_(
                t.audit_tiles.c.level == r["level"], t.audit_tiles.c.idx == r["idx"])))
            conn.execute(insert(t.audit_tiles).values(**r))


def _load_tiles(conn: Connection, keys: Collection[tuple[int, int]]) -> dict[
        tuple[int, int], Tile]:
    if not keys:
        return {}
    sql, params = tiles_sql(keys, "?" if conn.dialect.paramstyle == "qmark" else "%s")
    rows = conn.exec_driver_sql(sql, params).all()
    return {(int(r[0]), int(r[1])): Tile(int(r[0]), int(r[1]), int(r[2]), bytes(r[3]))
            for r in rows}


_TILE_SQL: dict[tuple[tuple[tuple[int, int], ...], str], str] = {}


def tiles_sql(keys: Collection[tuple[int, int]], mark: str) -> tuple[str, tuple[int, ...]]:
    """The query for the tiles named by ``keys`` (tile level, index) and its parameters.

    ``level = L AND idx IN (...)`` per level, which both engines answer from the
    primary key (SQLite scans the whole table for a row-value ``IN (VALUES ...)``).
    The text is made once per shape and run through the driver: proofs are a hot
    path, and building the statement with SQLAlchemy cost three times the query.
    """
    by_level: dict[int, list[int]] = {}
    for lv, ix in keys:
        by_level.setdefault(int(lv), []).append(int(ix))
    levels = sorted(by_level.items())
    shape = tuple((lv, len(ixs)) for lv, ixs in levels)
    sql = _TILE_SQL.get((shape, mark))
    if sql is None:
        where = " OR ".join(f"(level = {mark} AND idx IN ({', '.join([mark] * n)}))"
                            for _, n in shape)
        sql = _TILE_SQL[(shape, mark)] = (
            f"SELECT level, idx, width, hashes FROM audit_tiles WHERE {where}")
    return sql, tuple(v for lv, ixs in levels for v in (lv, *ixs))


def _entry(r: Any) -> Entry:
    return Entry(int(r.seq), r.ts, r.kind, r.actor, r.subject, r.payload)


class SqlAuditStore:
    """``AuditStore`` over an SQLAlchemy engine (schema by Alembic, ``Store.migrate``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()

    def _reader(self) -> Connection:
        """A per-thread autocommit connection for proof reads: no pool checkout and no
        rollback round trip per proof (the hot path of serving proofs)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[_Txn]:
        with self.engine.begin() as conn:
            # Write first: takes the row lock (PostgreSQL) / the write lock (SQLite)
            # before the size is read, so no two appends see the same size.
            conn.execute(update(t.audit_tree).where(t.audit_tree.c.id == 1)
                         .values(size=t.audit_tree.c.size))
            row = conn.execute(select(t.audit_tree.c.size, t.audit_tree.c.last_ts)
                               .where(t.audit_tree.c.id == 1)).one()
            yield _Txn(conn, int(row.size), row.last_ts)

    def size(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(t.audit_tree.c.size)
                                    .where(t.audit_tree.c.id == 1)).scalar_one())

    def tiles(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], Tile]:
        try:
            return _load_tiles(self._reader(), keys)
        except DBAPIError:
            self.close()  # a dropped connection: the next read opens a new one
            raise

    def close(self) -> None:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def entry(self, seq: int) -> Entry | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(t.audit_log).where(t.audit_log.c.seq == seq)).first()
        return _entry(r) if r is not None else None

    def entries(self, begin: int = 0, end: int | None = None) -> Iterator[Entry]:
        q = select(t.audit_log).where(t.audit_log.c.seq >= begin).order_by(t.audit_log.c.seq)
        if end is not None:
            q = q.where(t.audit_log.c.seq < end)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=5000).execute(q)
            for r in result:
                yield _entry(r)

    def all_tiles(self, level: int) -> Iterator[Tile]:
        c = t.audit_tiles.c
        q = (select(c.level, c.idx, c.width, c.hashes).where(c.level == level)
             .order_by(c.idx))
        with self.engine.connect() as conn:
            for r in conn.execution_options(yield_per=256).execute(q):
                yield Tile(int(r.level), int(r.idx), int(r.width), bytes(r.hashes))

    def heads(self) -> list[StoredHead]:
        c = t.audit_heads.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(c.id, c.size, c.note).order_by(c.id)).all()
        return [StoredHead(int(r.id), int(r.size), str(r.note)) for r in rows]

    def latest_head(self) -> StoredHead | None:
        c = t.audit_heads.c
        with self.engine.connect() as conn:
            r = conn.execute(select(c.id, c.size, c.note).order_by(c.id.desc()).limit(1)).first()
        return StoredHead(int(r.id), int(r.size), str(r.note)) if r else None

    def head_of_size(self, size: int) -> StoredHead | None:
        c = t.audit_heads.c
        with self.engine.connect() as conn:
            r = conn.execute(select(c.id, c.size, c.note).where(c.size == size)
                             .order_by(c.id.desc()).limit(1)).first()
        return StoredHead(int(r.id), int(r.size), str(r.note)) if r else None
