"""Electronic trade documents a merchant files to back its cross-border receipts and payments.

Documents name each other by the numbers the trade uses (order number, waybill number, contract
number); the links are also kept as foreign keys, resolved when a document is filed: a payment
record, a waybill or a customs declaration names an order the merchant filed before. Amounts are
minor units of ``currency``; every time is aware (UTC in storage).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from hub.ids import IdFactory
from hub.models import Participant


class CustomsMode(models.TextChoices):
    """China customs supervision modes of cross-border e-commerce exports."""

    RETAIL_EXPORT = "9610", "9610 B2C retail export, list declaration"
    B2B_DIRECT = "9710", "9710 B2B direct export"
    OVERSEAS_WAREHOUSE = "9810", "9810 export to an overseas warehouse"
    BONDED = "1210", "1210 bonded e-commerce"


class TradeType(models.TextChoices):
    B2C = "B2C"
    B2B = "B2B"


class DocumentUpload(models.Model):
    """A bulk file of one kind of document: what was accepted, and each refused row's errors."""

    class Kind(models.TextChoices):
        ORDER = "order"
        PAYMENT_RECORD = "payment_record"
        WAYBILL = "waybill"
        CUSTOMS_DECLARATION = "customs_declaration"
        CONTRACT = "contract"
        INVOICE = "invoice"

    class Format(models.TextChoices):
        CSV = "csv"
        JSONL = "jsonl"

    class Mode(models.TextChoices):
        PARTIAL = "partial"  # good rows are kept, bad rows are reported
        ALL_OR_NOTHING = "all_or_nothing"  # one bad row refuses the file

    class Status(models.TextChoices):
        ACCEPTED = "accepted"
        PARTIALLY_ACCEPTED = "partially_accepted"
        REJECTED = "rejected"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("upl"), editable=False)
    livemode = models.BooleanField()
    merchant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    format = models.CharField(max_length=8, choices=Format.choices)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.PARTIAL)
    status = models.CharField(max_length=24, choices=Status.choices)
    filename = models.CharField(max_length=200, blank=True, default="")
    sha256 = models.CharField(max_length=64)
    rows_total = models.PositiveIntegerField(default=0)
    rows_accepted = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    # [{"row": 7, "code": "...", "param": "...", "message": "..."}], the first ERRORS_KEPT.
    errors = models.JSONField(default=list)
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["merchant", "livemode", "id"], name="trade_upload_list")]


class _Document(models.Model):
    livemode = models.BooleanField()
    merchant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    upload = models.ForeignKey(
        DocumentUpload, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class Order(_Document):
    """A buyer's order: ``amount`` is what the buyer pays, ``goods_amount`` plus
    ``shipping_amount`` plus ``tax_amount``."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("ord"), editable=False)
    order_no = models.CharField(max_length=64)
    trade_type = models.CharField(max_length=3, choices=TradeType.choices)
    customs_mode = models.CharField(max_length=4, choices=CustomsMode.choices)
    buyer_name = models.CharField(max_length=200)
    buyer_id = models.CharField(max_length=64)  # the buyer's identity number at its platform
    buyer_country = models.CharField(max_length=2)
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    goods_amount = models.BigIntegerField()
    shipping_amount = models.BigIntegerField(default=0)
    tax_amount = models.BigIntegerField(default=0)
    ordered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "livemode", "order_no"], name="trade_order_no_once"
            ),
            models.CheckConstraint(
                condition=Q(amount__gt=0)
                & Q(goods_amount__gte=0)
                & Q(shipping_amount__gte=0)
                & Q(tax_amount__gte=0),
                name="trade_order_amounts",
            ),
        ]
        indexes = [models.Index(fields=["merchant", "livemode", "id"], name="trade_order_list")]


class PaymentRecord(_Document):
    """The payment institution's record of the buyer paying for an order."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("pmr"), editable=False)
    payment_no = models.CharField(max_length=64)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="payment_records")
    order_no = models.CharField(max_length=64)
    payer_name = models.CharField(max_length=200)
    payer_id = models.CharField(max_length=64)
    payer_country = models.CharField(max_length=2)
    institution_name = models.CharField(max_length=200, blank=True, default="")
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    paid_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "livemode", "payment_no"], name="trade_payment_no_once"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="trade_payment_amount"),
        ]
        indexes = [models.Index(fields=["merchant", "livemode", "id"], name="trade_payment_list")]


class Waybill(_Document):
    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("wb"), editable=False)
    waybill_no = models.CharField(max_length=64)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="waybills")
    order_no = models.CharField(max_length=64)
    carrier = models.CharField(max_length=100)
    consignee_name = models.CharField(max_length=200)
    destination_country = models.CharField(max_length=2)
    shipped_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "livemode", "waybill_no"], name="trade_waybill_no_once"
            ),
        ]
        indexes = [models.Index(fields=["merchant", "livemode", "id"], name="trade_waybill_list")]


class CustomsDeclaration(_Document):
    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("cus"), editable=False)
    declaration_no = models.CharField(max_length=64)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="declarations")
    order_no = models.CharField(max_length=64)
    waybill_no = models.CharField(max_length=64, blank=True, default="")
    customs_mode = models.CharField(max_length=4, choices=CustomsMode.choices)
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    declared_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "livemode", "declaration_no"], name="trade_declaration_no_once"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="trade_declaration_amount"),
        ]
        indexes = [
            models.Index(fields=["merchant", "livemode", "id"], name="trade_declaration_list")
        ]


class Contract(_Document):
    """A B2B sales contract with a foreign buyer."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("ctr"), editable=False)
    contract_no = models.CharField(max_length=64)
    buyer_name = models.CharField(max_length=200)
    buyer_country = models.CharField(max_length=2)
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    signed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "livemode", "contract_no"], name="trade_contract_no_once"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="trade_contract_amount"),
        ]
        indexes = [models.Index(fields=["merchant", "livemode", "id"], name="trade_contract_list")]


class Invoice(_Document):
    """A commercial invoice, under a contract (B2B) or for an order."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("inv"), editable=False)
    invoice_no = models.CharField(max_length=64)
    contract = models.ForeignKey(
        Contract, null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    # The numbers the invoice names, as filed ("" when it names none), beside the links.
    contract_no = models.CharField(max_length=64, blank=True, default="")
    order_no = models.CharField(max_length=64, blank=True, default="")
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    issued_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "livemode", "invoice_no"], name="trade_invoice_no_once"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="trade_invoice_amount"),
            models.CheckConstraint(
                condition=Q(contract__isnull=False) | Q(order__isnull=False),
                name="trade_invoice_backs_something",
            ),
        ]
        indexes = [models.Index(fields=["merchant", "livemode", "id"], name="trade_invoice_list")]
