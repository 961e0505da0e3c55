"""Signing keys and signed checkpoints: a key is made on first use and kept encrypted, rotation
retires it without making anything it signed unverifiable, and checkpoints are C2SP signed notes
over the log's size and root."""

from __future__ import annotations

import base64
from datetime import UTC

import pytest
from cryptography.exceptions import InvalidSignature
from django.utils import timezone

from hub import crypto
from hub.models import Checkpoint, SigningKey
from hub.transparency import checkpoint as notes
from hub.transparency import merkle
from hub.transparency.keys import (
    signing_key_active,
    signing_key_get,
    signing_key_rotate,
    signing_keys,
)
from hub.transparency.log import (
    checkpoint_at,
    checkpoint_latest,
    checkpoint_publish,
    checkpoints_list,
    log_append,
    log_check,
    log_origin,
)

pytestmark = pytest.mark.django_db


def leaves(count: int, start: int = 0) -> list[bytes]:
    return [merkle.leaf_hash(f"receipt {n}".encode()) for n in range(start, start + count)]


def test_the_first_use_makes_one_key_stored_encrypted():
    key = signing_key_active()

    [row] = SigningKey.objects.all()
    assert row.active
    assert row.retired_at is None
    assert row.key_id == key.key_id == notes.key_id("settlement-hub", key.public_key)
    assert row.vkey == key.vkey == notes.vkey("settlement-hub", key.public_key)
    assert key.name == row.name == "settlement-hub"
    raw = base64.b64decode(crypto.decrypt(row.private_key_encrypted))
    assert len(raw) == 32
    assert base64.b64encode(raw).decode() not in row.private_key_encrypted
    assert raw.hex() not in row.private_key_encrypted
    assert "private_key" not in repr(key).replace("private_key=", "")
    # It signs, and its public half verifies.
    signature = key.sign(b"a receipt")
    assert len(signature) == 64
    notes.parse_vkey(key.vkey)[2].verify(signature, b"a receipt")


def test_the_active_key_is_decrypted_once_per_process(django_assert_num_queries):
    first = signing_key_active()
    with django_assert_num_queries(1):
        assert signing_key_active() is first
    assert SigningKey.objects.count() == 1


def test_a_rotation_by_another_process_is_followed_at_once():
    before = signing_key_active()
    # Another process rotates: this one learns of it on its next signature.
    SigningKey.objects.filter(pk=SigningKey.objects.get().pk).update(
        active=False, retired_at=timezone.now()
    )
    after = signing_key_active()
    assert after.key_id != before.key_id
    assert SigningKey.objects.get(active=True).key_id == after.key_id


def test_the_key_is_named_after_the_setting(settings):
    settings.HUB = {**settings.HUB, "TRANSPARENCY_KEY_NAME": "regulator-visible"}
    signing_key_rotate()
    key = signing_key_active()
    assert key.name == "regulator-visible"
    assert key.key_id.startswith("regulator-visible+")


def test_rotation_retires_the_old_key_and_what_it_signed_still_verifies():
    old = signing_key_active()
    log_append(livemode=True, leaf_hashes=leaves(5))
    first = checkpoint_publish(livemode=True)
    receipt_signature = old.sign(b"receipt one")

    new_row = signing_key_rotate()
    new = signing_key_active()

    assert new.key_id == new_row.key_id != old.key_id
    assert [k.key_id for k in signing_keys()] == [old.key_id, new.key_id]
    retired = signing_key_get(key_id=old.key_id)
    assert retired is not None
    assert not retired.active
    assert retired.retired_at is not None
    assert SigningKey.objects.filter(active=True).get().key_id == new.key_id
    # What the old key signed verifies with its listed public key, and not with the new one.
    notes.parse_vkey(retired.vkey)[2].verify(receipt_signature, b"receipt one")
    with pytest.raises(InvalidSignature):
        notes.parse_vkey(new.vkey)[2].verify(receipt_signature, b"receipt one")
    assert notes.verify_note(first.note, vkey=retired.vkey)
    assert not notes.verify_note(first.note, vkey=new.vkey)
    # New checkpoints are signed by the new key; the check accepts both generations.
    log_append(livemode=True, leaf_hashes=leaves(3, start=5))
    second = checkpoint_publish(livemode=True)
    assert second.key_id == new.key_id
    assert notes.verify_note(second.note, vkey=new.vkey)
    result = log_check(livemode=True)
    assert result.ok, result.problems
    assert result.checkpoints == 2


def test_rotating_twice_keeps_one_active_key():
    signing_key_active()
    signing_key_rotate()
    signing_key_rotate()
    keys = signing_keys()
    assert len(keys) == 3
    assert [k.active for k in keys] == [False, False, True]
    assert len({k.key_id for k in keys}) == 3


def test_a_checkpoint_is_a_signed_note_over_the_logs_size_and_root():
    hashes = leaves(11)
    log_append(livemode=False, leaf_hashes=hashes)

    chk = checkpoint_publish(livemode=False)

    key = signing_key_active()
    assert chk.pk.startswith("chk_")
    assert (chk.livemode, chk.tree_size, bytes(chk.root_hash), chk.key_id) == (
        False,
        11,
        merkle.root_hash(hashes),
        key.key_id,
    )
    assert notes.verify_note(chk.note, vkey=key.vkey)
    parsed = notes.parse_checkpoint(chk.note)
    assert parsed.origin == "weihai.settlement-hub.example/receipts/test"
    assert log_origin(livemode=True) == "weihai.settlement-hub.example/receipts/live"
    assert (parsed.size, parsed.root) == (11, merkle.root_hash(hashes))
    assert parsed.timestamp == chk.timestamp.astimezone(UTC)
    assert chk.note.startswith(
        notes.checkpoint_body(
            origin=parsed.origin, size=11, root=merkle.root_hash(hashes), timestamp=chk.timestamp
        )
    )


def test_a_checkpoint_of_an_unchanged_log_is_the_last_one_unless_forced():
    empty = checkpoint_publish(livemode=False)
    assert empty.tree_size == 0
    assert bytes(empty.root_hash) == merkle.EMPTY_ROOT

    assert checkpoint_publish(livemode=False).pk == empty.pk
    forced = checkpoint_publish(livemode=False, force=True)
    assert forced.pk != empty.pk
    assert forced.tree_size == 0
    assert forced.timestamp >= empty.timestamp
    log_append(livemode=False, leaf_hashes=leaves(2))
    grown = checkpoint_publish(livemode=False)

    assert Checkpoint.objects.count() == 3
    assert checkpoint_latest(livemode=False) == grown
    assert checkpoint_latest(livemode=True) is None
    assert checkpoint_at(livemode=False, tree_size=0) == forced
    assert checkpoint_at(livemode=False, tree_size=2) == grown
    assert checkpoint_at(livemode=False, tree_size=1) is None
    assert list(checkpoints_list(livemode=False)) == [empty, forced, grown]
    assert list(checkpoints_list(livemode=True)) == []


def test_each_mode_has_its_own_log_and_checkpoints():
    log_append(livemode=True, leaf_hashes=leaves(4))
    log_append(livemode=False, leaf_hashes=leaves(1, start=99))
    live = checkpoint_publish(livemode=True)
    test = checkpoint_publish(livemode=False)
    assert (live.tree_size, test.tree_size) == (4, 1)
    assert notes.parse_checkpoint(live.note).origin.endswith("/live")
    assert notes.parse_checkpoint(test.note).origin.endswith("/test")
    assert bytes(live.root_hash) == merkle.root_hash(leaves(4))
    assert bytes(test.root_hash) == merkle.root_hash(leaves(1, start=99))
