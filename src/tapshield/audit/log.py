"""The transparency log: append records, sign tree heads, serve proofs.

:class:`AuditLog` is what the pipeline, the service and the command line
call. It owns the rules (canonical leaves, tiles, when to sign a head); the
database sits behind the small :class:`AuditStore` port, implemented with
SQLAlchemy Core for SQLite and PostgreSQL in ``tapshield.storage.audit``.

Appends are serialised by the store (a row lock on PostgreSQL, the write
lock on SQLite), so several processes can append to one log: each
transaction reads the tree size under the lock, and this object's cached
right edge is reloaded whenever another writer moved it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from tapshield.audit import merkle
from tapshield.audit.canonical import (
    JsonValue,
    format_ts,
    leaf_bytes,
    leaf_text,
    payload_text,
)
from tapshield.audit.checkpoint import Checkpoint, NoteSigner, sign_note
from tapshield.audit.tiles import WIDTH, Tile, TileBuilder, edge_tiles, locate, tiles_for

DEFAULT_ORIGIN = "tapshield.local/audit"
FULL_TILE_CACHE = 2048
"""Full tiles kept in memory for proofs (16 KiB each: 32 MiB at most)."""

MAX_KIND = 64
MAX_ACTOR = 128
MAX_SUBJECT = 256


@dataclass(frozen=True, slots=True)
class Entry:
    """One leaf of the log as stored: position, time, what, who, about what, details."""

    seq: int
    ts: datetime
    kind: str
    actor: str
    subject: str
    payload: JsonValue
    payload_json: str | None = field(default=None, compare=False, repr=False)
    """The payload's canonical text when the log just made it (spares the store a dump)."""

    def leaf(self) -> bytes:
        return leaf_bytes(self.seq, self.ts, self.kind, self.actor, self.subject, self.payload)

    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.leaf())

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": format_ts(self.ts), "kind": self.kind,
                "actor": self.actor, "subject": self.subject, "payload": self.payload}


class Record(NamedTuple):
    """What a caller appends; the log adds the position and the time."""

    kind: str
    actor: str
    subject: str
    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StoredHead:
    """A signed tree head as the store keeps it: its note is the authority."""

    id: int
    size: int
    note: str


class AppendTxn(Protocol):
    """One locked append transaction."""

    @property
    def size(self) -> int: ...

    @property
    def last_ts(self) -> datetime | None: ...

    def tiles(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], Tile]: ...

    def write(self, entries: Sequence[Entry], tiles: Sequence[Tile], size: int) -> None: ...

    def add_head(self, checkpoint: Checkpoint, note: str) -> None: ...

    def last_head(self) -> StoredHead | None: ...


class AuditStore(Protocol):
    """Where the log lives (``audit_log``, ``audit_tiles``, ``audit_heads``, ``audit_tree``)."""

    def transaction(self) -> AbstractContextManager[AppendTxn]: ...

    def size(self) -> int: ...

    def tiles(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], Tile]: ...

    def entry(self, seq: int) -> Entry | None: ...

    def entries(self, begin: int = 0, end: int | None = None) -> Iterator[Entry]:
        """Rows in ``seq`` order as they are stored (gaps and all)."""
        ...

    def all_tiles(self, level: int) -> Iterator[Tile]:
        """The tiles of one tile level in index order."""
        ...

    def heads(self) -> list[StoredHead]: ...

    def latest_head(self) -> StoredHead | None: ...

    def head_of_size(self, size: int) -> StoredHead | None:
        """The newest head signed for exactly ``size`` entries."""
        ...


