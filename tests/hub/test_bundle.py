"""Receipt bundles against a real log built here (a few hundred signed receipts in a Merkle
tree, a signed checkpoint): a good bundle passes every check, and each single alteration fails
exactly the check that guards that link of the chain. Malformed bundles give failed checks and
never an exception."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.transparency import merkle
from hub.transparency.bundle import CHECKS, build_bundle, verify_bundle
from hub.transparency.checkpoint import checkpoint_body, public_key_raw, sign_note, vkey
from hub.transparency.jcs import canonicalize

ORIGIN = "hub.test/transparency/test"
LOG_SIZE = 300
WHEN = datetime(2026, 11, 29, 3, 48, 47, tzinfo=UTC)


def _receipt(n: int) -> dict[str, Any]:
    return {
        "id": f"rcpt_{n:06d}",
        "object": "receipt",
        "livemode": False,
        "created_at": f"2026-11-{1 + n % 28:02d}T10:00:00Z",
        "direction": "payin" if n % 2 else "payout",
        "amount": {"amount": f"{150000 + n}", "currency": "KRW"},
        "settled": {"amount": f"{800 + n}.{n % 100:02d}", "currency": "CNY"},
        "customs_mode": ["9610", "9710", "9810", "1210"][n % 4],
        "trade_type": "B2C",
        "verification": {"outcome": "verified", "reasons": [], "order_no": f"ORD-{n}"},
        "buyer": {"country": "KR", "name": "김민준" if n % 3 else "Kim Minjun"},
        "rate": 0.0053 + n / 1e6,
        "metadata": {},
    }


@dataclass
class Log:
    """A transparency log of signed receipts, as the hub keeps one, built in memory."""

    key: Ed25519PrivateKey
    name: str
    receipts: list[dict[str, Any]]
    signatures: list[bytes]
    tree: merkle.MerkleTree

    @property
    def vkey(self) -> str:
        return vkey(self.name, public_key_raw(self.key))

    def checkpoint(
        self, size: int, *, key: Ed25519PrivateKey | None = None, origin: str = ORIGIN
    ) -> str:
        body = checkpoint_body(origin=origin, size=size, root=self.tree.root(size), timestamp=WHEN)
        return sign_note(body, name=self.name, private_key=key or self.key)

    def bundle(self, index: int, size: int = LOG_SIZE, **overrides: Any) -> dict[str, Any]:
        parts: dict[str, Any] = {
            "receipt": self.receipts[index],
            "signature": self.signatures[index],
            "public_key": self.vkey,
            "origin": ORIGIN,
            "leaf_index": index,
            "tree_size": size,
            "leaf_hash": self.tree.leaf(index),
            "inclusion_proof": self.tree.inclusion_proof(index, size),
            "checkpoint": self.checkpoint(size),
        }
        parts.update(overrides)
        return json.loads(json.dumps(build_bundle(**parts)))


def _build_log(key: Ed25519PrivateKey, receipts: list[dict[str, Any]]) -> Log:
    tree = merkle.MerkleTree()
    signatures = []
    for receipt in receipts:
        data = canonicalize(receipt)
        signatures.append(key.sign(data))
        tree.append(merkle.leaf_hash(data))
    return Log(key, ORIGIN, receipts, signatures, tree)


@pytest.fixture(scope="module")
def log() -> Log:
    return _build_log(Ed25519PrivateKey.generate(), [_receipt(n) for n in range(LOG_SIZE)])


@pytest.fixture(scope="module")
def other_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _failed(
    bundle: object, trusted_keys: tuple[str, ...] = (), *, allow_unpinned: bool = True
) -> set[str]:
    """The checks that fail; without trusted keys, the bundle's inner consistency only (unless
    ``allow_unpinned`` is False)."""
    result = verify_bundle(bundle, trusted_keys=trusted_keys, allow_unpinned=allow_unpinned)
    assert [check.name for check in result.checks] == list(CHECKS)
    assert result.ok == (not result.failed)
    assert result.failed == [check.name for check in result.checks if not check.ok]
    return set(result.failed)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _flip(text: str, position: int = 0) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[position] ^= 0x01
    return _b64(bytes(raw))


# --- good bundles ------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 137, 255, 256, LOG_SIZE - 1])
def test_good_bundle_passes_every_check(log: Log, index: int) -> None:
    bundle = log.bundle(index)
    result = verify_bundle(bundle, allow_unpinned=True)
    assert result.ok, result.checks
    assert [c.name for c in result.checks] == list(CHECKS)
    assert all(c.ok for c in result.checks)
    assert not result.pinned
    details = {c.name: c.detail for c in result.checks}
    assert details["key_pinned"].startswith("not pinned")
    assert f"leaf {index} of {LOG_SIZE}" in details["inclusion_proof"]
    assert result.as_dict()["ok"] is True


@pytest.mark.parametrize(("index", "size"), [(0, 1), (3, 4), (4, 5), (199, 200), (99, 257)])
def test_good_bundles_at_earlier_tree_sizes(log: Log, index: int, size: int) -> None:
    assert _failed(log.bundle(index, size)) == set()


def test_pinned_to_the_trusted_key(log: Log, other_key: Ed25519PrivateKey) -> None:
    other = vkey(ORIGIN, public_key_raw(other_key))
    result = verify_bundle(log.bundle(5), trusted_keys=[other, log.vkey])
    assert result.ok
    assert result.pinned
    assert result.checks[-1].detail.endswith("is a trusted key")


def test_bundle_shape_as_built(log: Log) -> None:
    bundle = log.bundle(7)
    assert set(bundle) == {"object", "receipt", "signature", "log", "checkpoint"}
    assert bundle["object"] == "receipt_proof"
    assert bundle["signature"]["algorithm"] == "Ed25519"
    assert bundle["signature"]["key_id"] == "+".join(log.vkey.split("+", 2)[:2])
    assert bundle["signature"]["public_key"] == log.vkey
    assert bundle["log"]["leaf_hash"] == _b64(
        hashlib.sha256(b"\x00" + canonicalize(log.receipts[7])).digest()
    )
    assert len(bundle["log"]["inclusion_proof"]) == 9  # ceil(log2(300))


# --- each alteration fails its own check -------------------------------------------------------

Alteration = Callable[[dict[str, Any], Log], None]


def _set(path: str, value: object) -> Alteration:
    def alter(bundle: dict[str, Any], log: Log) -> None:
        *parents, last = path.split(".")
        target: Any = bundle
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return alter


def _delete(path: str) -> Alteration:
    def alter(bundle: dict[str, Any], log: Log) -> None:
        *parents, last = path.split(".")
        target: Any = bundle
        for part in parents:
            target = target[part]
        del target[last]

    return alter


def _apply(fn: Callable[[dict[str, Any]], None]) -> Alteration:
    return lambda bundle, log: fn(bundle)


def _other_last(text: str) -> str:
    """``text`` with its last character changed (a key id's hex digit: the key is new each run)."""
    return text[:-1] + ("1" if text.endswith("0") else "0")


def _earlier_tree(bundle: dict[str, Any], log: Log) -> None:
    # The proof is for the tree of 300, the checkpoint and stated size for 299.
    bundle["checkpoint"] = log.checkpoint(LOG_SIZE - 1)
    bundle["log"]["tree_size"] = LOG_SIZE - 1


ALTERATIONS: list[tuple[str, Alteration, set[str]]] = [
    ("receipt amount", _set("receipt.amount.amount", "150001"), {"receipt_signature", "leaf_hash"}),
    ("receipt id", _set("receipt.id", "rcpt_999999"), {"receipt_signature", "leaf_hash"}),
    ("receipt rate", _set("receipt.rate", 0.0054), {"receipt_signature", "leaf_hash"}),
    ("receipt field added", _set("receipt.note", "x"), {"receipt_signature", "leaf_hash"}),
    ("receipt field removed", _delete("receipt.metadata"), {"receipt_signature", "leaf_hash"}),
    (
        "receipt without canonical form",
        _set("receipt.amount.amount", 2**53 + 1),
        {"receipt_signature", "leaf_hash"},
    ),
    (
        "signature byte",
        _apply(lambda b: b["signature"].update(value=_flip(b["signature"]["value"], 10))),
        {"receipt_signature"},
    ),
    (
        "signature truncated",
        _apply(
            lambda b: b["signature"].update(
                value=_b64(base64.b64decode(b["signature"]["value"])[:63])
            )
        ),
        {"receipt_signature"},
    ),
    ("signature not base64", _set("signature.value", "not base64!"), {"receipt_signature"}),
    ("signature algorithm", _set("signature.algorithm", "ES256"), {"receipt_signature"}),
    (
        "signature key id",
        _apply(lambda b: b["signature"].update(key_id=_other_last(b["signature"]["key_id"]))),
        {"receipt_signature"},
    ),
    (
        "proof element changed",
        _apply(
            lambda b: b["log"]["inclusion_proof"].__setitem__(
                3, _flip(b["log"]["inclusion_proof"][3])
            )
        ),
        {"inclusion_proof"},
    ),
    (
        "proof element missing",
        _apply(lambda b: b["log"]["inclusion_proof"].pop()),
        {"inclusion_proof"},
    ),
    (
        "proof element extra",
        _apply(lambda b: b["log"]["inclusion_proof"].append(_b64(b"\x07" * 32))),
        {"inclusion_proof"},
    ),
    ("proof emptied", _set("log.inclusion_proof", []), {"inclusion_proof"}),
    ("proof element short", _set("log.inclusion_proof.0", _b64(b"\x01" * 31)), {"inclusion_proof"}),
    ("proof element not base64", _set("log.inclusion_proof.0", "%%%"), {"inclusion_proof"}),
    (
        "proof elements swapped",
        _apply(lambda b: b["log"]["inclusion_proof"].reverse()),
        {"inclusion_proof"},
    ),
    (
        "leaf index +1",
        _apply(lambda b: b["log"].update(leaf_index=b["log"]["leaf_index"] + 1)),
        {"inclusion_proof"},
    ),
    (
        "leaf index -1",
        _apply(lambda b: b["log"].update(leaf_index=b["log"]["leaf_index"] - 1)),
        {"inclusion_proof"},
    ),
    ("leaf index past the tree", _set("log.leaf_index", LOG_SIZE), {"inclusion_proof"}),
    ("tree size -1", _set("log.tree_size", LOG_SIZE - 1), {"inclusion_proof"}),
    ("tree size +1", _set("log.tree_size", LOG_SIZE + 1), {"inclusion_proof"}),
    (
        "leaf hash of another receipt",
        lambda b, log: b["log"].update(leaf_hash=_b64(log.tree.leaf(11))),
        {"leaf_hash", "inclusion_proof"},
    ),
    (
        "log section of another receipt",
        lambda b, log: b.update(log=log.bundle(11)["log"]),
        {"leaf_hash"},
    ),
    (
        "checkpoint re-signed by another key",
        lambda b, log: b.update(
            checkpoint=log.checkpoint(LOG_SIZE, key=Ed25519PrivateKey.generate())
        ),
        {"checkpoint_signature"},
    ),
    (
        "checkpoint of another size",
        lambda b, log: b.update(checkpoint=log.checkpoint(LOG_SIZE - 1)),
        {"inclusion_proof"},
    ),
    (
        "checkpoint and tree size of another size",
        _earlier_tree,
        {"inclusion_proof"},
    ),
    (
        "checkpoint root changed, signature kept",
        _apply(
            lambda b: b.update(
                checkpoint=b["checkpoint"].replace(
                    b["checkpoint"].split("\n")[2], _flip(b["checkpoint"].split("\n")[2])
                )
            )
        ),
        {"inclusion_proof", "checkpoint_signature"},
    ),
    (
        "checkpoint time changed, signature kept",
        _apply(lambda b: b.update(checkpoint=b["checkpoint"].replace("47.000Z", "48.000Z"))),
        {"checkpoint_signature"},
    ),
    (
        "checkpoint of another origin",
        lambda b, log: b.update(checkpoint=log.checkpoint(LOG_SIZE, origin="hub.test/other")),
        {"origin", "mode"},
    ),
    ("origin mismatch", _set("log.origin", "hub.test/transparency/live"), {"origin"}),
    (
        "checkpoint not a note",
        _set("checkpoint", "hello\n"),
        {"inclusion_proof", "checkpoint_signature", "origin", "mode"},
    ),
    (
        "checkpoint signature line removed",
        _apply(lambda b: b.update(checkpoint=b["checkpoint"].split("\n\n")[0] + "\n")),
        {"inclusion_proof", "checkpoint_signature", "origin", "mode"},
    ),
    ("object", _set("object", "receipt"), {"bundle_shape"}),
    (
        "receipt as a list",
        _set("receipt", [1, 2]),
        {"bundle_shape", "receipt_signature", "leaf_hash", "mode"},
    ),
    (
        "receipt missing",
        _delete("receipt"),
        {"bundle_shape", "receipt_signature", "leaf_hash", "mode"},
    ),
    ("leaf index as a string", _set("log.leaf_index", "5"), {"bundle_shape", "inclusion_proof"}),
    ("leaf index as a bool", _set("log.leaf_index", True), {"bundle_shape", "inclusion_proof"}),
    ("leaf index negative", _set("log.leaf_index", -1), {"inclusion_proof"}),
    ("tree size as a float", _set("log.tree_size", 300.0), {"bundle_shape", "inclusion_proof"}),
    (
        "proof as a string",
        _set("log.inclusion_proof", "AAAA"),
        {"bundle_shape", "inclusion_proof"},
    ),
    (
        "proof element as a number",
        _set("log.inclusion_proof.0", 7),
        {"bundle_shape", "inclusion_proof"},
    ),
    (
        "leaf hash as null",
        _set("log.leaf_hash", None),
        {"bundle_shape", "leaf_hash", "inclusion_proof"},
    ),
    ("origin as a number", _set("log.origin", 1), {"bundle_shape", "origin"}),
    (
        "log missing",
        _delete("log"),
        {"bundle_shape", "leaf_hash", "inclusion_proof", "origin"},
    ),
    (
        "checkpoint as an object",
        _set("checkpoint", {"size": 300}),
        {"bundle_shape", "inclusion_proof", "checkpoint_signature", "origin", "mode"},
    ),
    (
        "signature as null",
        _set("signature", None),
        {"bundle_shape", "receipt_signature", "checkpoint_signature", "key_pinned"},
    ),
    (
        "public key malformed",
        _set("signature.public_key", "not a key"),
        {"receipt_signature", "checkpoint_signature", "key_pinned"},
    ),
    (
        "checkpoint keys not a list",
        _set("checkpoint_keys", "a key"),
        {"bundle_shape"},
    ),
    (
        "checkpoint keys malformed",
        _set("checkpoint_keys", ["not a key"]),
        {"checkpoint_signature"},
    ),
]


@pytest.mark.parametrize(
    ("alteration", "expected"),
    [pytest.param(alter, expected, id=name) for name, alter, expected in ALTERATIONS],
)
def test_each_alteration_fails_its_check(
    log: Log, alteration: Alteration, expected: set[str]
) -> None:
    bundle = log.bundle(137)
    original = copy.deepcopy(bundle)
    alteration(bundle, log)
    assert json.dumps(bundle) != json.dumps(original)
    assert _failed(bundle) == expected
    result = verify_bundle(bundle, allow_unpinned=True)
    for check in result.checks:
        assert check.detail  # every check says what it found


def test_another_public_key(log: Log, other_key: Ed25519PrivateKey) -> None:
    other = vkey(ORIGIN, public_key_raw(other_key))
    bundle = log.bundle(42)
    bundle["signature"]["public_key"] = other
    bundle["signature"]["key_id"] = "+".join(other.split("+", 2)[:2])
    # Without trusted keys the checkpoint is checked with the bundle's (now wrong) key too.
    assert _failed(bundle) == {"receipt_signature", "checkpoint_signature"}
    # With the hub's key pinned, the checkpoint passes and the stranger key is named.
    assert _failed(bundle, (log.vkey,)) == {"receipt_signature", "key_pinned"}


def test_unpinned_key_when_trusted_keys_are_given(log: Log, other_key: Ed25519PrivateKey) -> None:
    other = vkey(ORIGIN, public_key_raw(other_key))
    assert _failed(log.bundle(3), (other,)) == {"checkpoint_signature", "key_pinned"}
    # The same key under another name is not the trusted key.
    renamed = vkey("hub.test/other", public_key_raw(log.key))
    assert _failed(log.bundle(3), (renamed,)) == {"checkpoint_signature", "key_pinned"}


def test_a_forged_log_passes_only_until_keys_are_pinned(log: Log) -> None:
    # Someone rewrites a receipt and builds a whole log of their own around it: the bundle is
    # consistent with the keys it carries, so only pinning the hub's key exposes it.
    forged_receipts = copy.deepcopy(log.receipts)
    forged_receipts[137]["amount"]["amount"] = "1"
    forged = _build_log(Ed25519PrivateKey.generate(), forged_receipts)
    bundle = forged.bundle(137)
    assert verify_bundle(bundle, allow_unpinned=True).ok
    # Without keys, the verifier does not vouch for it at all; with the hub's key, it names
    # what is not the hub's.
    result = verify_bundle(bundle)
    assert (result.ok, result.pinned, result.failed) == (False, False, ["key_pinned"])
    assert _failed(bundle, (log.vkey,)) == {"checkpoint_signature", "key_pinned"}


def test_a_good_bundle_without_trusted_keys_is_not_vouched_for(log: Log) -> None:
    assert _failed(log.bundle(7), allow_unpinned=False) == {"key_pinned"}
    assert _failed(log.bundle(7), (log.vkey,), allow_unpinned=False) == set()


def test_a_bundle_of_another_log_than_expected_fails_its_origin(log: Log) -> None:
    result = verify_bundle(log.bundle(9), trusted_keys=[log.vkey], origin="hub.test/other/live")
    assert result.failed == ["origin"]
    good = verify_bundle(log.bundle(9), trusted_keys=[log.vkey], origin=ORIGIN)
    assert good.ok, good.checks


def test_a_receipt_of_the_other_mode_fails_the_mode_check(log: Log) -> None:
    bundle = log.bundle(11)
    bundle["receipt"]["livemode"] = True  # a live receipt in the test log
    assert _failed(bundle, (log.vkey,)) == {"receipt_signature", "leaf_hash", "mode"}


def test_checkpoint_signed_by_a_rotated_key(log: Log, other_key: Ed25519PrivateKey) -> None:
    # After a rotation the receipt keeps its old key while checkpoints carry the new one.
    new = vkey(ORIGIN, public_key_raw(other_key))
    checkpoint = log.checkpoint(LOG_SIZE, key=other_key)
    bundle = log.bundle(9, checkpoint=checkpoint, checkpoint_keys=[new])
    assert bundle["checkpoint_keys"] == [new]
    assert _failed(bundle) == set()
    assert _failed(bundle, (log.vkey, new)) == set()
    assert _failed(bundle, (log.vkey,)) == {"checkpoint_signature"}
    assert _failed(bundle, (new,)) == {"key_pinned"}
    del bundle["checkpoint_keys"]
    assert _failed(bundle) == {"checkpoint_signature"}


def test_cosigned_checkpoint(log: Log, other_key: Ed25519PrivateKey) -> None:
    checkpoint = log.checkpoint(LOG_SIZE)
    other_line = log.checkpoint(LOG_SIZE, key=other_key).split("\n\n")[1]
    bundle = log.bundle(9, checkpoint=checkpoint + other_line)
    assert _failed(bundle) == set()


@pytest.mark.parametrize("value", [None, [], [1], "bundle", 5, 1.5, True, {}, {"object": 1}])
def test_not_a_bundle_fails_every_check(value: object) -> None:
    assert _failed(value) == set(CHECKS)


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found: list[tuple[object, ...]] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, member in value.items():
            found += _paths(member, (*prefix, key))
    elif isinstance(value, list):
        for position, member in enumerate(value):
            found += _paths(member, (*prefix, position))
    return found


JUNK: list[object] = [
    None,
    True,
    0,
    -1,
    2**64,
    1e308,
    "",
    "AAAA",
    "\u2014",
    "\ud800",
    [],
    [None],
    {},
    {"a": [{}]},
]


def test_no_junk_anywhere_raises_or_passes(log: Log) -> None:
    bundle = log.bundle(100)
    paths = _paths(bundle)
    assert len(paths) > 30
    for path in paths:
        for junk in JUNK:
            altered = copy.deepcopy(bundle)
            target: Any = altered
            for part in path[:-1]:
                target = target[part]
            if target[path[-1]] == junk:
                continue
            target[path[-1]] = junk
            assert not verify_bundle(altered, allow_unpinned=True).ok, (path, junk)


def test_trusted_keys_must_be_verifier_keys(log: Log) -> None:
    with pytest.raises(ValueError, match="trusted key"):
        verify_bundle(log.bundle(1), trusted_keys=["nonsense"])
