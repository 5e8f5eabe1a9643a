"""Tiles: how the log stores its interior hashes so proofs never rehash leaves.

The layout follows the transparency-log "tiles" of Go's checksum database and
the C2SP ``tlog-tiles`` specification, with one change made for a database
rather than a static file server: a tile here keeps *every* row of its
subtree, not only the bottom one, so any complete node is one slice away.

A tile of height ``H`` (8) at tile level ``L`` and index ``I`` covers tree
levels ``8L .. 8L + 7``: row ``r`` holds the hashes of the nodes at tree level
``8L + r`` with indices ``[I * 256 >> r, (I + 1) * 256 >> r)``, as far as they
are complete. Its *width* is the number of hashes in row 0 (256 when full;
less on the right edge of the tree, where the tile is rewritten as the log
grows). The node at tree level ``8L + 8`` is row 0 of tile level ``L + 1``.

Storage costs 2 x 32 bytes per leaf (every complete node once, in tiles of
16,320 bytes); an inclusion proof at 10 million leaves reads 3 to 6 tiles in
one query and computes at most ``log2 n`` hashes for the right border.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from tapshield.audit.merkle import HASH_SIZE, node_hash

HEIGHT = 8
WIDTH = 1 << HEIGHT


@dataclass(frozen=True, slots=True)
class Tile:
    """One stored tile: ``hashes`` is rows 0..7 concatenated (``width >> r`` per row)."""

    level: int
    index: int
    width: int
    hashes: bytes

    def node(self, row: int, pos: int) -> bytes:
        """Hash of the ``pos``-th node of ``row`` (0 = bottom) in this tile."""
        if pos >= self.width >> row:
            raise KeyError(f"node {pos} of row {row} is not complete in tile "
                           f"{self.level}/{self.index} (width {self.width})")
        off = (_row_offset(self.width, row) + pos) * HASH_SIZE
        return self.hashes[off : off + HASH_SIZE]

    def row(self, r: int) -> list[bytes]:
        off = _row_offset(self.width, r) * HASH_SIZE
        n = self.width >> r
        return [self.hashes[off + i * HASH_SIZE : off + (i + 1) * HASH_SIZE] for i in range(n)]


@functools.cache
def _row_offset(width: int, row: int) -> int:
    return sum(width >> j for j in range(row))


def tile_size(width: int) -> int:
    """Bytes a tile of ``width`` takes."""
    return _row_offset(width, HEIGHT) * HASH_SIZE


def locate(level: int, index: int) -> tuple[int, int, int, int]:
    """Tree node ``(level, index)`` -> ``(tile level, tile index, row, position)``."""
    tl, row = divmod(level, HEIGHT)
    shift = HEIGHT - row
    return tl, index >> shift, row, index & ((1 << shift) - 1)


def tiles_for(nodes: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """The tiles holding a set of tree nodes."""
    return {locate(lv, ix)[:2] for lv, ix in nodes}


def edge_tiles(size: int) -> list[tuple[int, int, int]]:
    """The partial tiles ``(tile level, tile index, width)`` on the right edge of a
    tree of ``size`` leaves: the ones an append will extend."""
    out: list[tuple[int, int, int]] = []
    count = size  # complete nodes at the bottom of this tile level
    tl = 0
    while count:
        width = count & (WIDTH - 1)
        if width:
            out.append((tl, count >> HEIGHT, width))
        count >>= HEIGHT
        tl += 1
    return out


class TileBuilder:
    """Grows the tiles of a tree leaf by leaf, as an append does.

    It holds the partial tile of each tile level (the right edge); ``push``
    adds leaf hashes and computes every interior node exactly once; ``drain``
    returns the tiles that changed since the last drain (completed tiles and
    the current partial ones), ready to be written.
    """

    def __init__(self, size: int = 0, edge: Iterable[Tile] = ()) -> None:
        self.size = size
        self._rows: list[list[list[bytes]]] = []
        self._index: list[int] = []
        self._dirty: set[int] = set()
        self._done: list[Tile] = []
        given = {t.level: t for t in edge}
        for tl, idx, width in edge_tiles(size):
            t = given.get(tl)
            if t is None or t.index != idx or t.width != width:
                raise ValueError(f"right-edge tile {tl}/{idx} of width {width} is missing or "
                                 f"has the wrong width (tree of {size})")
        count, tl = size, 0
        while count or tl == 0:
            self._ensure(tl)
            self._index[tl] = count >> HEIGHT
            if tl in given and count & (WIDTH - 1):
                t = given[tl]
                self._rows[tl] = [t.row(r) for r in range(HEIGHT)]
            count >>= HEIGHT
            tl += 1

    def _ensure(self, tl: int) -> None:
        while len(self._rows) <= tl:
            self._rows.append([[] for _ in range(HEIGHT)])
            self._index.append(0)

    def push(self, leaves: Iterable[bytes]) -> None:
        for h in leaves:
            self._add(0, h)
            self.size += 1

    def _add(self, tl: int, h: bytes) -> None:
        self._ensure(tl)
        rows = self._rows[tl]
        self._dirty.add(tl)
        r = 0
        while True:
            row = rows[r]
            row.append(h)
            if len(row) & 1:
                break
            h = node_hash(row[-2], row[-1])
            if r == HEIGHT - 1:
                # Row 7 completed a pair: the tile is full, its root moves up a tile level.
                self._done.append(self._tile(tl))
                self._rows[tl] = [[] for _ in range(HEIGHT)]
                self._index[tl] += 1
                self._add(tl + 1, h)
                break
            r += 1

    def _tile(self, tl: int) -> Tile:
        rows = self._rows[tl]
        return Tile(tl, self._index[tl], len(rows[0]), b"".join(b"".join(r) for r in rows))

    def drain(self) -> list[Tile]:
        """Tiles changed since the last drain: full ones first, then the partial edge."""
        out = self._done
        self._done = []
        for tl in sorted(self._dirty):
            if self._rows[tl][0]:
                out.append(self._tile(tl))
        self._dirty.clear()
        return out

    def edge(self) -> list[Tile]:
        """The current partial tiles (what a new builder needs to carry on)."""
        return [self._tile(tl) for tl in range(len(self._rows)) if self._rows[tl][0]]
