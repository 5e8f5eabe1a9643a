"""RFC 9162 hashing and proofs: the published CT vectors, and the tile-based proofs
against RFC 9162's recursive definitions for every tree shape Hypothesis finds."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.audit import merkle
from tapshield.audit.log import tile_node
from tapshield.audit.tiles import WIDTH, Tile, TileBuilder, edge_tiles

H = bytes.fromhex
# The test vectors of Certificate Transparency's reference implementation.
LEAF_INPUTS = [H(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                              "606162636465666768696a6b6c6d6e6f")]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (leaf index, tree size, path)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [  # (first, second, path)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
LEAVES = [merkle.leaf_hash(d) for d in LEAF_INPUTS]


def _tiles(leaves: Sequence[bytes], chunks: Sequence[int] = ()) -> dict[tuple[int, int], Tile]:
    """Tiles as appends in ``chunks`` leave them (restarting from the stored edge each time)."""
    stored: dict[tuple[int, int], Tile] = {}
    b = TileBuilder()
    i, c = 0, 0
    while i < len(leaves):
        k = chunks[c % len(chunks)] if chunks else len(leaves)
        c += 1
        b.push(leaves[i : i + k])
        i += k
        for t in b.drain():
            stored[(t.level, t.index)] = t
        b = TileBuilder(b.size, [stored[(tl, ti)] for tl, ti, _ in edge_tiles(b.size)])
    return stored


# RFC 9162 2.1.3.1 and 2.1.4.1, literally: the reference the stored-node code must equal.
def _path(m: int, d: Sequence[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, d[:k]), merkle.mth(d[k:])]
    return [*_path(m - k, d[k:]), merkle.mth(d[:k])]


def _subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [merkle.mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, d[:k], b), merkle.mth(d[k:])]
    return [*_subproof(m - k, d[k:], False), merkle.mth(d[:k])]


def test_roots_match_the_ct_vectors() -> None:
    for n in range(9):
        assert merkle.mth(LEAVES[:n]).hex() == ROOTS[n]
        assert merkle.root(n, tile_node(_tiles(LEAVES[:n]))).hex() == ROOTS[n]
        cr = merkle.CompactRange()
        for h in LEAVES[:n]:
            cr.append(h)
        assert cr.root().hex() == ROOTS[n]


def test_inclusion_and_consistency_match_the_ct_vectors() -> None:
    node = tile_node(_tiles(LEAVES))
    for index, size, want in INCLUSION:
        node_n = tile_node(_tiles(LEAVES[:size]))
        got = merkle.inclusion_proof(index, size, node_n)
        assert [h.hex() for h in got] == want
        assert merkle.verify_inclusion(index, size, LEAVES[index], got, H(ROOTS[size]))
        assert not merkle.verify_inclusion(index, size, LEAVES[index], got, H(ROOTS[0]))
    for first, second, want in CONSISTENCY:
        got = merkle.consistency_proof(first, second, node)
        assert [h.hex() for h in got] == want
        assert merkle.verify_consistency(first, second, H(ROOTS[first]), H(ROOTS[second]), got)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3 * WIDTH + 5), data=st.data())
def test_stored_node_proofs_equal_the_rfc_definitions(n: int, data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    chunks = data.draw(st.lists(st.integers(1, 300), min_size=1, max_size=4))
    node = tile_node(_tiles(leaves, chunks))
    root = merkle.mth(leaves)
    assert merkle.root(n, node) == root
    m = data.draw(st.integers(0, n - 1))
    path = merkle.inclusion_proof(m, n, node)
    assert path == _path(m, leaves)
    assert merkle.verify_inclusion(m, n, leaves[m], path, root)
    assert merkle.root_from_inclusion(m, n, leaves[m], path) == root
    other = data.draw(st.integers(0, n - 1))
    if other != m:
        assert not merkle.verify_inclusion(other, n, leaves[m], path, root)
    first = data.draw(st.integers(1, n))
    proof = merkle.consistency_proof(first, n, node)
    if first < n:
        assert proof == _subproof(first, leaves, True)
    assert merkle.verify_consistency(first, n, merkle.mth(leaves[:first]), root, proof)
    if first < n:
        wrong = merkle.leaf_hash(b"forged")
        assert not merkle.verify_consistency(first, n, wrong, root, proof)
        forged = [*leaves[:first - 1], wrong, *leaves[first:]] if first > 0 else leaves
        assert not merkle.verify_consistency(
            first, n, merkle.mth(leaves[:first]), merkle.mth(forged), proof)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 600), data=st.data())
def test_a_changed_proof_never_verifies(n: int, data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(bytes([i % 256, i // 256])) for i in range(n)]
    node = tile_node(_tiles(leaves))
    root = merkle.root(n, node)
    m = data.draw(st.integers(0, n - 1))
    path = merkle.inclusion_proof(m, n, node)
    i = data.draw(st.integers(0, len(path) - 1))
    bad = list(path)
    bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
    assert not merkle.verify_inclusion(m, n, leaves[m], bad, root)
    assert not merkle.verify_inclusion(m, n, leaves[m], path[:-1], root)
    assert not merkle.verify_inclusion(m, n, leaves[m], [*path, root], root)


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = LEAVES[1], LEAVES[2]
    # A node's preimage passed off as a leaf must not give the node's hash.
    assert merkle.leaf_hash(a + b) != merkle.node_hash(a, b)
    assert merkle.leaf_hash(b"\x01" + a + b) != merkle.node_hash(a, b)
