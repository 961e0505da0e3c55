"""Electronic receipts: each settled cross-border movement with its verification, as RFC 8785
canonical JSON signed with Ed25519 and appended to the transparency log of its mode."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from fx.models_verification import Verification
from hub.ids import IdFactory
from hub.models import Participant
from settlement.models_payins import Payin
from settlement.models_payouts import Payout


class Receipt(models.Model):
    """``body`` is the exact bytes that were signed and logged (UTF-8 canonical JSON); the other
    columns repeat some of its fields so that regulators can search and count. The log's leaf
    is SHA-256(0x00 || body) at ``leaf_index``."""

    class Direction(models.TextChoices):
        INBOUND = "inbound"  # money from a foreign buyer (a payin)
        OUTBOUND = "outbound"  # money to a foreign party (a payout)

    id = models.CharField(
        primary_key=True, max_length=40, default=IdFactory("rcpt"), editable=False
    )
    livemode = models.BooleanField()
    merchant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    institution = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    verification = models.OneToOneField(
        Verification, on_delete=models.PROTECT, related_name="receipt"
    )
    payin = models.OneToOneField(
        Payin, null=True, blank=True, on_delete=models.PROTECT, related_name="receipt"
    )
    payout = models.OneToOneField(
        Payout, null=True, blank=True, on_delete=models.PROTECT, related_name="receipt"
    )
    direction = models.CharField(max_length=8, choices=Direction.choices)
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    customs_mode = models.CharField(max_length=4)
    trade_type = models.CharField(max_length=3)
    counterparty_country = models.CharField(max_length=2)
    outcome = models.CharField(max_length=8)  # the verification's decision when issued
    settled_on = models.DateField()
    body = models.BinaryField()
    key_id = models.CharField(max_length=64)
    signature = models.BinaryField()  # Ed25519, 64 bytes
    leaf_index = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["livemode", "leaf_index"], name="fx_receipt_leaf_once"),
            models.CheckConstraint(
                condition=Q(payin__isnull=False) ^ Q(payout__isnull=False),
                name="fx_receipt_one_movement",
            ),
        ]
        indexes = [
            models.Index(fields=["livemode", "settled_on", "id"], name="fx_receipt_by_day"),
            models.Index(fields=["livemode", "merchant", "id"], name="fx_receipt_by_merchant"),
        ]