@dataclass(frozen=True, slots=True)
class HeadPolicy:
    """When a tree head is signed: after so many entries or so much time, whichever first.

    A head bounds what an insider can rewrite unnoticed by partners (only the
    entries after the newest head they hold), so heads are cheap and frequent;
    ``sign_head(force=True)`` signs at once (e.g. on shutdown, or before
    sending a head to a partner).
    """

    every_entries: int = 10_000
    every_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Everything a partner needs to check that one record is in the log, offline."""

    entry: Entry
    size: int
    path: list[bytes]
    note: str | None
    """The signed head of ``size`` the path leads to (``None``: an unsigned size)."""

    def to_dict(self) -> dict[str, Any]:
        import base64

        return {
            "entry": self.entry.to_dict(),
            "leaf_index": self.entry.seq,
            "tree_size": self.size,
            "inclusion_path": [base64.b64encode(h).decode() for h in self.path],
            "checkpoint": self.note,
        }


def tile_node(tiles: Mapping[tuple[int, int], Tile]) -> merkle.NodeFn:
    """A ``node(level, index)`` accessor over loaded tiles."""

    def node(level: int, index: int) -> bytes:
        tl, ti, row, pos = locate(level, index)
        t = tiles.get((tl, ti))
        if t is None:
            raise KeyError(f"tile {tl}/{ti} (node {level}/{index}) is not stored")
        return t.node(row, pos)

    return node


def root_nodes(size: int) -> list[tuple[int, int]]:
    return merkle.subtrees(0, size)


def inclusion_needs(index: int, size: int) -> set[tuple[int, int]]:
    """The complete nodes an inclusion proof reads."""
    need: set[tuple[int, int]] = set()
    for level, begin, end in merkle.inclusion_nodes(index, size):
        if end - begin == 1 << level:
            need.add((level, begin >> level))
        else:
            need.update(merkle.subtrees(begin, end))
    return need


def consistency_needs(first: int, second: int) -> set[tuple[int, int]]:
    need: set[tuple[int, int]] = set()
    if 0 < first < second:
        for b, e in merkle.consistency_ranges(first, second):
            need.update(merkle.subtrees(b, e))
    return need


class AuditLog:
    """Append-only, Merkle-hashed, signed at intervals. See docs/trust.md."""

    def __init__(
        self,
        store: AuditStore,
        *,
        signer: NoteSigner | None = None,
        origin: str | None = None,
        policy: HeadPolicy | None = None,
        on_head: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.origin = origin or (signer.name if signer is not None else DEFAULT_ORIGIN)
        self.policy = policy or HeadPolicy()
        self.on_head = on_head
        self._clock = clock or (lambda: datetime.now(UTC))
        self._builder: TileBuilder | None = None
        self._pending_notes: list[str] = []
        self._full: dict[tuple[int, int], Tile] = {}
        """Full tiles never change again (the log is append-only): proofs keep the ones
        they read, like a CT log's tile cache, up to ``FULL_TILE_CACHE`` of them."""

    # -- appending ------------------------------------------------------------

    def append(
        self, kind: str, actor: str, subject: str, payload: Mapping[str, Any] | None = None
    ) -> int:
        """Append one record; returns its position (``seq``, the leaf index)."""
        return self.append_batch([Record(kind, actor, subject, payload)])[0]

    def append_batch(self, records: Iterable[Record | tuple[Any, ...]]) -> list[int]:
        """Append records in one transaction (all or none); returns their positions."""
        prepared = [_prepare(*r) for r in records]
        if not prepared:
            return []
        try:
            with self.store.transaction() as tx:
                builder = self._edge(tx)
                ts = self._clock()
                if tx.last_ts is not None and ts < tx.last_ts:
                    ts = tx.last_ts  # time never runs backwards in the log
                first = tx.size
                stamp = format_ts(ts)
                entries = [Entry(first + i, ts, k, a, s, p, text)
                           for i, (k, a, s, p, text) in enumerate(prepared)]
                builder.push(merkle.leaf_hash(leaf_text(
                    e.seq, stamp, e.kind, e.actor, e.subject, text).encode("utf-8"))
                    for e, (_, _, _, _, text) in zip(entries, prepared, strict=True))
                tx.write(entries, builder.drain(), builder.size)
                self._maybe_sign(tx, builder, ts, force=False)
        except BaseException:
            self._builder = None  # the cached edge may be ahead of what was committed
            self._pending_notes.clear()
            raise
        self._publish()
        return list(range(first, first + len(entries)))

    def sign_head(self, *, force: bool = False) -> str | None:
        """Sign a head for the current size if the tree grew since the last one (or
        always, with ``force``); returns the new note or ``None``."""
        if self.signer is None:
            raise RuntimeError("this log has no signing key (see `tapshield audit keygen`)")
        note: str | None = None
        try:
            with self.store.transaction() as tx:
                builder = self._edge(tx)
                ts = max(self._clock(), tx.last_ts) if tx.last_ts else self._clock()
                note = self._maybe_sign(tx, builder, ts, force=force, grew=True)
        except BaseException:
            self._builder = None
            self._pending_notes.clear()
            raise
        self._publish()
        return note

    def _edge(self, tx: AppendTxn) -> TileBuilder:
        b = self._builder
        if b is None or b.size != tx.size:
            keys = [(tl, ti) for tl, ti, _ in edge_tiles(tx.size)]
            b = TileBuilder(tx.size, tx.tiles(keys).values())
            self._builder = b
        return b

    def _maybe_sign(
        self, tx: AppendTxn, builder: TileBuilder, ts: datetime, *, force: bool,
        grew: bool = False,
    ) -> str | None:
        """Sign a head now if ``force``, if ``grew`` and the tree grew since the last
        head, or else if the policy says one is due."""
        if self.signer is None:
            return None
        last = tx.last_head()
        size = builder.size
        if last is not None and last.size == size and not force:
            return None
        if not force and not grew:
            due = last is None or size - last.size >= self.policy.every_entries
            if not due and last is not None:
                body = last.note[: last.note.rfind("\n\n") + 1]
                last_ts = Checkpoint.parse(body).timestamp
                due = (ts - last_ts).total_seconds() >= self.policy.every_seconds
            if not due:
                return None
        edge = {(t.level, t.index): t for t in builder.edge()}
        root = merkle.root(size, tile_node(edge))
        cp = Checkpoint(self.origin, size, root, ts)
        note = sign_note(cp.body(), self.signer)
        tx.add_head(cp, note)
        self._pending_notes.append(note)
        return note

    def _publish(self) -> None:
        notes, self._pending_notes = self._pending_notes, []
        if self.on_head is not None:
            for n in notes:
                self.on_head(n)

    # -- reading --------------------------------------------------------------

    def size(self) -> int:
        return self.store.size()

    def root(self, size: int | None = None) -> bytes:
        n = self.store.size() if size is None else size
        nodes = root_nodes(n)
        return merkle.root(n, tile_node(self._tiles(tiles_for(nodes))))

    def latest_head(self) -> StoredHead | None:
        return self.store.latest_head()

    def head_for(self, size: int) -> StoredHead | None:
        return self.store.head_of_size(size)

    def inclusion_proof(self, seq: int, size: int | None = None) -> InclusionProof:
        """Proof that entry ``seq`` is in the tree of ``size`` (default: the newest signed
        head, or the current size if nothing is signed yet)."""
        note: str | None = None
        if size is None:
            head = self.latest_head()
            if head is not None and head.size > seq:
                size, note = head.size, head.note
            else:
                size = self.store.size()
        else:
            h = self.head_for(size)
            note = h.note if h is not None else None
        if not 0 <= seq < size:
            raise IndexError(f"entry {seq} is not in a tree of {size} entries")
        entry = self.store.entry(seq)
        if entry is None:
            raise IndexError(f"entry {seq} is not in the log")
        return InclusionProof(entry, size, self.inclusion_path(seq, size), note)

    def inclusion_path(self, seq: int, size: int) -> list[bytes]:
        """Just the audit path (the hot path: at most one query for the tiles, no leaf
        rehash; at most ``log2 size`` node hashes for the right border)."""
        need = inclusion_needs(seq, size)
        return merkle.inclusion_proof(seq, size, tile_node(self._tiles(tiles_for(need))))

    def _tiles(self, keys: set[tuple[int, int]]) -> dict[tuple[int, int], Tile]:
        out = {k: self._full[k] for k in keys if k in self._full}
        missing = keys - out.keys()
        if missing:
            got = self.store.tiles(missing)
            out.update(got)
            for k, t in got.items():
                if t.width == WIDTH:
                    if len(self._full) >= FULL_TILE_CACHE:
                        self._full.pop(next(iter(self._full)))
                    self._full[k] = t
        return out

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        if not 0 <= first <= second <= self.store.size():
            raise IndexError(f"no consistency proof from {first} to {second}")
        if first in (0, second):
            return []
        need = consistency_needs(first, second)
        return merkle.consistency_proof(first, second, tile_node(self._tiles(tiles_for(need))))


def _prepare(
    kind: str, actor: str, subject: str, payload: Mapping[str, Any] | None = None
) -> tuple[str, str, str, JsonValue, str]:
    if not (type(kind) is str and type(actor) is str and type(subject) is str
            and 0 < len(kind) <= MAX_KIND and 0 < len(actor) <= MAX_ACTOR
            and 0 < len(subject) <= MAX_SUBJECT and not kind.isspace()
            and not actor.isspace() and not subject.isspace()
            and "\x00" not in kind and "\x00" not in actor and "\x00" not in subject):
        for name, value, limit in (("kind", kind, MAX_KIND), ("actor", actor, MAX_ACTOR),
                                   ("subject", subject, MAX_SUBJECT)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"audit record: {name} must be a non-empty string")
            if len(value) > limit or "\x00" in value:
                raise ValueError(f"audit record: {name} is longer than {limit} or holds a NUL")
    body, text = payload_text(payload if payload is not None else {})
    if not isinstance(body, dict):
        raise ValueError("audit record: the payload must be a JSON object")
    return kind, actor, subject, body, text
