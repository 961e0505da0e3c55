"""Merkle tree hashing and proofs exactly as RFC 6962 section 2.1 and RFC 9162 section 2.1 define.

Leaves are identified by their leaf hashes (``leaf_hash(data)``); every function that takes a
list takes leaf hashes, never raw entries, so a log can store only the 32-byte hashes.

The list functions (``root_hash``, ``inclusion_proof``, ``consistency_proof``) follow the RFC's
recursive definitions directly and cost O(n). ``MerkleTree`` keeps the hashes of every complete
power-of-two subtree, so it answers the same questions for any size it has reached in O(log n)
hash operations. The verifiers follow the iterative algorithms of RFC 9162 sections 2.1.3.2 and
2.1.4.2 and never raise: anything that does not verify is ``False``.

Pure Python, standard library only, so an auditor can run it without the rest of the hub.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Length in bytes of every hash in the tree (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = HASH(), the root of the empty tree (RFC 6962 section 2.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """MTH({d(0)}) = SHA-256(0x00 || d(0)): the hash of one log entry (RFC 6962 section 2.1).

    The 0x00 prefix keeps a leaf from ever being mistaken for an interior node (second
    preimage resistance, RFC 6962 section 2.1).
    """
    return hashlib.sha256(_LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node (RFC 6962 section 2.1)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """k, the largest power of two strictly smaller than n (n >= 2), as RFC 6962 2.1 uses it."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes | bytearray) and len(value) == HASH_SIZE


def _check_leaf_hashes(leaf_hashes: Sequence[bytes]) -> None:
    for position, value in enumerate(leaf_hashes):
        if not _is_hash(value):
            raise ValueError(f"leaf hash {position} is not {HASH_SIZE} bytes")


def _check_size(name: str, value: int) -> None:
    # bool is an int subclass; a True tree size is a caller's bug, not a size of 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative (got {value})")


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for a non-empty range, by the recursive definition in RFC 6962 2.1."""
    if hi - lo == 1:
        return bytes(leaves[lo])
    k = _split(hi - lo)
    return node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]), the Merkle Tree Hash of the leaves (RFC 6962 2.1, RFC 9162 2.1.1).

    The empty tree's root is SHA-256 of the empty string. O(n) hash operations; use
    ``MerkleTree.root`` for repeated queries on a growing log.
    """
    _check_leaf_hashes(leaf_hashes)
    if not leaf_hashes:
        return EMPTY_ROOT
    return _mth(leaf_hashes, 0, len(leaf_hashes))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]), the audit path of leaf ``index`` in the tree of all the given leaves.

    RFC 6962 section 2.1.1 / RFC 9162 section 2.1.3.1. The path lists sibling hashes from
    the leaf upwards; a one-leaf tree has an empty path. Raises ``ValueError`` when the
    index is not a leaf of the tree.
    """
    _check_leaf_hashes(leaf_hashes)
    _check_size("index", index)
    n = len(leaf_hashes)
    if index >= n:
        raise ValueError(f"index {index} is outside a tree of {n} leaves")
    return _path(index, leaf_hashes, 0, n)


def _path(m: int, leaves: Sequence[bytes], lo: int, hi: int) -> list[bytes]:
    if hi - lo == 1:
        return []
    k = _split(hi - lo)
    if m < k:
        return [*_path(m, leaves, lo, lo + k), _mth(leaves, lo + k, hi)]
    return [*_path(m - k, leaves, lo + k, hi), _mth(leaves, lo, lo + k)]


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]): proof that the first ``old_size`` leaves are a prefix of the tree.

    RFC 6962 section 2.1.2 / RFC 9162 section 2.1.4.1, built with SUBPROOF. Following the
    RFCs' conventions the proof is empty when ``old_size`` is 0 (every tree extends the
    empty tree) or equals the tree size (a tree is consistent with itself). Raises
    ``ValueError`` for a negative ``old_size`` or one larger than the tree.
    """
    _check_leaf_hashes(leaf_hashes)
    _check_size("old_size", old_size)
    n = len(leaf_hashes)
    if old_size > n:
        raise ValueError(f"old_size {old_size} is larger than the tree ({n} leaves)")
    if old_size in (0, n):
        return []
    return _subproof(old_size, leaf_hashes, 0, n, True)


