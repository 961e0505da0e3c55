"""Signed checkpoints of the transparency log: C2SP tlog-checkpoint bodies in C2SP signed notes.

A checkpoint commits the log to one tree: its origin, its size and its RFC 6962 root, plus a
``time`` extension line saying when the hub signed it::

    hub.example/transparency/live
    1048576
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
    time 2026-11-29T03:48:47.123Z

    \u2014 hub.example/transparency/live NnugSzTj...base64(key hash || Ed25519 signature)...

The signed message is the body (the lines before the blank line, with their final newline).
Signature lines are ``\u2014 <key name> base64(4-byte key hash || 64-byte signature)``; the key
hash is the first four bytes of SHA-256(key name || 0x0A || 0x01 || 32-byte public key), and a
verifier key is written ``<name>+<8 hex digits of the key hash>+base64(0x01 || public key)``.
That is the signed-note format of c2sp.org/signed-note and Go's ``golang.org/x/mod/sumdb/note``,
so an auditor can check a checkpoint with ``note.Open`` and the hub's published verifier key.

Verification follows the spec: signatures by keys the verifier does not know are ignored, a
signature by a known key that does not verify rejects the whole note, and a note with no valid
signature by a known key is rejected. Verifiers return ``False`` and parsers raise
``NoteError`` (a ``ValueError``) for malformed input; nothing else escapes.

No Django import: ``hub audit verify`` runs this on a machine with no hub configured.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "ALGORITHM_ED25519",
    "Checkpoint",
    "NoteError",
    "NoteSignature",
    "checkpoint_body",
    "format_time",
    "key_hash",
    "key_id",
    "parse_checkpoint",
    "parse_checkpoint_body",
    "parse_note",
    "parse_time",
    "parse_vkey",
    "public_key_raw",
    "sign_note",
    "verified_signers",
    "verify_note",
    "vkey",
]

ALGORITHM_ED25519 = 0x01
"""The signed-note signature type byte of Ed25519."""

EM_DASH = "\u2014"
MAX_SIGNATURES = 100
"""Signature lines accepted in one note (the spec asks verifiers for a limit of at least 16)."""
MAX_NOTE_CHARS = 1 << 20
"""Longest note accepted; a checkpoint is a few hundred characters."""

_KEY_HASH_SIZE = 4
_PUBLIC_KEY_SIZE = 32
_SIGNATURE_SIZE = 64
_ROOT_SIZE = 32
_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_HEX8_RE = re.compile(r"[0-9a-f]{8}")
# RFC 3339 in UTC with a "Z" and optional fractional seconds: what the time line carries.
_TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z"
)
_TIME_PREFIX = "time "


class NoteError(ValueError):
    """A signed note, checkpoint body or verifier key that is not well-formed."""


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: the key name, the 4-byte key hash and the signature bytes."""

    name: str
    key_hash: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A parsed (not yet verified) checkpoint note.

    ``body`` is the exact signed text; ``extensions`` holds extension lines other than ``time``.
    """

    origin: str
    size: int
    root: bytes
    timestamp: datetime
    body: str
    signatures: tuple[NoteSignature, ...]
    extensions: tuple[str, ...] = ()


# --- keys -----------------------------------------------------------------------------------


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise NoteError("a key name is a non-empty string")
    if "+" in name or any(ch.isspace() for ch in name) or _has_control(name):
        raise NoteError(f"key name {name!r} contains a space, a plus sign or a control character")
    return name


def _check_public_key(public_key_raw: object) -> bytes:
    if not isinstance(public_key_raw, bytes | bytearray) or len(public_key_raw) != 32:
        raise NoteError(f"an Ed25519 public key is {_PUBLIC_KEY_SIZE} bytes")
    return bytes(public_key_raw)


def key_hash(name: str, public_key_raw: bytes) -> bytes:
    """The 4-byte signed-note key hash: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    material = (
        _check_name(name).encode()
        + b"\n"
        + bytes([ALGORITHM_ED25519])
        + _check_public_key(public_key_raw)
    )
    return hashlib.sha256(material).digest()[:_KEY_HASH_SIZE]


def key_id(name: str, public_key_raw: bytes) -> str:
    """``name+hexhash``: how receipts and signature lines name a key."""
    return f"{name}+{key_hash(name, public_key_raw).hex()}"


