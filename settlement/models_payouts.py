"""Payouts: a merchant's money leaves the hub for its own bank account.

A payout holds the amount on the merchant's settlement account (a pending transfer to the hub's
payout clearing account), asks a bank through its adapter, then posts the hold and pays it out of
the hub's cash at that bank when the bank confirms, or voids it when the bank refuses. The bank
operation's reference is the payout's id, so a payout is sent once however often it is retried.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from hub.ids import IdFactory
from hub.models import AdapterOperation, Participant
from settlement.models import Account


class PayoutBankAccount(models.Model):
    """A merchant's own bank account for payouts. The number is kept encrypted; every answer
    shows its last four digits only."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("pba"), editable=False)
    livemode = models.BooleanField()
    owner = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="payout_bank_accounts"
    )
    account_number_encrypted = models.TextField()
    account_number_last4 = models.CharField(max_length=4)
    # A keyed hash of the number: the same account registered twice is found without decrypting.
    account_number_hash = models.CharField(max_length=64)
    account_name = models.CharField(max_length=140)
    bank_code = models.CharField(max_length=20)
    country = models.CharField(max_length=2)
    currency = models.CharField(max_length=3)
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "livemode", "account_number_hash", "bank_code", "currency"],
                name="payout_bank_account_once",
            )
        ]


class Payout(models.Model):
    class Status(models.TextChoices):
        PROCESSING = "processing"  # held, sent or about to be sent, the bank has not settled it
        PAID = "paid"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("po"), editable=False)
    livemode = models.BooleanField()
    merchant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="payouts")
    source_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    bank_account = models.ForeignKey(
        PayoutBankAccount, on_delete=models.PROTECT, related_name="payouts"
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    # The merchant's own reference: one payout per reference, whatever the retries.
    reference = models.CharField(max_length=64)
    remittance_info = models.CharField(max_length=140, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROCESSING)
    connection = models.ForeignKey(
        "hub.AdapterConnection", on_delete=models.PROTECT, related_name="+"
    )
    operation = models.ForeignKey(
        AdapterOperation, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    failure_code = models.CharField(max_length=64, blank=True, default="")
    failure_reason = models.CharField(max_length=300, blank=True, default="")
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_amount_positive"),
            models.UniqueConstraint(
                fields=["merchant", "livemode", "reference"], name="payout_reference_once"
            ),
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(status="processing", operation__isnull=True),
                name="payout_unsent",
            )
        ]

    @property
    def hold_id(self) -> str:
        """The ids of its ledger transfers follow from its own, so a retry finds them."""
        return f"{self.id}-hold"
