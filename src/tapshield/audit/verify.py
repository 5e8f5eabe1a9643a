"""Check a whole log offline: every entry, every stored hash, every signed head.

What is trusted: the verifier keys given (never keys read from the database)
and signed heads, wherever they were kept (the ``audit_heads`` table, a
witness file, a partner's copy). What is checked, in one pass over the rows
in ``seq`` order:

1. every head's signature, its origin, and that heads agree with each other
   (one root per size, time not running backwards as the tree grows);
2. positions are 0, 1, 2, ... without gaps;
3. each row, rebuilt as its canonical leaf, hashes to what the tiles stored
   when it was appended, and the tiles hash up consistently;
4. at each signed size, the root recomputed from the rows equals the signed
   root;
5. no signed head is larger than the log (nothing was cut off the end).

The report names the first bad entry. When an insider rewrote rows *and*
every stored hash consistently, nothing in the database tells which row they
changed first: the report then names the first entry after the newest head
that still verifies, i.e. the first entry whose integrity can no longer be
proven, and says so (docs/trust.md, "what an insider can and cannot do").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tapshield.audit import merkle
from tapshield.audit.canonical import format_ts, leaf_text
from tapshield.audit.checkpoint import Checkpoint, NoteError, Verifier, open_note
from tapshield.audit.log import AuditStore, root_nodes, tile_node
from tapshield.audit.tiles import HEIGHT, WIDTH, Tile, TileBuilder, edge_tiles, tiles_for

_DUMPS = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=True).encode
"""Canonical dumps that does not raise on a tampered value (a float, a NaN): such a row
must be reported as not matching, not crash the verifier."""

CHECK_EVERY = 64 * WIDTH
"""Leaves between two comparisons of recomputed tiles with the stored ones."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong. ``entry`` is the first entry it implicates; ``exact`` says
    whether that entry is known to be bad or only the first one not provably good."""

    entry: int | None
    message: str
    exact: bool = True
    last: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"entry": self.entry, "last": self.last, "exact": self.exact,
                "message": self.message}


@dataclass(frozen=True, slots=True)
class TrustedHead:
    checkpoint: Checkpoint
    source: str


@dataclass(slots=True)
class Report:
    rows: int = 0
    tree_size: int = 0
    heads: int = 0
    witness_heads: int = 0
    newest_head: int | None = None
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_bad(self) -> Finding | None:
        with_entry = [f for f in self.findings if f.entry is not None]
        exact = [f.entry for f in with_entry if f.exact]
        # An inexact finding names a range ("somewhere in #0..#255"); when an exact
        # finding inside that range explains it, the exact one is the first bad entry.
        with_entry = [f for f in with_entry if f.exact or not any(
            f.entry <= e <= (f.last if f.last is not None else f.entry)  # type: ignore[operator]
            for e in exact)]
        if with_entry:
            return min(with_entry, key=lambda f: (f.entry, not f.exact))
        return self.findings[0] if self.findings else None

    @property
    def unsigned(self) -> int:
        return self.rows - (self.newest_head or 0)

    def to_dict(self) -> dict[str, Any]:
        fb = self.first_bad
        return {
            "ok": self.ok, "rows": self.rows, "tree_size": self.tree_size,
            "heads": self.heads, "witness_heads": self.witness_heads,
            "newest_signed_size": self.newest_head,
            "unsigned_entries": max(self.unsigned, 0),
            "first_bad_entry": fb.entry if fb is not None else None,
            "findings": [f.to_dict() for f in self.findings],
            "warnings": self.warnings, "seconds": round(self.seconds, 3),
        }


def _trusted_heads(
    store: AuditStore, verifiers: Sequence[Verifier], origin: str,
    witness: Iterable[tuple[str, str]], report: Report,
) -> list[TrustedHead]:
    out: list[TrustedHead] = []
    sources: list[tuple[str, str, int | None]] = [
        (f"audit_heads id {h.id}", h.note, h.size) for h in store.heads()]
    n_db = len(sources)
    sources += [(src, note, None) for src, note in witness]
    for i, (src, note, stored_size) in enumerate(sources):
        try:
            cp, _ = open_note(note, verifiers)
        except NoteError as exc:
            report.findings.append(Finding(None, f"signed head {src}: {exc}"))
            continue
        if cp.origin != origin:
            report.findings.append(Finding(
                None, f"signed head {src} is for log {cp.origin!r}, not {origin!r}"))
            continue
        if stored_size is not None and stored_size != cp.size:
            report.findings.append(Finding(
                min(stored_size, cp.size),
                f"{src}: its size column says {stored_size} but the signed note says {cp.size}"))
        out.append(TrustedHead(cp, src))
        if i < n_db:
            report.heads += 1
        else:
            report.witness_heads += 1
    by_size: dict[int, TrustedHead] = {}
    for h in out:
        other = by_size.setdefault(h.checkpoint.size, h)
        if other.checkpoint.root != h.checkpoint.root:
            report.findings.append(Finding(
                0 if h.checkpoint.size == 0 else None,
                f"two signed heads of size {h.checkpoint.size} disagree ({other.source} and "
                f"{h.source}): the log was forked or rewritten"))
    latest: tuple[datetime, int, str] | None = None
    for h in sorted(out, key=lambda x: (x.checkpoint.size, x.checkpoint.timestamp)):
        cp = h.checkpoint
        if latest is not None and cp.timestamp < latest[0] and cp.size > latest[1]:
            report.warnings.append(
                f"{h.source} (size {cp.size}) is dated before {latest[2]} "
                f"(size {latest[1]}): clocks or a replayed head")
        if latest is None or cp.timestamp >= latest[0]:
            latest = (cp.timestamp, cp.size, h.source)
    return out


def verify(
    store: AuditStore,
    verifiers: Sequence[Verifier],
    *,
    origin: str,
    witness: Iterable[tuple[str, str]] = (),
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify the log in ``store`` against heads signed by ``verifiers``.

    ``witness``: ``(source, signed note)`` pairs kept outside the database.
    """
    import time

    t0 = time.perf_counter()
    report = Report()
    heads = _trusted_heads(store, verifiers, origin, witness, report)
    report.tree_size = store.size()
    if not verifiers:
        report.warnings.append("no verifier key given: signed heads were not checked")
    elif not heads:
        report.warnings.append("no signed head verifies: only the stored hashes were checked")
    sizes = sorted({h.checkpoint.size for h in heads})
    by_size: dict[int, list[TrustedHead]] = {}
    for h in heads:
        by_size.setdefault(h.checkpoint.size, []).append(h)

    builder = TileBuilder()
    expected = 0
    next_head = 0  # index into sizes
    while next_head < len(sizes) and sizes[next_head] == 0:
        next_head += 1
    good_size = 0  # largest signed size whose root the rows reproduce
    first_gap: Finding | None = None
    first_leaf: int | None = None  # first leaf differing from its stored hash
    tile_findings: list[Finding] = []
    removed: list[Finding] = []
    head_failure: tuple[int, TrustedHead] | None = None

    def compare_tiles(tiles: list[Tile]) -> None:
        nonlocal first_leaf
        if not tiles:
            return
        stored = store.tiles([(x.level, x.index) for x in tiles])
        for x in tiles:
            s = stored.get((x.level, x.index))
            if s is not None and s.width == x.width and s.hashes == x.hashes:
                continue
            lo = x.index << (HEIGHT * (x.level + 1))
            if s is None:
                tile_findings.append(Finding(
                    lo, f"stored tile {x.level}/{x.index} (entries from #{lo}) is missing",
                    exact=False, last=lo + (1 << (HEIGHT * (x.level + 1))) - 1))
                continue
            diff = _first_difference(x, s)
            if diff is None:  # pragma: no cover - equal rows mean equal tiles
                continue
            level, index, mine, theirs = diff
            first = index << level
            if level == 0 and mine is not None and theirs is not None:
                if first_leaf is None or first < first_leaf:
                    first_leaf = first
            elif mine is None:
                gone = max(first, builder.size)
                removed.append(Finding(
                    gone, f"entries from #{gone} were removed: the stored hashes still "
                    "cover them"))
            elif level == 0:
                removed.append(Finding(
                    first, f"entry #{first} has no stored hash: it was not appended through "
                    "the log"))
            elif theirs is not None:
                tile_findings.append(Finding(
                    first, f"the stored hash of entries #{first}..#{first + (1 << level) - 1} "
                    f"(tile {x.level}/{x.index}) does not match them", exact=False,
                    last=first + (1 << level) - 1))

    pending = 0
    stamp: tuple[datetime | None, str] = (None, "")
    for e in store.entries():
        if e.seq != expected:
            if first_gap is None:
                if e.seq > expected:
                    what = (f"entry #{expected} is missing" if e.seq == expected + 1 else
                            f"entries #{expected}..#{e.seq - 1} are missing")
                    first_gap = Finding(expected, f"{what} (the next stored entry is #{e.seq})")
                else:  # pragma: no cover - seq is the primary key, rows come sorted
                    first_gap = Finding(e.seq, f"entry #{e.seq} appears out of order")
            expected = e.seq
        if e.ts != stamp[0]:
            stamp = (e.ts, format_ts(e.ts))
        leaf = leaf_text(e.seq, stamp[1], e.kind, e.actor, e.subject, _canonical(e.payload))
        builder.push((merkle.leaf_hash(leaf.encode("utf-8")),))
        expected += 1
        pending += 1
        n = builder.size
        if next_head < len(sizes) and n == sizes[next_head]:
            edge = {(x.level, x.index): x for x in builder.edge()}
            got = merkle.root(n, tile_node(edge))
            for h in by_size[n]:
                if got != h.checkpoint.root and head_failure is None:
                    head_failure = (good_size, h)
            if head_failure is None:
                good_size = n
            next_head += 1
        if pending >= CHECK_EVERY:
            compare_tiles([x for x in builder.drain() if x.width == WIDTH])
            pending = 0
            if progress is not None:
                progress(n)
    report.rows = builder.size
    # the full tiles not yet compared, then the partial right edge
    compare_tiles([x for x in builder.drain() if x.width == WIDTH] + builder.edge())

    rows = builder.size
    if first_gap is not None:
        report.findings.append(first_gap)
    if head_failure is not None:
        report.findings.append(_explain(store, head_failure, first_leaf))
    elif first_leaf is not None:
        if first_leaf < good_size:
            report.findings.append(Finding(
                first_leaf, f"the stored hash of entry #{first_leaf} was changed (the entry "
                f"itself verifies against the signed head of size {good_size}); proofs "
                "served for it would fail"))
        else:
            report.findings.append(Finding(
                first_leaf, f"entry #{first_leaf} does not hash to the value recorded when it "
                "was appended: it was altered, inserted, deleted or moved"))
    if head_failure is None:
        report.findings.extend(tile_findings)
    report.findings.extend(removed)
    for size in sizes:
        if size > rows:
            h = by_size[size][0]
            report.findings.append(Finding(
                rows, f"the signed head of size {size} ({h.source}, "
                f"{h.checkpoint.timestamp.isoformat()}) covers entries up to #{size - 1}, "
                f"but the log ends at #{rows - 1}: entries #{rows}..#{size - 1} were removed",
                last=size - 1))
            break
    if report.tree_size != rows:
        report.findings.append(Finding(
            min(rows, report.tree_size),
            f"the log's recorded size is {report.tree_size} but it holds {rows} entries"))
    _stale_tiles(store, rows, report)
    report.newest_head = good_size if heads else None
    report.seconds = time.perf_counter() - t0
    return report


