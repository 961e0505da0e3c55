"""Offline verification of a receipt bundle: the receipt, its signature, its place in the log.

A bundle (``GET /v1/receipts/{id}/proof``) is self-contained JSON::

    {"object": "receipt_proof",
     "receipt": {...the receipt...},
     "signature": {"algorithm": "Ed25519", "key_id": "name+hash",
                   "public_key": "<verifier key>", "value": "<base64 signature>"},
     "log": {"origin": "...", "leaf_index": 17, "tree_size": 300,
             "leaf_hash": "<base64>", "inclusion_proof": ["<base64>", ...]},
     "checkpoint": "<signed note of the checkpoint at tree_size>",
     "checkpoint_keys": ["<verifier key>", ...]}        (optional)

``verify_bundle`` runs each link of the chain as a named check, so a failure says which link
broke:

- ``bundle_shape``: the fields above are there with the right JSON types;
- ``receipt_signature``: the Ed25519 signature over ``canonicalize(receipt)`` (RFC 8785)
  verifies with ``public_key``, and ``key_id`` names that key;
- ``leaf_hash``: SHA-256(0x00 || canonicalize(receipt)) is the stated leaf hash (RFC 6962);
- ``inclusion_proof``: the proof puts that leaf at ``leaf_index`` in the tree whose size and
  root the checkpoint states (RFC 9162 section 2.1.3.2), and ``tree_size`` is that size;
- ``checkpoint_signature``: the checkpoint note carries a valid signature by a key of the key
  set: the trusted keys when given, else the receipt's key and any ``checkpoint_keys`` (a log
  signs checkpoints with its current key, which after a rotation is not the receipt's);
- ``origin``: the bundle's log origin is the checkpoint's (and the one the auditor expects,
  when it names one);
- ``mode``: the receipt's ``livemode`` is the log's (``.../live`` or ``.../test``): a test
  receipt never passes for a live one;
- ``key_pinned``: the receipt's key is one of the trusted keys. Without trusted keys the check
  fails (anyone can sign a bundle with a key of their own), unless the caller allows unpinned
  keys to check only that the bundle is consistent with the keys it carries.

Every check runs on whatever parts of the bundle are usable, so one altered field fails its
own check and leaves the others standing. A malformed bundle gives failed checks; nothing
raises. Pure Python (no Django): ``hub audit verify`` runs it with no hub configured.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.transparency import merkle
from hub.transparency.checkpoint import (
    Checkpoint,
    NoteError,
    parse_checkpoint,
    parse_vkey,
    verified_signers,
)
from hub.transparency.jcs import canonicalize

__all__ = ["BUNDLE_OBJECT", "CHECKS", "BundleResult", "Check", "build_bundle", "verify_bundle"]

BUNDLE_OBJECT = "receipt_proof"
ALGORITHM = "Ed25519"
CHECKS = (
    "bundle_shape",
    "receipt_signature",
    "leaf_hash",
    "inclusion_proof",
    "checkpoint_signature",
    "origin",
    "mode",
    "key_pinned",
)
"""The checks ``verify_bundle`` reports, in order."""


@dataclass(frozen=True, slots=True)
class Check:
    """One verification step: its name, whether it passed, and what it found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class BundleResult:
    """The outcome of ``verify_bundle``: ``ok`` only when every check passed."""

    ok: bool
    checks: list[Check]
    pinned: bool = False
    """Whether the keys were checked against trusted keys (not only the bundle's own)."""
    failed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "pinned": self.pinned,
            "failed": list(self.failed),
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


class _Unusable(Exception):
    """A part of the bundle a check needs is missing or malformed; the message says which."""


