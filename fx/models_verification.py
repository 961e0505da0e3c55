"""Forex e-document verification: a cross-border payin or payout reviewed against the trade
documents that back it, with an outcome and the reasons for it, and the bank officer's review of
what the rules could not decide."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from hub.ids import IdFactory
from hub.models import Participant
from settlement.models_payins import Payin
from settlement.models_payouts import Payout
from trade.models import CustomsDeclaration, DocumentUpload, Order, PaymentRecord, Waybill


class Outcome(models.TextChoices):
    VERIFIED = "verified"
    REJECTED = "rejected"
    REVIEW = "review"


class VerificationBatch(models.Model):
    """One vectorised pass over every order of an uploaded file (or of a merchant's orders)."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("vbt"), editable=False)
    livemode = models.BooleanField()
    merchant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    upload = models.ForeignKey(
        DocumentUpload, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    orders_count = models.PositiveIntegerField(default=0)
    verified_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)
    review_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)


class Verification(models.Model):
    """The documents found for one order, what the rules made of them (``outcome`` and
    ``reasons``, codes), and for ``review``, the officer's decision. ``decision`` is what counts:
    the outcome, or the review's verdict once a bank officer gave it."""

    class Subject(models.TextChoices):
        PAYIN = "payin"
        PAYOUT = "payout"
        ORDER = "order"  # checked in a batch, before any money moved

    class Review(models.TextChoices):
        NONE = "none"  # nothing to review
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("ver"), editable=False)
    livemode = models.BooleanField()
    # Indexes: a batch inserts a hundred thousand rows at once, and every index costs each of
    # them; only the lookups made are indexed (below), not every foreign key.
    merchant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    subject = models.CharField(max_length=8, choices=Subject.choices)
    # One verification per payin or payout: a unique constraint over those that name one (see
    # Meta), so that a batch's rows, which name neither, add nothing to it.
    payin = models.ForeignKey(
        Payin,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="verifications",
        db_index=False,
    )
    payout = models.ForeignKey(
        Payout,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="verifications",
        db_index=False,
    )
    batch = models.ForeignKey(
        VerificationBatch,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="verifications",
        db_index=False,
    )
    order_no = models.CharField(max_length=64)
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # The order's own documents, checked in PostgreSQL through the order rather than each by a
    # foreign key of its own: a batch's commit would check (and lock) three more rows for each
    # of its verifications, which cost more than all the rest of the pass. What keeps them
    # sound: a verification names only documents read in its own transaction as the order's
    # (filed for ``order``, whose foreign key stays); trade documents are never deleted nor
    # their ids changed (no service does, and PROTECT still refuses a deletion through Django).
    payment_record = models.ForeignKey(
        PaymentRecord,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    waybill = models.ForeignKey(
        Waybill,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    customs_declaration = models.ForeignKey(
        CustomsDeclaration,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()  # the movement's, minor units
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    reasons = models.JSONField(default=list)  # codes, sorted
    review = models.CharField(max_length=8, choices=Review.choices, default=Review.NONE)
    reviewed_by = models.ForeignKey(
        Participant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    review_note = models.TextField(blank=True, default="")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(subject="payin") & Q(payin__isnull=False) & Q(payout__isnull=True))
                | (Q(subject="payout") & Q(payout__isnull=False) & Q(payin__isnull=True))
                | (Q(subject="order") & Q(payin__isnull=True) & Q(payout__isnull=True)),
                name="fx_verification_subject",
            ),
            models.UniqueConstraint(
                fields=["payin"], condition=Q(payin__isnull=False), name="fx_verification_payin"
            ),
            models.UniqueConstraint(
                fields=["payout"], condition=Q(payout__isnull=False), name="fx_verification_payout"
            ),
        ]
        # Each index costs every row of a batch: those of the lookups made, and where a batch's
        # rows have no part in a lookup, partial indexes that leave them out.
        indexes = [
            # A merchant's list.
            models.Index(fields=["merchant", "livemode", "id"], name="fx_verification_list"),
            # The banks' review queue (a batch's rows are never in it).
            models.Index(
                fields=["livemode", "id"],
                name="fx_verification_pending",
                condition=Q(review="pending"),
            ),
            # A batch's verifications, listed.
            models.Index(fields=["batch", "id"], name="fx_verification_batch"),
            # The payins and payouts an order backs (reuse; a batch's checks back nothing).
            models.Index(
                fields=["order"],
                name="fx_verification_backing",
                condition=Q(subject__in=["payin", "payout"]),
            ),
            # What the receipts' issuer walks: payins' and payouts' verifications, in id order.
            models.Index(
                fields=["livemode", "id"],
                name="fx_verification_movements",
                condition=Q(subject__in=["payin", "payout"]),
            ),
            # What a bank decided (a batch's rows have no reviewer).
            models.Index(
                fields=["reviewed_by", "id"],
                name="fx_verification_reviewer",
                condition=Q(reviewed_by__isnull=False),
            ),
        ]

    @property
    def decision(self) -> str:
        if self.review == self.Review.APPROVED:
            return Outcome.VERIFIED
        if self.review == self.Review.REJECTED:
            return Outcome.REJECTED
        return self.outcome


class DeniedParty(models.Model):
    """A party the hub refuses to settle for (the black list): matched on its identity number
    and country, or, without a number, on its exact name."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("dnp"), editable=False)
    livemode = models.BooleanField()
    name = models.CharField(max_length=200)
    id_number = models.CharField(max_length=64, blank=True, default="")
    country = models.CharField(max_length=2, blank=True, default="")
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=timezone.now)