def _canonical(payload: Any) -> str:
    """The canonical text of a payload read back from the database (dumped as it is:
    whatever was stored, normalised or not, is what gets hashed)."""
    return str(_DUMPS(payload))


def _first_difference(
    mine: Tile, theirs: Tile
) -> tuple[int, int, bytes | None, bytes | None] | None:
    """The lowest differing node of two copies of a tile: ``(tree level, node index,
    my hash, stored hash)``, a hash ``None`` where that copy lacks the node."""
    for r in range(HEIGHT):
        a_row, b_row = mine.row(r), theirs.row(r)
        for pos in range(max(len(a_row), len(b_row))):
            a = a_row[pos] if pos < len(a_row) else None
            b = b_row[pos] if pos < len(b_row) else None
            if a != b:
                return (HEIGHT * mine.level + r, (mine.index << (HEIGHT - r)) + pos, a, b)
    return None


def _explain(
    store: AuditStore, failure: tuple[int, TrustedHead], first_leaf: int | None
) -> Finding:
    good, head = failure
    cp = head.checkpoint
    where = f"the signed head of size {cp.size} ({head.source}, {cp.timestamp.isoformat()})"
    try:
        nodes = root_nodes(cp.size)
        stored_root = merkle.root(cp.size, tile_node(store.tiles(tiles_for(nodes))))
    except KeyError:
        stored_root = None
    if first_leaf is not None and first_leaf < cp.size and stored_root == cp.root:
        return Finding(first_leaf, f"entry #{first_leaf} is not the entry {where} signed: "
                       "it was altered, inserted, deleted or moved")
    return Finding(
        good, f"entries #{good}..#{cp.size - 1} do not reproduce {where}, and the stored "
        "hashes were rewritten to match them: the tail was rewritten. The first entry whose "
        f"integrity cannot be proven is #{good} (heads up to size {good} still verify)",
        exact=False, last=cp.size - 1)


def _stale_tiles(store: AuditStore, rows: int, report: Report) -> None:
    """Tiles beyond the end of the log (left behind when rows were deleted)."""
    expect = {(tl, ti) for tl, ti, _ in edge_tiles(rows)}
    count, tl = rows, 0
    probes: list[tuple[int, int]] = []
    while True:
        probes.append((tl, (count >> HEIGHT) + (1 if count & (WIDTH - 1) else 0)))
        if count == 0:
            break
        count >>= HEIGHT
        tl += 1
    stored = store.tiles([p for p in probes if p not in expect])
    if stored and not any(f.entry == rows for f in report.findings):
        k = min(stored)
        report.findings.append(Finding(
            rows, f"stored tile {k[0]}/{k[1]} lies beyond the last entry #{rows - 1}: "
            "entries after it were removed"))
