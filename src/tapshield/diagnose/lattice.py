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
    """Group index of every leaf."""
    rep: np.ndarray
    """One leaf of each group (to read the group's values)."""

    @property
    def groups(self) -> int:
        return int(self.rep.shape[0])

    def sum(self, x: np.ndarray) -> np.ndarray:
        return np.bincount(self.gid, weights=x, minlength=self.groups)


class Lattice:
    """All cuboids of ``cube`` with depth ``0..max_depth`` (depth 0 = everything)."""

    def __init__(self, cube: Cube, max_depth: int) -> None:
        self.cube = cube
        n_dims = len(cube.dims)
        self.max_depth = min(max_depth, n_dims)
        leaves = cube.leaves
        top = Cuboid((), np.zeros(leaves, dtype=np.int64),
                     np.zeros(1 if leaves else 0, dtype=np.int64))
        self.cuboids: list[Cuboid] = [top]
        by_dims: dict[tuple[int, ...], Cuboid] = {(): top}
        cards = cube.cards
        for depth in range(1, self.max_depth + 1):
            for dims in combinations(range(n_dims), depth):
                parent = by_dims[dims[:-1]]
                last = dims[-1]
                key = parent.gid * cards[last] + cube.codes[:, last]
                _, rep, gid = np.unique(key, return_index=True, return_inverse=True)
                c = Cuboid(dims, gid.astype(np.int64).reshape(-1), rep.astype(np.int64))
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
