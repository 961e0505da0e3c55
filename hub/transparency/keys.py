"""The hub's Ed25519 signing keys for receipts and checkpoints.

One key is active at a time; it is made on first use, under ``TRANSPARENCY_KEY_NAME``, and its
private half is stored encrypted (``hub.crypto``). Rotation retires the active key and makes a
new one: a retired key signs nothing more but stays listed, so every receipt and checkpoint it
signed still verifies. Key ids are C2SP signed-note key ids (``name+hexhash``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from django.db import IntegrityError, transaction
from django.utils import timezone

from hub import crypto
from hub.conf import hub_settings
from hub.models import SigningKey
from hub.transparency import checkpoint

__all__ = [
    "ActiveKey",
    "signing_key_active",
    "signing_key_get",
    "signing_key_rotate",
    "signing_keys",
]


@dataclass(frozen=True)
class ActiveKey:
    """The active signing key, decrypted, as a process holds it."""

    key_id: str
    name: str
    public_key: bytes
    vkey: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature (64 bytes) of ``data``."""
        return self.private_key.sign(data)


_cached: ActiveKey | None = None


def _active_of(row: SigningKey) -> ActiveKey:
    raw = base64.b64decode(crypto.decrypt(row.private_key_encrypted))
    return ActiveKey(
        key_id=row.key_id,
        name=row.name,
        public_key=bytes(row.public_key),
        vkey=row.vkey,
        private_key=Ed25519PrivateKey.from_private_bytes(raw),
    )


def _new_key_row() -> SigningKey:
    name = hub_settings.TRANSPARENCY_KEY_NAME
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    secret = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return SigningKey(
        key_id=checkpoint.key_id(name, public),
        name=name,
        public_key=public,
        private_key_encrypted=crypto.encrypt(base64.b64encode(secret).decode()),
    )


def signing_key_active() -> ActiveKey:
    """The key to sign with now, made on first use. The decrypted key is kept per process; each
    call costs one indexed query for the active key's id, so a rotation made by any process is
    followed at once."""
    global _cached
    row = SigningKey.objects.filter(active=True).only("key_id").first()
    cached = _cached
    if row is not None and cached is not None and cached.key_id == row.key_id:
        return cached
    if row is None:
        try:
            with transaction.atomic():
                row = _new_key_row()
                row.save(force_insert=True)
        except IntegrityError:
            # Another process made the first key at the same moment: use that one.
            row = SigningKey.objects.get(active=True)
    else:
        row = SigningKey.objects.get(pk=row.pk)
    key = _active_of(row)
    _cached = key
    return key


def signing_key_rotate() -> SigningKey:
    """Retire the active key (if any) and make a new active one; returns the new key."""
    with transaction.atomic():
        now = timezone.now()
        retired = list(SigningKey.objects.select_for_update().filter(active=True).order_by("pk"))
        for old in retired:
            old.active = False
            old.retired_at = now
            old.save(update_fields=["active", "retired_at"])
        row = _new_key_row()
        row.created_at = now
        row.save(force_insert=True)
    return row


def signing_keys() -> list[SigningKey]:
    """Every key the hub ever signed with, oldest first, retired ones included."""
    return list(SigningKey.objects.order_by("created_at", "pk"))


def signing_key_get(*, key_id: str) -> SigningKey | None:
    """The key (active or retired) with this signed-note key id."""
    return SigningKey.objects.filter(key_id=key_id).first()
