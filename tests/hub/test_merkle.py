"""The transparency log's Merkle tree against RFC 6962 / RFC 9162: roots, inclusion and
consistency proofs for every tree size from 0 to 64, each proof accepted both by the module's
verifiers and by a second verifier written here from the RFC text; the certificate-transparency
reference vectors; tampered, resized, re-indexed, truncated, extended and malformed proofs
rejected; and the incremental tree giving the same answers in O(log n) hash operations."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from hub.transparency import merkle
from hub.transparency.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 64

# --- A second implementation, from the RFC text alone -------------------------------------------


def ref_leaf(data: bytes) -> bytes:
    """RFC 6962 2.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    """RFC 6962 2.1: MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_mth(hashes: Sequence[bytes]) -> bytes:
    """RFC 6962 2.1, recursively: k is the largest power of two smaller than n."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return ref_node(ref_mth(hashes[:k]), ref_mth(hashes[k:]))


def ref_audit_path_length(index: int, size: int) -> int:
    """How many hashes PATH(m, D[n]) has: the depth of leaf m in the RFC 6962 tree."""
    depth = 0
    while size > 1:
        k = 1
        while k * 2 < size:
            k *= 2
        if index < k:
            size = k
        else:
            index -= k
            size -= k
        depth += 1
    return depth


