"""RFC 9162 Merkle tree hashing, proofs and their verification.

The tree is the one Certificate Transparency defines (RFC 9162 section 2.1,
unchanged from RFC 6962): SHA-256, leaves hashed as ``H(0x00 || data)`` and
interior nodes as ``H(0x01 || left || right)``, so a leaf can never be passed
off as a node (second-preimage attacks need that domain separation). A tree of
``n`` leaves is left-balanced: its left subtree holds the largest power of two
smaller than ``n`` leaves.

Here nodes are addressed as ``(level, index)``: the node at ``level`` and
``index`` covers leaves ``[index * 2**level, (index + 1) * 2**level)``. Only
*complete* nodes (all their leaves present) are ever stored; the right border
of a tree whose size is not a power of two is made of "ephemeral" nodes,
recomputed from the complete ones (at most ``log2 n`` hashes). The proof
builders here therefore take a ``node(level, index)`` accessor for complete
nodes, so a proof reads stored hashes and never rehashes leaves; the
verifiers take only the proof, the leaf hash and the signed root, and follow
RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, so a partner can check a
proof with any RFC 9162 implementation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree: SHA-256 of the empty string (RFC 9162 2.1.1)."""

NodeFn = Callable[[int, int], bytes]
"""``node(level, index)`` -> the hash of a complete node."""


def leaf_hash(data: bytes) -> bytes:
    """``H(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``H(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def subtrees(begin: int, end: int) -> list[tuple[int, int]]:
    """The complete nodes, left to right, that exactly cover leaves ``[begin, end)``.

    With ``begin`` aligned (a multiple of the power of two at least ``end -
    begin``, as every range in RFC 9162's recursion is) the sizes strictly
    decrease, and folding them right to left gives ``MTH(D[begin:end])``.
    """
    out: list[tuple[int, int]] = []
    while begin < end:
        # Largest aligned block starting at ``begin`` that fits before ``end``.
        level = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length() - 1
        while begin + (1 << level) > end:
            level -= 1
        out.append((level, begin >> level))
        begin += 1 << level
    return out


def range_hash(begin: int, end: int, node: NodeFn) -> bytes:
    """``MTH(D[begin:end])`` from stored complete nodes (``begin`` aligned, see above)."""
    if begin >= end:
        raise ValueError(f"empty range [{begin}, {end})")
    parts = subtrees(begin, end)
    h = node(*parts[-1])
    for level, index in reversed(parts[:-1]):
        h = node_hash(node(level, index), h)
    return h


def root(size: int, node: NodeFn) -> bytes:
    """The tree head's root hash for a tree of ``size`` leaves."""
    return EMPTY_ROOT if size == 0 else range_hash(0, size, node)


def mth(leaves: Sequence[bytes]) -> bytes:
    """``MTH(D[n])`` over leaf *hashes*, straight from RFC 9162's recursive
    definition. The reference the tile-based code is tested against."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


# -- inclusion ---------------------------------------------------------------


def inclusion_nodes(index: int, size: int) -> list[tuple[int, int, int]]:
    """Which hashes make up the audit path of leaf ``index`` in a tree of ``size``.

    Returns ``(level, begin, end)`` per path element, bottom up: the sibling
    covering leaves ``[begin, end)`` at that level. A sibling whose range is
    a whole complete node is read as is; a right sibling cut off by the end of
    the tree is the ephemeral node ``MTH(D[begin:end])``. Levels where the
    path node has no right sibling (it is promoted) contribute nothing.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    out: list[tuple[int, int, int]] = []
    level = 0
    while (size - 1) >> level:  # until the path node is the root
        sib = (index >> level) ^ 1
        begin = sib << level
        if begin < size:
            out.append((level, begin, min(begin + (1 << level), size)))
        level += 1
    return out


def inclusion_proof(index: int, size: int, node: NodeFn) -> list[bytes]:
    """RFC 9162 ``PATH(index, D[size])`` read from stored complete nodes."""
    out: list[bytes] = []
    for level, begin, end in inclusion_nodes(index, size):
        if end - begin == 1 << level:
            out.append(node(level, begin >> level))
        else:
            out.append(range_hash(begin, end, node))
    return out


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root_hash: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2, step by step."""
    if index >= size or index < 0:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """The root an audit path leads to (the same walk as :func:`verify_inclusion`)."""
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r


# -- consistency -------------------------------------------------------------


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The ranges ``[begin, end)`` whose ``MTH`` make up ``PROOF(first, D[second])``.

    RFC 9162 section 2.1.4.1, written iteratively over the recursion's
    ranges (every range is aligned, so each is a stored node or a fold of a
    few of them).
    """
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    out: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, second, first, True
    tail: list[tuple[int, int]] = []
    while m != hi - lo:
        n = hi - lo
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            tail.append((lo + k, hi))
            hi = lo + k
        else:
            tail.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        out.append((lo, hi))
    out.extend(reversed(tail))
    return out


def consistency_proof(first: int, second: int, node: NodeFn) -> list[bytes]:
    """RFC 9162 ``PROOF(first, D[second])`` read from stored complete nodes."""
    if first == second:
        return []
    return [range_hash(b, e, node) for b, e in consistency_ranges(first, second)]


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2, step by step (plus the trivial cases it leaves out)."""
    if first < 0 or second < first:
        return False
    if first == second:
        return len(path) == 0 and first_root == second_root
    if first == 0:
        return len(path) == 0  # everything is consistent with the empty tree
    if not path:
        return False
    proof = list(path)
    if first & (first - 1) == 0:  # an exact power of two
        proof.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


class CompactRange:
    """The right border of a growing tree: one hash per set bit of its size.

    What a verifier streaming the leaves keeps to know the root at any size
    it passes through (log2 n hashes of memory, one node hash per leaf on
    average).
    """

    __slots__ = ("_hashes", "size")

    def __init__(self) -> None:
        self.size = 0
        self._hashes: list[bytes] = []  # complete subtrees, largest (leftmost) first

    def append(self, leaf: bytes) -> None:
        h = leaf
        n = self.size
        while n & 1:
            h = node_hash(self._hashes.pop(), h)
            n >>= 1
        self._hashes.append(h)
        self.size += 1

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        h = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            h = node_hash(left, h)
        return h
