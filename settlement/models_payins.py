"""Payins, refunds, fees and settlement runs: money from buyers reaching merchants.

A payin is a payment intent at a payment institution, made by the hub for a merchant. When the
institution says the buyer paid, the merchant gets a pending credit from the institution's
receivable account: the institution holds the money until it settles with the hub. The daily
settlement run for that institution and currency posts the credits (less what was refunded
before), charges the hub's fee as a transfer of its own, and states what the institution owes
the hub (its settlement instruction).

A refund of a payin that is not settled yet is netted: the run posts less. A refund of a
settled payin holds the amount on the merchant's account until the institution confirms it,
and the next run counts it against what the institution owes.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from hub.ids import IdFactory
from hub.models import AdapterConnection, AdapterOperation, Participant
from settlement.models import Account


class Payin(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for the buyer
        SUCCEEDED = "succeeded"  # paid: a pending credit on the merchant's account
        SETTLED = "settled"  # its settlement run posted it
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("pay"), editable=False)
    livemode = models.BooleanField()
    merchant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="payins")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    connection = models.ForeignKey(AdapterConnection, on_delete=models.PROTECT, related_name="+")
    operation = models.ForeignKey(
        AdapterOperation, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    # The merchant's own reference (its order number): one payin per reference.
    reference = models.CharField(max_length=64)
    description = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_code = models.CharField(max_length=64, blank=True, default="")
    # Refunds confirmed by the institution, and refunds asked for and not yet confirmed, that
    # the settlement run takes off what it posts (refunds made before the payin settled).
    refunded = models.BigIntegerField(default=0)
    refunds_pending = models.BigIntegerField(default=0)
    # Set by the settlement run: what it posted to the merchant and the hub's fee on that.
    settled_amount = models.BigIntegerField(null=True, blank=True)
    fee = models.BigIntegerField(null=True, blank=True)
    fee_rule = models.ForeignKey(
        "settlement.FeeRule", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    run = models.ForeignKey(
        "settlement.SettlementRun",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payins",
    )
    metadata = models.JSONField(default=dict)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payin_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded__gte=0)
                & Q(refunds_pending__gte=0)
                & Q(amount__gte=models.F("refunded") + models.F("refunds_pending")),
                name="payin_refunds_within_amount",
            ),
            models.UniqueConstraint(
                fields=["merchant", "livemode", "reference"], name="payin_reference_once"
            ),
        ]
        indexes = [
            # What the next settlement run of an institution takes.
            models.Index(
                fields=["currency", "succeeded_at"],
                condition=Q(status="succeeded"),
                name="payin_unsettled",
            ),
        ]

    @property
    def credit_id(self) -> str:
        """The pending credit's transfer id; the run's post and fee follow from it."""
        return f"{self.id}-credit"


class Refund(models.Model):
    class Status(models.TextChoices):
        PROCESSING = "processing"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("rf"), editable=False)
    livemode = models.BooleanField()
    payin = models.ForeignKey(Payin, on_delete=models.PROTECT, related_name="refunds")
    merchant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reference = models.CharField(max_length=64)
    reason = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROCESSING)
    # Made before the payin settled: the settlement run posts that much less, nothing is held.
    # Otherwise the amount is held on the merchant's account until the institution answers.
    netted = models.BooleanField()
    operation = models.ForeignKey(
        AdapterOperation, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    failure_code = models.CharField(max_length=64, blank=True, default="")
    failure_reason = models.CharField(max_length=300, blank=True, default="")
    # What this refund changes in the institution's next settlement run, signed as the run's
    # net: minus the amount for a held refund that succeeded (the institution paid the buyer
    # back out of what it owes the hub), plus the amount for a netted refund that failed after
    # its payin settled (the run took off money that the buyer kept paying). Zero otherwise.
    adjustment = models.BigIntegerField(default=0)
    adjusted_at = models.DateTimeField(null=True, blank=True)
    run = models.ForeignKey(
        "settlement.SettlementRun",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="refunds",
    )
    succeeded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.UniqueConstraint(
                fields=["merchant", "livemode", "reference"], name="refund_reference_once"
            ),
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(status="processing", operation__isnull=True),
                name="refund_unsent",
            ),
            models.Index(
                fields=["adjusted_at"],
                condition=~Q(adjustment=0) & Q(run__isnull=True),
                name="refund_unsettled",
            ),
        ]

    @property
    def hold_id(self) -> str:
        return f"{self.id}-hold"


class FeeRule(models.Model):
    """The hub's fee on settled payins in one currency: ``percent_bps`` of the amount (rounded
    half to even to the currency's unit) plus ``fixed``. A merchant's own rule wins over the
    default (``merchant`` empty)."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("fee"), editable=False)
    livemode = models.BooleanField()
    merchant = models.ForeignKey(
        Participant, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    currency = models.CharField(max_length=3)
    percent_bps = models.PositiveIntegerField()
    fixed = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(percent_bps__lte=10_000) & Q(fixed__gte=0), name="fee_rule_bounds"
            ),
            models.UniqueConstraint(
                fields=["livemode", "merchant", "currency"],
                condition=Q(merchant__isnull=False),
                name="fee_rule_merchant_once",
            ),
            models.UniqueConstraint(
                fields=["livemode", "currency"],
                condition=Q(merchant__isnull=True),
                name="fee_rule_default_once",
            ),
        ]


class SettlementRun(models.Model):
    """One institution's settlement in one currency for one business day: every payin that
    succeeded before the day's cutoff (in the institution's time zone) and is not settled yet,
    and every held refund confirmed before it. Made once per (institution, currency, day)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETED = "completed"

    class Direction(models.TextChoices):
        INSTITUTION_PAYS = "institution_pays_hub"
        HUB_PAYS = "hub_pays_institution"
        NONE = "none"

    id = models.CharField(
        primary_key=True, max_length=40, default=IdFactory("srun"), editable=False
    )
    livemode = models.BooleanField()
    institution = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    business_date = models.DateField()
    time_zone = models.CharField(max_length=40)
    cutoff_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    # A worker executing the run holds it until then; after that another may take it over.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True, default="")
    # Totals, written when the run completes (sums of what it settled).
    payins_count = models.PositiveIntegerField(default=0)
    gross = models.BigIntegerField(default=0)  # the payins' amounts
    refunds_netted = models.BigIntegerField(default=0)  # taken off the payins before posting
    adjustments_count = models.PositiveIntegerField(default=0)
    adjustments = models.BigIntegerField(default=0)  # refunds' adjustments (signed)
    fees = models.BigIntegerField(default=0)  # the hub's, charged to the merchants
    # What the institution owes the hub for the day: gross - refunds_netted + adjustments
    # (negative: the hub owes it).
    net = models.BigIntegerField(default=0)
    direction = models.CharField(max_length=24, choices=Direction.choices, default=Direction.NONE)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["livemode", "institution", "currency", "business_date"],
                name="settlement_run_once",
            )
        ]
        indexes = [
            models.Index(fields=["lease_until"], condition=Q(status="running"), name="run_due")
        ]

    @property
    def instruction_amount(self) -> int:
        return abs(self.net)
