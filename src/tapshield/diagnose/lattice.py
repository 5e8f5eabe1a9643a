"""The lattice of combinations: every cuboid (set of dimensions) up to a depth.

A *cuboid* is a set of dimensions, e.g. ``(channel, region)``; its *groups*
are the combinations of values that occur, e.g. ``{channel: nfc, region:
CN-GD}``. For each cuboid the lattice stores, per leaf, the index of the group
the leaf belongs to, so any per-leaf quantity sums to per-group quantities
with one ``np.bincount``: the whole search is vectorised over leaves.

Cuboid group ids are built from the parent cuboid (one dimension fewer), so
each costs one sort of the leaves however deep it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from tapshield.diagnose.cube import Cube


@dataclass(frozen=True, slots=True)
class Cuboid:
    dims: tuple[int, ...]
    gid: np.ndarray
    """Group index of every leaf (``-1``: the leaf was pruned from this cuboid)."""
    rep: np.ndarray
    """One leaf of each group (to read the group's values)."""
    live: np.ndarray | None = None
    """Indices of the leaves kept (``None`` = all)."""

    @property
    def groups(self) -> int:
        return int(self.rep.shape[0])

    def sum(self, x: np.ndarray) -> np.ndarray:
        if self.live is None:
            return np.bincount(self.gid, weights=x, minlength=self.groups)
        return np.bincount(self.gid[self.live], weights=x[self.live], minlength=self.groups)


class Lattice:
    """All cuboids of ``cube`` with depth ``0..max_depth`` (depth 0 = everything).

    With ``score`` and ``floor``, the lattice is pruned Apriori-style: a group
    whose summed ``score`` is below ``floor`` cannot hold a candidate, and since
    ``score`` is non-negative neither can any group nested in it, so a deeper
    cuboid only groups the leaves whose every parent group reached the floor.
    The localiser passes each leaf's excess failures over its baseline and the
    materiality floor: a cause must add at least that many failures.
    """

    def __init__(self, cube: Cube, max_depth: int, *, score: np.ndarray | None = None,
                 floor: float = 0.0) -> None:
        self.cube = cube
        n_dims = len(cube.dims)
        self.max_depth = min(max_depth, n_dims)
        leaves = cube.leaves
        top = Cuboid((), np.zeros(leaves, dtype=np.int64),
                     np.zeros(1 if leaves else 0, dtype=np.int64))
        self.cuboids: list[Cuboid] = [top]
        by_dims: dict[tuple[int, ...], Cuboid] = {(): top}
        alive_groups: dict[tuple[int, ...], np.ndarray] = {}
        cards = cube.cards
        prune = score is not None
        if prune:
            assert score is not None
            alive_groups[()] = top.sum(score) >= floor
        self.space = 1 if leaves else 0
        """Upper bound of the number of groups in the whole lattice (for Bonferroni)."""
        for depth in range(1, self.max_depth + 1):
            for dims in combinations(range(n_dims), depth):
                self.space += int(min(np.prod(cards[list(dims)], dtype=float), leaves))
                parent = by_dims[dims[:-1]]
                last = dims[-1]
                if not prune:
                    key = parent.gid * cards[last] + cube.codes[:, last]
                    gid, rep = _compact(key, parent.groups * int(cards[last]))
                    c = Cuboid(dims, gid, rep)
                else:
                    assert score is not None
                    # Start from the parent's surviving leaves, keep those whose
                    # group reached the floor in every parent cuboid.
                    live = (parent.live if parent.live is not None
                            else np.arange(leaves, dtype=np.int64))
                    for drop in range(depth):
                        sub = dims[:drop] + dims[drop + 1:]
                        if sub not in by_dims or live.size == 0:
                            continue
                        # gid -1 (pruned) reads the appended False.
                        alive = np.append(alive_groups[sub], False)
                        live = live[alive[by_dims[sub].gid[live]]]
                    gid = np.full(leaves, -1, dtype=np.int64)
                    key = parent.gid[live] * cards[last] + cube.codes[live, last]
                    g_live, rep_local = _compact(key, max(parent.groups, 1) * int(cards[last]))
                    gid[live] = g_live
                    c = Cuboid(dims, gid, live[rep_local], live)
                    alive_groups[dims] = c.sum(score) >= floor
                by_dims[dims] = c
                self.cuboids.append(c)
        self.by_dims = by_dims
        self.total_groups = sum(c.groups for c in self.cuboids)

    def __iter__(self) -> Iterator[Cuboid]:
        return iter(self.cuboids)

    def combination(self, cuboid: Cuboid, group: int) -> dict[str, str]:
        return self.cube.values(int(cuboid.rep[group]), cuboid.dims)

    def members(self, cuboid: Cuboid, group: int) -> np.ndarray:
        return np.asarray(cuboid.gid == group)


def _compact(key: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense group ids ``0..k-1`` for ``key`` and the first leaf of each group.

    A direct-address table when the key space is small (linear time), else a
    sort; both number groups in increasing key order.
    """
    n = key.shape[0]
    if space <= max(4 * n, 1 << 16):
        first = np.full(space, n, dtype=np.int64)
        np.minimum.at(first, key, np.arange(n, dtype=np.int64))
        present = first < n
        index = np.cumsum(present) - 1
        return index[key].astype(np.int64), first[present]
    _, rep, gid = np.unique(key, return_index=True, return_inverse=True)
    return gid.astype(np.int64).reshape(-1), rep.astype(np.int64)