def build_bundle(
    *,
    receipt: Mapping[str, Any],
    signature: bytes,
    public_key: str,
    origin: str,
    leaf_index: int,
    tree_size: int,
    leaf_hash: bytes,
    inclusion_proof: Sequence[bytes],
    checkpoint: str,
    checkpoint_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """A bundle in the shape ``verify_bundle`` reads, from the raw parts.

    ``public_key`` and ``checkpoint_keys`` are verifier keys (``checkpoint.vkey``);
    ``checkpoint_keys`` lists the checkpoint's signers when they differ from the receipt's key.
    """
    name, hash_, _ = parse_vkey(public_key)
    bundle: dict[str, Any] = {
        "object": BUNDLE_OBJECT,
        "receipt": dict(receipt),
        "signature": {
            "algorithm": ALGORITHM,
            "key_id": f"{name}+{hash_.hex()}",
            "public_key": public_key,
            "value": _b64(signature),
        },
        "log": {
            "origin": origin,
            "leaf_index": leaf_index,
            "tree_size": tree_size,
            "leaf_hash": _b64(leaf_hash),
            "inclusion_proof": [_b64(node) for node in inclusion_proof],
        },
        "checkpoint": checkpoint,
    }
    extra = [key for key in checkpoint_keys if key != public_key]
    if extra:
        bundle["checkpoint_keys"] = extra
    return bundle


def verify_bundle(
    bundle: object,
    *,
    trusted_keys: Sequence[str] = (),
    allow_unpinned: bool = False,
    origin: str | None = None,
) -> BundleResult:
    """Run every check on ``bundle`` (parsed JSON); see the module docstring.

    ``trusted_keys`` are verifier keys the auditor obtained from the hub independently; a
    malformed one raises ``ValueError`` (it is the caller's input, not the bundle's). Without
    them the bundle proves nothing (anyone can sign a bundle with a key of their own), so
    ``key_pinned`` fails unless ``allow_unpinned`` says the caller only wants the bundle's
    inner consistency checked. ``origin``, when given, is the log the auditor expects (e.g.
    the live one): a bundle of another log fails ``origin``.
    """
    trusted = [_trusted(entry) for entry in trusted_keys]
    state = _Bundle(bundle, trusted_keys=list(trusted_keys), expected_origin=origin)
    steps: list[tuple[str, Callable[[], str]]] = [
        ("bundle_shape", state.check_shape),
        ("receipt_signature", state.check_receipt_signature),
        ("leaf_hash", state.check_leaf_hash),
        ("inclusion_proof", state.check_inclusion),
        ("checkpoint_signature", state.check_checkpoint_signature),
        ("origin", state.check_origin),
        ("mode", state.check_mode),
        ("key_pinned", lambda: state.check_pinned(trusted, allow_unpinned)),
    ]
    checks = [_run(name, step) for name, step in steps]
    failed = [c.name for c in checks if not c.ok]
    return BundleResult(ok=not failed, checks=checks, pinned=bool(trusted), failed=failed)


def _trusted(entry: str) -> tuple[str, bytes, bytes]:
    try:
        name, hash_, public = parse_vkey(entry)
    except NoteError as exc:
        raise ValueError(f"trusted key {entry!r}: {exc}") from exc
    return name, hash_, public.public_bytes_raw()


def _run(name: str, step: Callable[[], str]) -> Check:
    try:
        return Check(name, True, step())
    except _Unusable as exc:
        return Check(name, False, str(exc))
    except Exception as exc:
        # A verifier fails closed: whatever input reaches an unforeseen path is a failed
        # check, never a crash that an auditor could mistake for something else.
        return Check(name, False, f"could not be checked ({type(exc).__name__})")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _decode(value: object, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise _Unusable(f"{what} is not a string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise _Unusable(f"{what} is not base64") from exc
    if _b64(raw) != value:
        raise _Unusable(f"{what} is not canonical base64")
    if size is not None and len(raw) != size:
        raise _Unusable(f"{what} is {len(raw)} bytes, not {size}")
    return raw


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_SHAPE: dict[str, tuple[type, ...]] = {
    "receipt": (dict,),
    "signature": (dict,),
    "log": (dict,),
    "checkpoint": (str,),
}
_SIGNATURE_FIELDS = ("algorithm", "key_id", "public_key", "value")
_LOG_FIELDS: dict[str, str] = {
    "origin": "string",
    "leaf_index": "integer",
    "tree_size": "integer",
    "leaf_hash": "string",
    "inclusion_proof": "list",
}


class _Bundle:
    """The bundle's parts, each extracted on demand so a check fails only on what it uses."""

    def __init__(
        self, bundle: object, *, trusted_keys: list[str], expected_origin: str | None = None
    ) -> None:
        self.raw = bundle
        self.trusted_keys = trusted_keys
        self.expected_origin = expected_origin
        self._checkpoint: Checkpoint | None = None

    # --- parts ---

    def _section(self, key: str) -> Any:
        if not isinstance(self.raw, Mapping):
            raise _Unusable("the bundle is not a JSON object")
        if key not in self.raw:
            raise _Unusable(f"the bundle has no {key!r}")
        value = self.raw[key]
        kinds = _SHAPE.get(key, (object,))
        if not isinstance(value, kinds):
            raise _Unusable(f"the bundle's {key!r} is not a JSON {_kind(kinds)}")
        return value

    def _member(self, section: str, key: str) -> Any:
        container = self._section(section)
        if key not in container:
            raise _Unusable(f"{section}.{key} is missing")
        return container[key]

    def receipt_bytes(self) -> bytes:
        receipt = self._section("receipt")
        try:
            return canonicalize(receipt)
        except (TypeError, ValueError) as exc:
            raise _Unusable(f"the receipt has no RFC 8785 form: {exc}") from exc

    def receipt_key(self) -> tuple[str, bytes, Ed25519PublicKey]:
        text = self._member("signature", "public_key")
        try:
            return parse_vkey(text)
        except NoteError as exc:
            raise _Unusable(f"signature.public_key is not a verifier key: {exc}") from exc

    def checkpoint(self) -> Checkpoint:
        if self._checkpoint is None:
            try:
                self._checkpoint = parse_checkpoint(self._section("checkpoint"))
            except NoteError as exc:
                raise _Unusable(f"the checkpoint is not a signed checkpoint note: {exc}") from exc
        return self._checkpoint

    def log_int(self, key: str) -> int:
        value = self._member("log", key)
        if not _is_int(value) or value < 0:
            raise _Unusable(f"log.{key} is not a non-negative integer")
        return int(value)

    def leaf_hash(self) -> bytes:
        return _decode(self._member("log", "leaf_hash"), "log.leaf_hash", merkle.HASH_SIZE)

    # --- checks ---

    def check_shape(self) -> str:
        if not isinstance(self.raw, Mapping):
            raise _Unusable(f"the bundle is a JSON {_json_kind(self.raw)}, not an object")
        problems: list[str] = []
        if self.raw.get("object") != BUNDLE_OBJECT:
            problems.append(f'"object" is not "{BUNDLE_OBJECT}"')
        for key, kinds in _SHAPE.items():
            if key not in self.raw:
                problems.append(f"{key!r} is missing")
            elif not isinstance(self.raw[key], kinds):
                problems.append(f"{key!r} is not a JSON {_kind(kinds)}")
        signature = self.raw.get("signature")
        if isinstance(signature, dict):
            for key in _SIGNATURE_FIELDS:
                if not isinstance(signature.get(key), str):
                    problems.append(f"signature.{key} is not a string")
        log = self.raw.get("log")
        if isinstance(log, dict):
            for key, kind in _LOG_FIELDS.items():
                value = log.get(key)
                good = {
                    "string": isinstance(value, str),
                    "integer": _is_int(value),
                    "list": isinstance(value, list) and all(isinstance(v, str) for v in value),
                }[kind]
                if not good:
                    what = "list of strings" if kind == "list" else kind
                    problems.append(f"log.{key} is not a {what}")
        keys = self.raw.get("checkpoint_keys", [])
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            problems.append("checkpoint_keys is not a list of strings")
        if problems:
            raise _Unusable("; ".join(problems))
        return "a receipt_proof with receipt, signature, log and checkpoint"

    def check_receipt_signature(self) -> str:
        algorithm = self._member("signature", "algorithm")
        if algorithm != ALGORITHM:
            raise _Unusable(f"signature.algorithm is {algorithm!r}, not {ALGORITHM!r}")
        name, hash_, public = self.receipt_key()
        expected_id = f"{name}+{hash_.hex()}"
        key_id = self._member("signature", "key_id")
        if key_id != expected_id:
            raise _Unusable(f"signature.key_id {key_id!r} is not the public key's ({expected_id})")
        value = _decode(self._member("signature", "value"), "signature.value", 64)
        message = self.receipt_bytes()
        try:
            public.verify(value, message)
        except InvalidSignature:
            raise _Unusable(
                f"the signature does not verify with {expected_id} over the receipt's"
                " RFC 8785 form: the receipt or the signature was altered"
            ) from None
        return f"Ed25519 signature by {expected_id} over the receipt's RFC 8785 form"

    def check_leaf_hash(self) -> str:
        stated = self.leaf_hash()
        computed = merkle.leaf_hash(self.receipt_bytes())
        if computed != stated:
            raise _Unusable(
                f"the receipt hashes to {_b64(computed)}, the log's leaf is {_b64(stated)}"
            )
        return f"SHA-256(0x00 || receipt) = {_b64(stated)}"

    def check_inclusion(self) -> str:
        checkpoint = self.checkpoint()
        index = self.log_int("leaf_index")
        size = self.log_int("tree_size")
        if size != checkpoint.size:
            raise _Unusable(f"log.tree_size is {size}, the checkpoint's tree has {checkpoint.size}")
        if index >= size:
            raise _Unusable(f"log.leaf_index {index} is outside a tree of {size} leaves")
        nodes = self._member("log", "inclusion_proof")
        if not isinstance(nodes, list):
            raise _Unusable("log.inclusion_proof is not a list")
        proof = [
            _decode(node, f"log.inclusion_proof[{position}]", merkle.HASH_SIZE)
            for position, node in enumerate(nodes)
        ]
        if not merkle.verify_inclusion(self.leaf_hash(), index, size, proof, checkpoint.root):
            raise _Unusable(
                f"the proof does not lead from leaf {index} to the checkpoint's root"
                f" {_b64(checkpoint.root)} at tree size {size}"
            )
        return f"leaf {index} of {size}, {len(proof)} hashes to root {_b64(checkpoint.root)}"

    def key_set(self) -> list[str]:
        if self.trusted_keys:
            return list(self.trusted_keys)
        keys: list[str] = []
        try:
            self.receipt_key()
            keys.append(self._member("signature", "public_key"))
        except _Unusable:
            pass
        extra = self.raw.get("checkpoint_keys", []) if isinstance(self.raw, Mapping) else []
        if isinstance(extra, list):
            for entry in extra:
                try:
                    parse_vkey(entry)
                except NoteError:
                    raise _Unusable(f"checkpoint_keys has a malformed key {entry!r}") from None
                keys.append(entry)
        return keys

    def check_checkpoint_signature(self) -> str:
        checkpoint = self.checkpoint()
        keys = self.key_set()
        if not keys:
            raise _Unusable("no key to check the checkpoint with")
        signers = verified_signers(self._section("checkpoint"), vkeys=keys)
        if not signers:
            names = ", ".join(
                sorted({f"{s.name}+{s.key_hash.hex()}" for s in checkpoint.signatures})
            )
            source = "the trusted keys" if self.trusted_keys else "the bundle's keys"
            raise _Unusable(
                f"no valid signature by {source} on the checkpoint (signed by: {names})"
            )
        ids = ", ".join(_key_id(entry) for entry in signers)
        return f"checkpoint of tree size {checkpoint.size} signed by {ids}"

    def check_origin(self) -> str:
        origin = self._member("log", "origin")
        if not isinstance(origin, str):
            raise _Unusable("log.origin is not a string")
        checkpoint = self.checkpoint()
        if origin != checkpoint.origin:
            raise _Unusable(
                f"the bundle names log {origin!r}, the checkpoint is of {checkpoint.origin!r}"
            )
        if self.expected_origin is not None and origin != self.expected_origin:
            raise _Unusable(f"the bundle is of log {origin!r}, not {self.expected_origin!r}")
        return f"log {origin}"

    def check_mode(self) -> str:
        """Test and live receipts live in separate logs (``.../test``, ``.../live``): a receipt
        says which it is, and must be in the log of its mode."""
        receipt = self._section("receipt")
        livemode = receipt.get("livemode") if isinstance(receipt, Mapping) else None
        if not isinstance(livemode, bool):
            raise _Unusable("receipt.livemode is not true or false")
        origin = self.checkpoint().origin
        mode = "live" if livemode else "test"
        if not origin.endswith("/" + mode):
            raise _Unusable(f"a {mode}-mode receipt in log {origin!r}")
        return f"a {mode}-mode receipt in the {mode} log"

    def check_pinned(self, trusted: list[tuple[str, bytes, bytes]], allow_unpinned: bool) -> str:
        name, hash_, public = self.receipt_key()
        key_id = f"{name}+{hash_.hex()}"
        if not trusted:
            if allow_unpinned:
                return f"not pinned (allowed): the bundle's own key {key_id} was used"
            raise _Unusable(
                f"no trusted key given: the bundle's own key {key_id} proves nothing; pass the"
                " hub's published verifier key"
            )
        if (name, hash_, public.public_bytes_raw()) not in trusted:
            raise _Unusable(f"the receipt's key {key_id} is not one of the trusted keys")
        return f"{key_id} is a trusted key"


def _key_id(entry: str) -> str:
    name, hash_, _ = parse_vkey(entry)
    return f"{name}+{hash_.hex()}"


def _kind(kinds: tuple[type, ...]) -> str:
    names: dict[type, str] = {dict: "object", str: "string", list: "array"}
    return names.get(kinds[0], "value")


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return type(value).__name__
