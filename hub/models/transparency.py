"""The transparency log's storage: one RFC 6962 Merkle tree per mode, its signing keys and the
signed checkpoints published over it (``hub.transparency.log`` and ``hub.transparency.keys``).

The tree is stored as the hashes of its complete subtrees, level 0 being the leaf hashes, so that
any root, inclusion proof or consistency proof, at the current size or any earlier one, is
O(log n) stored hashes fetched in one indexed query. On PostgreSQL a trigger refuses UPDATE and
DELETE on the node and checkpoint tables (migration ``hub.0004_transparency``).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from hub.ids import IdFactory
from hub.transparency.merkle import EMPTY_ROOT


class TransparencyLog(models.Model):
    """The head of one mode's log: its size and root, the row every appender locks first, so
    that appends to one log are serialised and never leave a gap or a duplicate index."""

    livemode = models.BooleanField(primary_key=True)
    size = models.BigIntegerField(default=0)
    root_hash = models.BinaryField(max_length=32, default=EMPTY_ROOT)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(size__gte=0), name="transparency_log_size_not_negative"
            )
        ]


class TransparencyNode(models.Model):
    """The hash of one complete subtree: leaves ``[position * 2**level, (position + 1) *
    2**level)`` of the log of ``livemode``. Level 0 holds the leaf hashes. A node is written once,
    when its last leaf is appended, and never changes."""

    pk = models.CompositePrimaryKey("livemode", "level", "position")
    livemode = models.BooleanField()
    level = models.PositiveSmallIntegerField()
    position = models.BigIntegerField()
    hash = models.BinaryField(max_length=32)


class SigningKey(models.Model):
    """An Ed25519 key the hub signs receipts and checkpoints with. ``key_id`` is the C2SP
    signed-note key id (``name+hexhash``); the private key is a Fernet ciphertext
    (``hub.crypto``). One key is active; rotation retires it, and a retired key stays listed so
    that whatever it signed still verifies."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("tsk"), editable=False)
    key_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=64)
    public_key = models.BinaryField(max_length=32)
    private_key_encrypted = models.TextField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["active"], condition=models.Q(active=True), name="signing_key_one_active"
            ),
            models.CheckConstraint(
                condition=models.Q(active=True, retired_at__isnull=True)
                | models.Q(active=False, retired_at__isnull=False),
                name="signing_key_retired_when_inactive",
            ),
        ]

    @property
    def vkey(self) -> str:
        """The C2SP verifier key (``name+hexhash+base64(0x01 || public key)``)."""
        from hub.transparency.checkpoint import vkey

        return vkey(self.name, bytes(self.public_key))


class Checkpoint(models.Model):
    """A signed checkpoint: the C2SP tlog-checkpoint body (origin, size, root, time) of one
    mode's log, as a signed note. ``note`` is the exact text that was signed and published; the
    other columns repeat its fields for searching."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("chk"), editable=False)
    livemode = models.BooleanField()
    tree_size = models.BigIntegerField()
    root_hash = models.BinaryField(max_length=32)
    timestamp = models.DateTimeField()
    key_id = models.CharField(max_length=64)
    note = models.TextField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(tree_size__gte=0), name="checkpoint_size_not_negative"
            )
        ]
        indexes = [
            models.Index(fields=["livemode", "id"], name="checkpoint_by_mode"),
            models.Index(fields=["livemode", "tree_size", "id"], name="checkpoint_by_size"),
        ]