def vkey(name: str, public_key_raw: bytes) -> str:
    """The verifier key ``name+hexhash+base64(0x01 || public key)`` (Go's ``note`` format)."""
    encoded = base64.b64encode(bytes([ALGORITHM_ED25519]) + _check_public_key(public_key_raw))
    return f"{key_id(name, public_key_raw)}+{encoded.decode('ascii')}"


def parse_vkey(text: str) -> tuple[str, bytes, Ed25519PublicKey]:
    """``(name, key_hash, public_key)`` of a verifier key; ``NoteError`` when malformed.

    The key hash written in the key must be the one its name and public key give.
    """
    if not isinstance(text, str):
        raise NoteError("a verifier key is a string")
    # Neither the name nor the hash holds a "+"; the base64 key may.
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise NoteError("a verifier key is name+hash+key")
    name, hash_hex, key_b64 = parts
    _check_name(name)
    if not _HEX8_RE.fullmatch(hash_hex):
        raise NoteError("a verifier key's hash is 8 lower-case hex digits")
    material = _b64decode(key_b64, "verifier key")
    if len(material) != 1 + _PUBLIC_KEY_SIZE or material[0] != ALGORITHM_ED25519:
        raise NoteError("the verifier key is not an Ed25519 key (type 0x01, 32 bytes)")
    raw = material[1:]
    expected = key_hash(name, raw)
    if bytes.fromhex(hash_hex) != expected:
        raise NoteError("the verifier key's hash does not match its name and public key")
    return name, expected, Ed25519PublicKey.from_public_bytes(raw)


