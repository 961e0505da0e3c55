"""Signed checkpoints: Go's signed-note known answer, the checkpoint body format, round trips,
every tampering refused, and malformed notes, bodies and keys refused with one clear error
(parsers) or ``False`` (verifiers), never anything else."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.transparency.checkpoint import (
    NoteError,
    checkpoint_body,
    format_time,
    key_hash,
    key_id,
    parse_checkpoint,
    parse_checkpoint_body,
    parse_note,
    parse_time,
    parse_vkey,
    public_key_raw,
    sign_note,
    verified_signers,
    verify_note,
    vkey,
)

# golang.org/x/mod/sumdb/note's documented example key and note (package doc and note_test.go).
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FF"
    "YC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

ORIGIN = "hub.test/transparency/test"
ROOT = hashlib.sha256(b"root").digest()
WHEN = datetime(2026, 11, 29, 3, 48, 47, 123456, tzinfo=UTC)


def _go_key() -> Ed25519PrivateKey:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert seed[0] == 0x01
    return Ed25519PrivateKey.from_private_bytes(seed[1:])


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def other_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _vkey(private: Ed25519PrivateKey, name: str = ORIGIN) -> str:
    return vkey(name, public_key_raw(private))


def _note(private: Ed25519PrivateKey, *, size: int = 300, root: bytes = ROOT) -> str:
    body = checkpoint_body(origin=ORIGIN, size=size, root=root, timestamp=WHEN)
    return sign_note(body, name=ORIGIN, private_key=private)


# --- Go's known answer --------------------------------------------------------------------------


def test_go_known_answer_keys_and_signature() -> None:
    private = _go_key()
    raw = public_key_raw(private)
    assert key_hash("PeterNeumann", raw) == bytes.fromhex("c74f20a3")
    assert key_id("PeterNeumann", raw) == "PeterNeumann+c74f20a3"
    assert vkey("PeterNeumann", raw) == GO_VKEY
    # Ed25519 is deterministic: the same key signs the same text to the same bytes as Go.
    assert sign_note(GO_TEXT, name="PeterNeumann", private_key=private) == GO_NOTE
    assert verify_note(GO_NOTE, vkey=GO_VKEY)
    assert verify_note(GO_NOTE.encode(), vkey=GO_VKEY)


def test_key_hash_follows_the_spec_text(key: Ed25519PrivateKey) -> None:
    raw = public_key_raw(key)
    expected = hashlib.sha256(ORIGIN.encode() + b"\x0a" + b"\x01" + raw).digest()[:4]
    assert key_hash(ORIGIN, raw) == expected
    name, hash_, public = parse_vkey(_vkey(key))
    assert (name, hash_, public_key_raw(public)) == (ORIGIN, expected, raw)
    encoded = base64.b64encode(b"\x01" + raw).decode()
    assert _vkey(key) == f"{ORIGIN}+{expected.hex()}+{encoded}"


def test_verifier_keys_whose_base64_holds_a_plus_sign() -> None:
    # Only the name and the hash are free of "+"; the base64 key often is not.
    for seed in range(256):
        private = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
        text = vkey(ORIGIN, public_key_raw(private))
        if "+" in text.split("+", 2)[2]:
            break
    else:
        pytest.fail("no key with a plus sign in its base64 among 256")
    assert public_key_raw(parse_vkey(text)[2]) == public_key_raw(private)
    assert verify_note(_note(private), vkey=text)


# --- checkpoint bodies --------------------------------------------------------------------------


def test_checkpoint_body_format() -> None:
    body = checkpoint_body(origin=ORIGIN, size=300, root=ROOT, timestamp=WHEN)
    assert body == (
        f"{ORIGIN}\n300\n{base64.b64encode(ROOT).decode()}\ntime 2026-11-29T03:48:47.123Z\n"
    )
    assert parse_checkpoint_body(body) == (
        ORIGIN,
        300,
        ROOT,
        WHEN.replace(microsecond=123000),
        (),
    )


def test_empty_tree_checkpoint() -> None:
    empty = hashlib.sha256(b"").digest()
    body = checkpoint_body(origin=ORIGIN, size=0, root=empty, timestamp=WHEN)
    assert body.split("\n")[1:3] == ["0", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]


def test_times_are_utc_with_milliseconds() -> None:
    seoul = timezone(timedelta(hours=9))
    local = datetime(2026, 1, 1, 8, 59, 59, 999999, tzinfo=seoul)
    assert format_time(local) == "2025-12-31T23:59:59.999Z"
    assert format_time(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"
    assert parse_time("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_time("2026-01-01T00:00:00.123456789Z").microsecond == 123456
    with pytest.raises(NoteError, match="timezone-aware"):
        format_time(datetime(2026, 1, 1))  # noqa: DTZ001 - the naive time under test


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T00:00:00",
        "2026-01-01T00:00:00+00:00",
        "2026-01-01 00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:00.Z",
        "\uff12026-01-01T00:00:00Z",  # a fullwidth digit
    ],
)
def test_malformed_times_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        parse_time(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"origin": ""}, "key name"),
        ({"origin": "hub test"}, "space"),
        ({"origin": "hub+test"}, "plus"),
        ({"origin": "hub\ntest"}, "space"),
        ({"size": -1}, "non-negative"),
        ({"size": True}, "non-negative"),
        ({"size": 1.0}, "non-negative"),
        ({"root": ROOT[:31]}, "32 bytes"),
        ({"root": "root"}, "32 bytes"),
        ({"timestamp": datetime(2026, 1, 1)}, "timezone-aware"),  # noqa: DTZ001
    ],
)
def test_checkpoint_body_refuses_bad_parts(kwargs: dict[str, object], message: str) -> None:
    parts: dict[str, object] = {"origin": ORIGIN, "size": 3, "root": ROOT, "timestamp": WHEN}
    parts.update(kwargs)
    with pytest.raises(NoteError, match=message):
        checkpoint_body(**parts)  # type: ignore[arg-type]


ROOT_B64 = base64.b64encode(ROOT).decode()
URLSAFE_ROOT = base64.urlsafe_b64encode(b"\xff" * 32).decode()
TIME = "time 2026-11-29T03:48:47.123Z"


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n300\n{ROOT_B64}\n",  # no time line
        f"{ORIGIN}\n300\n{ROOT_B64}\n{TIME}\n{TIME}\n",  # two
        f"{ORIGIN}\n300\n{ROOT_B64}\ntime yesterday\n",
        f"{ORIGIN}\n300\n{ROOT_B64}\n\n{TIME}\n",  # empty extension line
        f"{ORIGIN}\n300\n{TIME}\n",  # no root
        f"\n300\n{ROOT_B64}\n{TIME}\n",  # empty origin
        f"{ORIGIN}\n0300\n{ROOT_B64}\n{TIME}\n",
        f"{ORIGIN}\n+300\n{ROOT_B64}\n{TIME}\n",
        f"{ORIGIN}\n-1\n{ROOT_B64}\n{TIME}\n",
        f"{ORIGIN}\n 300\n{ROOT_B64}\n{TIME}\n",
        f"{ORIGIN}\n3_00\n{ROOT_B64}\n{TIME}\n",
        f"{ORIGIN}\n\u0663\n{ROOT_B64}\n{TIME}\n",  # an Arabic-Indic digit
        f"{ORIGIN}\n300\n{base64.b64encode(ROOT[:31]).decode()}\n{TIME}\n",
        f"{ORIGIN}\n300\n{ROOT_B64.rstrip('=')}\n{TIME}\n",
        f"{ORIGIN}\n300\n{URLSAFE_ROOT}\n{TIME}\n",
        f"{ORIGIN}\n300\n{ROOT_B64}\n{TIME}",  # no final newline
        f"{ORIGIN}\r\n300\r\n{ROOT_B64}\r\n{TIME}\r\n",
    ],
)
def test_malformed_checkpoint_bodies_are_refused(body: str, key: Ed25519PrivateKey) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint_body(body)
    if body.endswith("\n") and "\r" not in body:
        note = sign_note(body, name=ORIGIN, private_key=key)
        with pytest.raises(NoteError):
            parse_checkpoint(note)


def test_unknown_extension_lines_are_kept() -> None:
    body = f"{ORIGIN}\n300\n{ROOT_B64}\nfoo bar\n{TIME}\n"
    assert parse_checkpoint_body(body)[4] == ("foo bar",)


# --- round trip and tampering ------------------------------------------------------------------


def test_round_trip(key: Ed25519PrivateKey) -> None:
    note = _note(key)
    checkpoint = parse_checkpoint(note)
    assert checkpoint.origin == ORIGIN
    assert checkpoint.size == 300
    assert checkpoint.root == ROOT
    assert checkpoint.timestamp == datetime(2026, 11, 29, 3, 48, 47, 123000, tzinfo=UTC)
    assert checkpoint.body == note.split("\n\n")[0] + "\n"
    assert checkpoint.extensions == ()
    [signature] = checkpoint.signatures
    assert signature.name == ORIGIN
    assert signature.key_hash == key_hash(ORIGIN, public_key_raw(key))
    assert len(signature.signature) == 64
    assert verify_note(note, vkey=_vkey(key))
    assert verified_signers(note, vkeys=[_vkey(key)]) == [_vkey(key)]


def _replace_line(note: str, index: int, line: str) -> str:
    lines = note.split("\n")
    lines[index] = line
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("index", "line"),
    [
        (0, "hub.test/transparency/live"),
        (1, "301"),
        (1, "299"),
        (2, base64.b64encode(hashlib.sha256(b"other").digest()).decode()),
        (3, "time 2026-11-29T03:48:47.124Z"),
    ],
)
def test_tampered_body_lines_are_refused(key: Ed25519PrivateKey, index: int, line: str) -> None:
    note = _replace_line(_note(key), index, line)
    parse_checkpoint(note)  # still well-formed
    assert not verify_note(note, vkey=_vkey(key))


def test_added_body_line_is_refused(key: Ed25519PrivateKey) -> None:
    note = _note(key)
    body, signatures = note.split("\n\n")
    assert not verify_note(f"{body}\nextra\n\n{signatures}", vkey=_vkey(key))


@pytest.mark.parametrize("position", [0, 3, 4, 20, 67])
def test_flipped_signature_bytes_are_refused(key: Ed25519PrivateKey, position: int) -> None:
    note = _note(key)
    body, line = note[:-1].rsplit("\n", 1)
    dash, name, encoded = line.split(" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[position] ^= 0x01
    tampered = f"{body}\n{dash} {name} {base64.b64encode(bytes(raw)).decode()}\n"
    assert not verify_note(tampered, vkey=_vkey(key))


def test_signature_by_another_key_is_refused(
    key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    resigned = _note(other_key)
    assert not verify_note(resigned, vkey=_vkey(key))
    assert verify_note(resigned, vkey=_vkey(other_key))
    assert not verify_note(_note(key), vkey=_vkey(other_key))


def test_key_name_is_part_of_the_key(key: Ed25519PrivateKey) -> None:
    note = _note(key)
    renamed = note.replace(f"\u2014 {ORIGIN} ", "\u2014 hub.test/transparency/live ")
    assert not verify_note(renamed, vkey=_vkey(key))
    # The same public key under another name is another key.
    assert not verify_note(note, vkey=_vkey(key, "hub.test/transparency/live"))


def test_signature_moved_onto_another_note_is_refused(key: Ed25519PrivateKey) -> None:
    signature_line = _note(key, size=300).split("\n\n")[1]
    other_body = _note(key, size=301).split("\n\n")[0]
    assert not verify_note(f"{other_body}\n\n{signature_line}", vkey=_vkey(key))


def test_unknown_signatures_are_ignored_known_bad_ones_reject(
    key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    note = _note(key)
    foreign = _note(other_key).split("\n\n")[1]
    cosigned = note + foreign
    assert verify_note(cosigned, vkey=_vkey(key))
    assert verified_signers(cosigned, vkeys=[_vkey(key), _vkey(other_key)]) == [
        _vkey(key),
        _vkey(other_key),
    ]
    # A signature line by a known key that does not verify rejects the whole note.
    bad_other = _note(other_key, size=7).split("\n\n")[1]
    assert verify_note(note + bad_other, vkey=_vkey(key))  # unknown to this verifier
    assert verified_signers(note + bad_other, vkeys=[_vkey(key), _vkey(other_key)]) == []
    # So does a known key's signature given twice.
    line = note.split("\n\n")[1]
    assert not verify_note(note + line, vkey=_vkey(key))


# --- malformed notes and keys ------------------------------------------------------------------


def _malformed_notes(note: str) -> list[object]:
    body, line = note.split("\n\n")
    head = body + "\n\n"
    encoded = line.split(" ")[2].strip()
    raw = base64.b64decode(encoded)
    return [
        "",
        "\n",
        "\n\n",
        body,  # no final newline, no signatures
        body + "\n",  # no blank line, no signatures
        head,  # no signatures
        body + "\n" + line,  # no blank line
        note.rstrip("\n"),  # no final newline
        note + "\n",  # blank line after the signatures
        head + line.replace("\u2014", "-"),
        head + line.replace("\u2014 ", "\u2014"),
        head + line.replace(" ", "  ", 1),
        head + "\u2014 " + ORIGIN + "\n",
        head + "\u2014  " + encoded + "\n",
        head + "\u2014 hub test " + encoded + "\n",
        head + "\u2014 hub+test " + encoded + "\n",
        head + "\u2014 " + ORIGIN + " " + encoded.rstrip("=") + "\n",
        head + "\u2014 " + ORIGIN + " " + encoded + " \n",
        head + "\u2014 " + ORIGIN + " " + base64.b64encode(raw[:4]).decode() + "\n",
        head + "\u2014 " + ORIGIN + " " + base64.urlsafe_b64encode(b"\xfb" * 68).decode() + "\n",
        head + "\u2014 " + ORIGIN + " !!!!\n",
        note.replace("\n", "\r\n"),
        note.replace("300", "3\x0000"),
        note.replace("300", "3\t00"),
        "\ud800" + note,
        note + line * 101,
        note.encode("utf-8").replace(b"300", b"3\xff0"),
        b"\xff\xfe",
        None,
        300,
        ["a"],
        "x" * (1 << 21) + "\n\n" + line,
    ]


def test_malformed_notes_raise_one_error_and_never_verify(key: Ed25519PrivateKey) -> None:
    for text in _malformed_notes(_note(key)):
        with pytest.raises(NoteError):
            parse_note(text)  # type: ignore[arg-type]
        with pytest.raises(NoteError):
            parse_checkpoint(text)  # type: ignore[arg-type]
        assert not verify_note(text, vkey=_vkey(key))  # type: ignore[arg-type]


@given(data=st.data())
@settings(max_examples=300, deadline=None)
def test_any_single_character_change_is_refused(data: st.DataObject) -> None:
    private = _go_key()
    note = _note(private)
    position = data.draw(st.integers(min_value=0, max_value=len(note) - 1))
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != note[position]))
    tampered = note[:position] + replacement + note[position + 1 :]
    assert not verify_note(tampered, vkey=_vkey(private))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a3+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        GO_VKEY.replace("c74f20a3", "c74f20a4"),  # hash does not match
        GO_VKEY.replace("c74f20a3", "C74F20A3"),
        GO_VKEY.replace("c74f20a3", "c74f20a"),
        GO_VKEY.replace("PeterNeumann", "Peter Neumann"),
        GO_VKEY.replace("PeterNeumann", "PeterNeumanm"),  # hash is of the other name
        GO_VKEY.replace("+ARpc", "+AhpC"),  # not type 0x01
        GO_VKEY[:-4],  # short key
        GO_VKEY.replace("/", "_"),
        GO_VKEY + "=",
    ],
)
def test_malformed_verifier_keys_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        parse_vkey(text)
    with pytest.raises(NoteError):
        verify_note(GO_NOTE, vkey=text)


def test_sign_note_refuses_bad_input(key: Ed25519PrivateKey) -> None:
    with pytest.raises(NoteError):
        sign_note("no newline", name=ORIGIN, private_key=key)
    with pytest.raises(NoteError):
        sign_note("", name=ORIGIN, private_key=key)
    with pytest.raises(NoteError):
        sign_note("tab\there\n", name=ORIGIN, private_key=key)
    with pytest.raises(NoteError):
        sign_note("text\n", name="two words", private_key=key)
    with pytest.raises(TypeError):
        sign_note("text\n", name=ORIGIN, private_key=b"\x00" * 32)  # type: ignore[arg-type]