def ref_verify_inclusion(
    hash_: bytes, leaf_index: int, tree_size: int, inclusion_path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2, step by step."""
    # 1. leaf_index >= tree_size fails.
    if leaf_index >= tree_size:
        return False
    # 2. fn = leaf_index, sn = tree_size - 1.  3. r = hash.
    fn, sn, r = leaf_index, tree_size - 1, hash_
    # 4. for each p in inclusion_path:
    for p in inclusion_path:
        # a. if sn is 0, stop and fail.
        if sn == 0:
            return False
        # b. if LSB(fn) is set, or fn == sn:
        if fn % 2 == 1 or fn == sn:
            r = ref_node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            r = ref_node(r, p)
        # c. right-shift both once.
        fn //= 2
        sn //= 2
    # 5. sn must be 0 and r must equal the root.
    return sn == 0 and r == root


def ref_verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2 for 0 < first < second; the trivial cases by the RFCs' conventions."""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not path and first_hash == second_hash
    if first == 0:
        return not path and first_hash == hashlib.sha256(b"").digest()
    # 1. an empty consistency_path fails.
    if not path:
        return False
    consistency_path = list(path)
    # 2. if first is an exact power of 2, prepend first_hash.
    if first & (first - 1) == 0:
        consistency_path = [first_hash, *consistency_path]
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = first - 1, second - 1
    # 4. if LSB(fn) is set, right-shift both until it is not.
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    # 5. fr = sr = the first value.
    fr = sr = consistency_path[0]
    # 6. for each subsequent value c:
    for c in consistency_path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = ref_node(c, fr)
            sr = ref_node(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            sr = ref_node(sr, c)
        fn //= 2
        sn //= 2
    # 7. fr == first_hash, sr == second_hash and sn == 0.
    return fr == first_hash and sr == second_hash and sn == 0


# --- Data -----------------------------------------------------------------------------------------

# The leaf inputs of the certificate-transparency / transparency-dev reference tests, then more.
CT_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
INPUTS = CT_INPUTS + [f"receipt {i}".encode() for i in range(len(CT_INPUTS), MAX_SIZE)]
LEAVES = [ref_leaf(d) for d in INPUTS]
ROOTS = [ref_mth(LEAVES[:n]) for n in range(MAX_SIZE + 1)]

CT_LEAF_HASHES = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
]
# Roots of the trees of the first 1..8 reference inputs.
CT_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
# (leaf index, tree size) -> audit path, from the same reference tests (0-based indices here).
CT_INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    (1, 5): [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
    (0, 1): [],
}
# (old size, new size) -> consistency proof, from the same reference tests.
CT_CONSISTENCY = {
    (1, 1): [],
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
    (6, 7): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}

OTHER = hashlib.sha256(b"not in the tree").digest()


def flipped(proof: Sequence[bytes], position: int, byte: int) -> list[bytes]:
    altered = bytearray(proof[position])
    altered[byte] ^= 0x01
    return [*proof[:position], bytes(altered), *proof[position + 1 :]]


def malformed_variants(proof: Sequence[bytes]) -> Iterator[list[Any]]:
    """The proof with one item replaced by something that is not a 32-byte hash."""
    for position in range(len(proof)):
        item = proof[position]
        for bad in (item[:31], item + b"\x00", b"", item.hex()):
            yield [*proof[:position], bad, *proof[position + 1 :]]


def both_verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    mine = verify_inclusion(leaf, index, size, proof, root)
    theirs = ref_verify_inclusion(leaf, index, size, proof, root)
    assert mine == theirs, (index, size, [p.hex()[:8] for p in proof])
    return mine


def both_verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    mine = verify_consistency(old, new, old_root, new_root, proof)
    theirs = ref_verify_consistency(old, new, old_root, new_root, proof)
    assert mine == theirs, (old, new, [p.hex()[:8] for p in proof])
    return mine


# --- Hashing and known answers -----------------------------------------------------------------


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = LEAVES[0], LEAVES[1]
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert node_hash(a, b) != node_hash(b, a)
    # A leaf whose data looks like two child hashes still hashes differently from that node.
    assert leaf_hash(a + b) != node_hash(a, b)


def test_empty_tree_root() -> None:
    empty = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert empty == EMPTY_ROOT
    assert root_hash([]) == empty
    assert MerkleTree().root() == empty


def test_reference_leaf_hashes_and_roots() -> None:
    assert [leaf_hash(d).hex() for d in CT_INPUTS] == CT_LEAF_HASHES
    ct_leaves = [leaf_hash(d) for d in CT_INPUTS]
    for size, expected in CT_ROOTS.items():
        assert root_hash(ct_leaves[:size]).hex() == expected
        assert ref_mth(ct_leaves[:size]).hex() == expected
        assert MerkleTree(ct_leaves).root(size).hex() == expected


def test_reference_inclusion_proofs() -> None:
    ct_leaves = [leaf_hash(d) for d in CT_INPUTS]
    tree = MerkleTree(ct_leaves)
    for (index, size), expected in CT_INCLUSION.items():
        proof = inclusion_proof(ct_leaves[:size], index)
        assert [p.hex() for p in proof] == expected
        assert [p.hex() for p in tree.inclusion_proof(index, size)] == expected
        root = bytes.fromhex(CT_ROOTS[size])
        assert both_verify_inclusion(ct_leaves[index], index, size, proof, root)


def test_reference_consistency_proofs() -> None:
    ct_leaves = [leaf_hash(d) for d in CT_INPUTS]
    tree = MerkleTree(ct_leaves)
    for (old, new), expected in CT_CONSISTENCY.items():
        proof = consistency_proof(ct_leaves[:new], old)
        assert [p.hex() for p in proof] == expected
        assert [p.hex() for p in tree.consistency_proof(old, new)] == expected
        old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
        assert both_verify_consistency(old, new, old_root, new_root, proof)


# --- Every tree size from 0 to 64 ---------------------------------------------------------------


@pytest.mark.parametrize("size", range(MAX_SIZE + 1))
def test_root_matches_the_rfc_definition(size: int) -> None:
    assert root_hash(LEAVES[:size]) == ROOTS[size]


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_every_inclusion_proof_verifies_and_nothing_else_does(size: int) -> None:
    leaves, root = LEAVES[:size], ROOTS[size]
    for index in range(size):
        leaf = leaves[index]
        proof = inclusion_proof(leaves, index)
        assert len(proof) == ref_audit_path_length(index, size)
        assert verify_inclusion(leaf, index, size, proof, root)
        assert ref_verify_inclusion(leaf, index, size, proof, root)

        # Every bit of every hash in the path matters.
        for position in range(len(proof)):
            for byte in (0, 31):
                assert not both_verify_inclusion(
                    leaf, index, size, flipped(proof, position, byte), root
                )
        # Wrong leaf, wrong root.
        assert not both_verify_inclusion(OTHER, index, size, proof, root)
        for other_index in range(size):
            if other_index != index:
                assert not both_verify_inclusion(leaves[other_index], index, size, proof, root)
        assert not both_verify_inclusion(leaf, index, size, proof, OTHER)
        assert not both_verify_inclusion(leaf, index, size, proof, EMPTY_ROOT)
        # Wrong index: every other position in (and just outside) the tree.
        for other_index in range(-2, size + 2):
            if other_index != index:
                assert not verify_inclusion(leaf, other_index, size, proof, root)
        # Wrong size: against the root of a tree of that size the proof never verifies ...
        for other_size in range(2 * size + 3):
            if other_size != size:
                other_root = ROOTS[other_size] if other_size <= MAX_SIZE else OTHER
                assert not verify_inclusion(leaf, index, other_size, proof, other_root)
                # ... and with this root it fails whenever the path's shape differs. (Where the
                # shape is the same the RFC algorithm cannot tell the sizes apart; the signed
                # checkpoint binds a root to its size.)
                same_shape = index < other_size and ref_audit_path_length(index, other_size) == len(
                    proof
                )
                result = both_verify_inclusion(leaf, index, other_size, proof, root)
                if not same_shape:
                    assert not result
        for bad_size in (-1, 0):
            assert not verify_inclusion(leaf, index, bad_size, proof, root)
        # Truncated and extended proofs.
        if proof:
            assert not both_verify_inclusion(leaf, index, size, proof[:-1], root)
            assert not both_verify_inclusion(leaf, index, size, proof[1:], root)
        for extra in (root, OTHER, leaf):
            assert not both_verify_inclusion(leaf, index, size, [*proof, extra], root)
            assert not both_verify_inclusion(leaf, index, size, [extra, *proof], root)
        # Items that are not 32-byte hashes, and a leaf or root that is not one.
        for bad_proof in malformed_variants(proof):
            assert not verify_inclusion(leaf, index, size, bad_proof, root)
        assert not verify_inclusion(leaf[:31], index, size, proof, root)
        assert not verify_inclusion(leaf, index, size, proof, root + b"\x00")
        assert not verify_inclusion(leaf, index, size, [*proof, b""], root)


@pytest.mark.parametrize("new_size", range(MAX_SIZE + 1))
def test_every_consistency_proof_verifies_and_nothing_else_does(new_size: int) -> None:
    leaves, new_root = LEAVES[:new_size], ROOTS[new_size]
    for old_size in range(new_size + 1):
        old_root = ROOTS[old_size]
        proof = consistency_proof(leaves, old_size)
        assert verify_consistency(old_size, new_size, old_root, new_root, proof)
        assert ref_verify_consistency(old_size, new_size, old_root, new_root, proof)
        if old_size in (0, new_size):
            # The RFCs' conventions: nothing to prove.
            assert proof == []
            assert not both_verify_consistency(old_size, new_size, old_root, new_root, [OTHER])
            if old_size == 0:
                assert not both_verify_consistency(0, new_size, OTHER, new_root, [])
            else:
                assert not both_verify_consistency(old_size, new_size, old_root, OTHER, [])
            continue

        # A non-trivial proof is never empty; every bit of every hash matters.
        assert proof
        assert not both_verify_consistency(old_size, new_size, old_root, new_root, [])
        for position in range(len(proof)):
            for byte in (0, 31):
                altered = flipped(proof, position, byte)
                assert not both_verify_consistency(old_size, new_size, old_root, new_root, altered)
        # Wrong roots, swapped roots.
        assert not both_verify_consistency(old_size, new_size, OTHER, new_root, proof)
        assert not both_verify_consistency(old_size, new_size, old_root, OTHER, proof)
        assert not both_verify_consistency(old_size, new_size, new_root, old_root, proof)
        # Wrong sizes, with the roots of trees of those sizes: only the real proof for that
        # pair of sizes could verify, and it is a different proof.
        for other_old in range(-1, new_size + 2):
            if other_old == old_size:
                continue
            other_root = ROOTS[other_old] if 0 <= other_old <= MAX_SIZE else OTHER
            assert not verify_consistency(other_old, new_size, other_root, new_root, proof)
            both_verify_consistency(other_old, new_size, old_root, new_root, proof)
        for other_new in range(-1, 2 * new_size + 2):
            if other_new == new_size:
                continue
            other_root = ROOTS[other_new] if 0 <= other_new <= MAX_SIZE else OTHER
            assert not verify_consistency(old_size, other_new, old_root, other_root, proof)
            both_verify_consistency(old_size, other_new, old_root, new_root, proof)
        assert not verify_consistency(new_size, old_size, new_root, old_root, proof)
        # Truncated and extended proofs.
        assert not both_verify_consistency(old_size, new_size, old_root, new_root, proof[:-1])
        assert not both_verify_consistency(old_size, new_size, old_root, new_root, proof[1:])
        for extra in (old_root, new_root, OTHER, proof[0]):
            assert not both_verify_consistency(
                old_size, new_size, old_root, new_root, [*proof, extra]
            )
            assert not both_verify_consistency(
                old_size, new_size, old_root, new_root, [extra, *proof]
            )
        # Items that are not 32-byte hashes, and roots that are not.
        for bad_proof in malformed_variants(proof):
            assert not verify_consistency(old_size, new_size, old_root, new_root, bad_proof)
        assert not verify_consistency(old_size, new_size, old_root[:31], new_root, proof)
        assert not verify_consistency(old_size, new_size, old_root, new_root + b"\x00", proof)


def test_verifiers_never_raise_on_garbage() -> None:
    root, leaf = ROOTS[5], LEAVES[2]
    proof = inclusion_proof(LEAVES[:5], 2)
    cons = consistency_proof(LEAVES[:5], 3)
    garbage: list[Any] = [None, "x", 1.5, True, object(), [None], [1, 2], b"\x00" * 32]
    for g in garbage:
        assert not verify_inclusion(g, 2, 5, proof, root)
        assert not verify_inclusion(leaf, g, 5, proof, root)
        assert not verify_inclusion(leaf, 2, g, proof, root)
        assert not verify_inclusion(leaf, 2, 5, g, root)
        assert not verify_inclusion(leaf, 2, 5, proof, g)
        assert not verify_consistency(g, 5, ROOTS[3], root, cons)
        assert not verify_consistency(3, g, ROOTS[3], root, cons)
        assert not verify_consistency(3, 5, g, root, cons)
        assert not verify_consistency(3, 5, ROOTS[3], g, cons)
        assert not verify_consistency(3, 5, ROOTS[3], root, g)
    # A 32-byte bytearray is still a hash.
    as_arrays: list[Any] = [bytearray(p) for p in proof]
    assert verify_inclusion(bytes(leaf), 2, 5, as_arrays, root)


def test_proof_builders_reject_bad_arguments() -> None:
    leaves = LEAVES[:5]
    for index in (-1, 5, 6):
        with pytest.raises(ValueError, match="index"):
            inclusion_proof(leaves, index)
    with pytest.raises(ValueError, match="outside a tree of 0 leaves"):
        inclusion_proof([], 0)
    for old in (-1, 6):
        with pytest.raises(ValueError, match="old_size"):
            consistency_proof(leaves, old)
    with pytest.raises(ValueError, match="leaf hash 5 is not 32 bytes"):
        root_hash([*leaves, b"short"])
    with pytest.raises(ValueError, match="leaf hash 5 is not 32 bytes"):
        inclusion_proof([*leaves, b"x" * 33], 0)


# --- The incremental tree -----------------------------------------------------------------------


def test_tree_agrees_with_the_list_functions_at_every_size_up_to_64() -> None:
    tree = MerkleTree()
    for size in range(1, MAX_SIZE + 1):
        assert tree.append(LEAVES[size - 1]) == size - 1
        assert len(tree) == tree.size == size
        assert tree.root() == ROOTS[size]
    for size in range(MAX_SIZE + 1):
        leaves = LEAVES[:size]
        assert tree.root(size) == ROOTS[size]
        for index in range(size):
            assert tree.leaf(index) == LEAVES[index]
            assert tree.inclusion_proof(index, size) == inclusion_proof(leaves, index)
        for old in range(size + 1):
            assert tree.consistency_proof(old, size) == consistency_proof(leaves, old)
    assert tree.inclusion_proof(3) == inclusion_proof(LEAVES, 3)
    assert tree.consistency_proof(17) == consistency_proof(LEAVES, 17)


def test_tree_rejects_bad_arguments() -> None:
    tree = MerkleTree(LEAVES[:10])
    with pytest.raises(ValueError, match="32 bytes"):
        tree.append(b"short")
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: tree.root(11), "larger than the tree"),
        (lambda: tree.root(-1), "negative"),
        (lambda: tree.inclusion_proof(10), "outside a tree of 10"),
        (lambda: tree.inclusion_proof(-1), "negative"),
        (lambda: tree.inclusion_proof(5, 5), "outside a tree of 5"),
        (lambda: tree.inclusion_proof(0, 11), "larger than the tree"),
        (lambda: tree.consistency_proof(6, 5), "larger than new_size"),
        (lambda: tree.consistency_proof(-1, 5), "negative"),
        (lambda: tree.consistency_proof(3, 11), "larger than the tree"),
        (lambda: tree.leaf(10), "outside a tree of 10"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert tree.size == 10


def test_tree_spot_checks_up_to_10000_leaves() -> None:
    rng = random.Random(6962)
    leaves = [ref_leaf(i.to_bytes(4, "big")) for i in range(10_000)]
    tree = MerkleTree(leaves)
    for size in [1, 2, 3, 1023, 1024, 1025, 4097, 9_999, 10_000] + [
        rng.randint(1, 10_000) for _ in range(16)
    ]:
        prefix = leaves[:size]
        root = tree.root(size)
        assert root == root_hash(prefix)
        for index in {0, size - 1, rng.randrange(size)}:
            proof = tree.inclusion_proof(index, size)
            assert proof == inclusion_proof(prefix, index)
            assert both_verify_inclusion(leaves[index], index, size, proof, root)
        old = rng.randint(0, size)
        proof = tree.consistency_proof(old, size)
        assert proof == consistency_proof(prefix, old)
        assert both_verify_consistency(old, size, tree.root(old), root, proof)


def test_appending_costs_amortized_one_hash_per_leaf(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_hashes(monkeypatch)
    tree = MerkleTree()
    for i in range(4096):
        tree.append(i.to_bytes(32, "big"))
    # A complete binary tree over n leaves has n - 1 interior nodes; each is hashed once.
    assert calls[0] == 4095


def count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = hashlib.sha256

    def counting(data: bytes = b"") -> Any:
        calls[0] += 1
        return real(data)

    monkeypatch.setattr(merkle.hashlib, "sha256", counting)
    return calls


@pytest.fixture(scope="module")
def million() -> MerkleTree:
    # Distinct 32-byte values stand in for leaf hashes; only their count matters here.
    return MerkleTree(i.to_bytes(32, "big") for i in range(1_000_000))


@pytest.mark.parametrize("size", [1_000_000, 999_999, 2**19 + 1, 2**19, 777_777])
def test_proofs_at_a_million_leaves_cost_log_n_hashes(
    million: MerkleTree, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    log_n = math.ceil(math.log2(size))
    calls = count_hashes(monkeypatch)

    def cost(build: Any) -> tuple[Any, int]:
        before = calls[0]
        result = build()
        return result, calls[0] - before

    root, spent = cost(lambda: million.root(size))
    assert spent <= log_n
    for index in (0, 1, size // 2, size - 2, size - 1, 123_457 % size):
        proof, spent = cost(lambda index=index: million.inclusion_proof(index, size))
        assert spent <= log_n
        assert len(proof) <= log_n
        leaf = index.to_bytes(32, "big")
        assert ref_verify_inclusion(leaf, index, size, proof, root)
        assert verify_inclusion(leaf, index, size, proof, root)
    for old in (1, 2, 3, 1000, 2**18, 2**18 + 1, size // 3, size - 1, size):
        proof, spent = cost(lambda old=old: million.consistency_proof(old, size))
        assert spent <= log_n
        old_root = million.root(old)
        assert ref_verify_consistency(old, size, old_root, root, proof)
        assert verify_consistency(old, size, old_root, root, proof)