def public_key_raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key (of a private key's public half)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- times ----------------------------------------------------------------------------------


def format_time(timestamp: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. ``2026-11-29T03:48:47.123Z``."""
    if not isinstance(timestamp, datetime) or timestamp.utcoffset() is None:
        raise NoteError("a checkpoint time is a timezone-aware datetime")
    utc = timestamp.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """The aware UTC datetime of an RFC 3339 UTC time (``...Z``); digits past microseconds drop."""
    match = _TIME_RE.fullmatch(text)
    if match is None:
        raise NoteError(f"{text!r} is not an RFC 3339 UTC time")
    year, month, day, hour, minute, second, fraction = match.groups()
    micro = int((fraction or "").ljust(6, "0")[:6])
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=UTC
        )
    except ValueError as exc:
        raise NoteError(f"{text!r} is not a valid time") from exc


# --- checkpoint bodies ----------------------------------------------------------------------


def checkpoint_body(*, origin: str, size: int, root: bytes, timestamp: datetime) -> str:
    """The checkpoint note text: origin, tree size, base64 root, ``time <RFC 3339 UTC>``.

    The origin doubles as the log's key name by the spec's recommendation, so it must be a
    valid key name (no spaces, no plus signs). The time keeps milliseconds.
    """
    _check_name(origin)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise NoteError("a tree size is a non-negative integer")
    if not isinstance(root, bytes | bytearray) or len(root) != _ROOT_SIZE:
        raise NoteError(f"a root hash is {_ROOT_SIZE} bytes")
    encoded = base64.b64encode(bytes(root)).decode("ascii")
    return f"{origin}\n{size}\n{encoded}\n{_TIME_PREFIX}{format_time(timestamp)}\n"


def parse_checkpoint_body(
    body: str,
) -> tuple[str, int, bytes, datetime, tuple[str, ...]]:
    """``(origin, size, root, timestamp, other extension lines)`` of a checkpoint body."""
    _check_text(body)
    lines = body[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise NoteError("a checkpoint body is at least three non-empty lines")
    origin, size_text, root_text, *extensions = lines
    if not _SIZE_RE.fullmatch(size_text):
        raise NoteError("the checkpoint's tree size is not a decimal number")
    root = _b64decode(root_text, "root hash")
    if len(root) != _ROOT_SIZE:
        raise NoteError(f"the checkpoint's root hash is not {_ROOT_SIZE} bytes")
    times = [line for line in extensions if line.startswith(_TIME_PREFIX)]
    if len(times) != 1:
        raise NoteError("a checkpoint carries exactly one time line")
    timestamp = parse_time(times[0][len(_TIME_PREFIX) :])
    others = tuple(line for line in extensions if not line.startswith(_TIME_PREFIX))
    return origin, int(size_text), root, timestamp, others


# --- notes ----------------------------------------------------------------------------------


def _has_control(text: str) -> bool:
    return any(ch < " " and ch != "\n" for ch in text)


def _check_text(text: str) -> None:
    if not isinstance(text, str) or not text or not text.endswith("\n"):
        raise NoteError("note text is non-empty and ends with a newline")
    if _has_control(text):
        raise NoteError("note text contains a control character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NoteError("note text is not valid Unicode") from exc


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError(f"the {what} is not base64") from exc
    # Only the canonical encoding: no second spelling of the same bytes.
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"the {what} is not canonical base64")
    return raw


def sign_note(body: str, *, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note of ``body`` with one Ed25519 signature line by ``name``."""
    _check_text(body)
    if not isinstance(private_key, Ed25519PrivateKey):
        raise TypeError("private_key is an Ed25519PrivateKey")
    hash_ = key_hash(name, public_key_raw(private_key))
    signature = private_key.sign(body.encode("utf-8"))
    encoded = base64.b64encode(hash_ + signature).decode("ascii")
    return f"{body}\n{EM_DASH} {name} {encoded}\n"


def parse_note(text: str | bytes) -> tuple[str, tuple[NoteSignature, ...]]:
    """``(body, signatures)`` of a signed note, unverified; ``NoteError`` when malformed."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("a note is UTF-8 text") from exc
    if not isinstance(text, str):
        raise NoteError("a note is text")
    if len(text) > MAX_NOTE_CHARS:
        raise NoteError("the note is too long")
    _check_text(text)
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError("the note has no blank line before its signatures")
    body = text[: split + 1]
    lines = text[split + 2 : -1].split("\n")
    if not lines or lines == [""]:
        raise NoteError("the note has no signature")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("the note has too many signatures")
    signatures = []
    for line in lines:
        if not line.startswith(EM_DASH + " "):
            raise NoteError("a signature line starts with an em dash and a space")
        name, space, encoded = line[2:].partition(" ")
        if not space:
            raise NoteError("a signature line is em dash, key name, base64 signature")
        _check_name(name)
        raw = _b64decode(encoded, "signature")
        if len(raw) <= _KEY_HASH_SIZE:
            raise NoteError("a signature is a key hash and signature bytes")
        signatures.append(NoteSignature(name, raw[:_KEY_HASH_SIZE], raw[_KEY_HASH_SIZE:]))
    return body, tuple(signatures)


def parse_checkpoint(text: str | bytes) -> Checkpoint:
    """The checkpoint in a signed note, unverified; ``NoteError`` when malformed."""
    body, signatures = parse_note(text)
    origin, size, root, timestamp, extensions = parse_checkpoint_body(body)
    return Checkpoint(origin, size, root, timestamp, body, signatures, extensions)


def verified_signers(text: str | bytes, *, vkeys: Iterable[str]) -> list[str]:
    """The verifier keys (of ``vkeys``) with a valid signature on the note, in signature order.

    Empty when the note is malformed, when no known key signed it, or when any signature by
    a known key (same name and key hash) fails or is repeated: the spec rejects the whole
    note then. Raises ``NoteError`` only for a malformed entry of ``vkeys``.
    """
    known: dict[tuple[str, bytes], tuple[str, Ed25519PublicKey]] = {}
    for entry in vkeys:
        name, hash_, public = parse_vkey(entry)
        known[(name, hash_)] = (entry, public)
    try:
        body, signatures = parse_note(text)
    except NoteError:
        return []
    message = body.encode("utf-8")
    signed: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in signatures:
        ident = (sig.name, sig.key_hash)
        if ident not in known:
            continue
        if ident in seen:
            return []
        seen.add(ident)
        entry, public = known[ident]
        if len(sig.signature) != _SIGNATURE_SIZE:
            return []
        try:
            public.verify(sig.signature, message)
        except InvalidSignature:
            return []
        signed.append(entry)
    return signed


def verify_note(text: str | bytes, *, vkey: str) -> bool:
    """True when the note is well-formed and signed by ``vkey`` (see ``verified_signers``)."""
    return bool(verified_signers(text, vkeys=[vkey]))