def _subproof(m: int, leaves: Sequence[bytes], lo: int, hi: int, whole: bool) -> list[bytes]:
    n = hi - lo
    if m == n:
        # When the old tree is the whole subtree the verifier already holds its root, so it
        # is only sent when this subtree is not the old tree's root itself.
        return [] if whole else [_mth(leaves, lo, hi)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves, lo, lo + k, whole), _mth(leaves, lo + k, hi)]
    return [*_subproof(m - k, leaves, lo + k, hi, False), _mth(leaves, lo, lo + k)]


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when ``proof`` proves leaf ``index`` with ``leaf_hash`` is in the tree with ``root``.

    The verification algorithm of RFC 9162 section 2.1.3.2. Returns ``False`` (and never
    raises) for an index outside the tree, a proof of the wrong length, any hash that is
    not 32 bytes, or a root that does not match.
    """
    try:
        if not (_is_size(index) and _is_size(tree_size)) or index >= tree_size:
            return False
        if not (_is_hash(leaf_hash) and _is_hash(root)):
            return False
        if not all(_is_hash(p) for p in proof):
            return False
        fn = index
        sn = tree_size - 1
        r = bytes(leaf_hash)
        for p in proof:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                r = node_hash(bytes(p), r)
                # The node is the last one on its level with no right sibling there, so it is
                # carried up unchanged until it becomes a right child or reaches the root.
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
            else:
                r = node_hash(r, bytes(p))
            fn >>= 1
            sn >>= 1
        return sn == 0 and r == bytes(root)
    except Exception:
        # Malformed input of an unexpected type (e.g. a proof that is not iterable) is an
        # unverified proof, never an error the caller has to handle.
        return False


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True when ``proof`` proves the tree ``new_root`` of ``new_size`` extends ``old_root``.

    The verification algorithm of RFC 9162 section 2.1.4.2 for 0 < old_size < new_size. For
    the RFCs' trivial cases the proof must be empty: when ``old_size`` equals ``new_size``
    the roots must be equal, and when ``old_size`` is 0 the old root must be the empty
    tree's root. Returns ``False`` (and never raises) for anything that does not verify.
    """
    try:
        if not (_is_size(old_size) and _is_size(new_size)) or old_size > new_size:
            return False
        if not (_is_hash(old_root) and _is_hash(new_root)):
            return False
        path = list(proof)
        if not all(_is_hash(p) for p in path):
            return False
        old = bytes(old_root)
        new = bytes(new_root)
        if old_size == new_size:
            return not path and old == new and (old_size != 0 or old == EMPTY_ROOT)
        if old_size == 0:
            return not path and old == EMPTY_ROOT
        if not path:
            return False
        if old_size & (old_size - 1) == 0:
            # A power-of-two old tree is a complete subtree of the new one, so the proof
            # leaves out its root: the verifier already has it.
            path.insert(0, old)
        fn = old_size - 1
        sn = new_size - 1
        while fn & 1:
            fn >>= 1
            sn >>= 1
        fr = sr = bytes(path[0])
        for c in path[1:]:
            if sn == 0:
                return False
            c = bytes(c)
            if fn & 1 or fn == sn:
                fr = node_hash(c, fr)
                sr = node_hash(c, sr)
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
            else:
                sr = node_hash(sr, c)
            fn >>= 1
            sn >>= 1
        return fr == old and sr == new and sn == 0
    except Exception:
        return False


class MerkleTree:
    """An append-only RFC 6962 Merkle tree answering root and proof queries in O(log n).

    It stores the hash of every complete power-of-two subtree: level ``h`` holds, in order,
    the roots of the subtrees covering leaves ``[i * 2**h, (i + 1) * 2**h)``, with level 0
    the leaf hashes themselves. Any subtree the RFC's recursion visits, in a tree of any size
    the log has reached, is a run of at most log2(n) such complete subtrees, so ``root``,
    ``inclusion_proof`` and ``consistency_proof`` for the current or any earlier size take
    O(log n) hash operations. ``append`` is amortized O(1): it hashes each complete subtree
    once, when its last leaf arrives. About 64 bytes are kept per leaf.
    """

    __slots__ = ("_levels", "_size")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        # One flat bytearray per level keeps a million-leaf tree in tens of megabytes instead
        # of millions of separate bytes objects.
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        self.extend(leaf_hashes)

    def __len__(self) -> int:
        return self._size

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Add one leaf hash (``leaf_hash(data)``) and return its index."""
        if not _is_hash(leaf_hash):
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes")
        index = self._size
        levels = self._levels
        levels[0] += leaf_hash
        self._size = index + 1
        level = 0
        position = index
        # An odd position closes a pair: its parent subtree is now complete, and so on upwards.
        while position & 1:
            below = levels[level]
            parent = node_hash(bytes(below[-64:-32]), bytes(below[-32:]))
            level += 1
            if level == len(levels):
                levels.append(bytearray())
            levels[level] += parent
            position >>= 1
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append each of the leaf hashes in order."""
        for value in leaf_hashes:
            self.append(value)

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        _check_size("index", index)
        if index >= self._size:
            raise ValueError(f"index {index} is outside a tree of {self._size} leaves")
        return self._complete(0, index)

    def _complete(self, level: int, position: int) -> bytes:
        start = position * HASH_SIZE
        return bytes(self._levels[level][start : start + HASH_SIZE])

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a subtree the RFC recursion visits (lo aligned, hi <= size)."""
        # D[lo:hi] splits, as the RFC's recursion does, into complete subtrees of the sizes
        # of the set bits of hi - lo, largest first; its root folds them from the right.
        n = hi - lo
        pieces: list[bytes] = []
        offset = lo
        for height in range(n.bit_length() - 1, -1, -1):
            if n >> height & 1:
                pieces.append(self._complete(height, offset >> height))
                offset += 1 << height
        root = pieces[-1]
        for piece in reversed(pieces[:-1]):
            root = node_hash(piece, root)
        return root

    def _resolve(self, name: str, size: int | None) -> int:
        if size is None:
            return self._size
        _check_size(name, size)
        if size > self._size:
            raise ValueError(f"{name} {size} is larger than the tree ({self._size} leaves)")
        return size

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all), as ``root_hash`` would give it."""
        n = self._resolve("size", size)
        if n == 0:
            return EMPTY_ROOT
        return self._subtree(0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) as ``inclusion_proof`` gives it (RFC 9162 2.1.3.1)."""
        n = self._resolve("size", size)
        _check_size("index", index)
        if index >= n:
            raise ValueError(f"index {index} is outside a tree of {n} leaves")
        # The RFC recursion walked top-down; its output lists the deepest sibling first.
        siblings: list[bytes] = []
        lo, hi, m = 0, n, index
        while hi - lo > 1:
            k = _split(hi - lo)
            if m < k:
                # Only this branch can meet an incomplete sibling; after it the walk stays
                # inside a complete subtree, so at most one sibling costs more than a lookup.
                siblings.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                siblings.append(self._subtree(lo, lo + k))
                lo += k
                m -= k
        siblings.reverse()
        return siblings

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) as ``consistency_proof`` gives it (RFC 9162 2.1.4.1)."""
        n = self._resolve("new_size", new_size)
        _check_size("old_size", old_size)
        if old_size > n:
            raise ValueError(f"old_size {old_size} is larger than new_size {n}")
        if old_size in (0, n):
            return []
        nodes: list[bytes] = []
        lo, hi, m, whole = 0, n, old_size, True
        while True:
            if m == hi - lo:
                if not whole:
                    nodes.append(self._subtree(lo, hi))
                break
            k = _split(hi - lo)
            if m <= k:
                nodes.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                nodes.append(self._subtree(lo, lo + k))
                lo += k
                m -= k
                whole = False
        nodes.reverse()
        return nodes
