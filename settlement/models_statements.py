"""Bank statements as the hub stores them, and the reconciliation of their lines with the ledger.

A bank reports what moved on one of the hub's accounts there; the ledger mirrors that account as a
``bank_cash`` account. A ``BankStatement`` is one statement of one such account (a camt.053
``Stmt`` or a whole mapped CSV file) and its ``StatementLine`` rows are its entries, kept as the
bank wrote them. A ``ReconciliationRun`` pairs the lines with the ledger transfers on the mirror
account; what it cannot pair becomes a ``ReconciliationException`` in the operator's queue.

Amounts are integer minor units of their own currency. Statements and lines are never changed
once stored, apart from each line's reconciliation state, which the latest run sets.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from hub.ids import IdFactory

__all__ = ["BankStatement", "ReconciliationException", "ReconciliationRun", "StatementLine"]


class BankStatement(models.Model):
    """One statement of one bank account, mirrored in the ledger by ``account`` (``bank_cash``).

    ``content_sha256`` identifies the statement whatever file carried it: the hash of what the
    statement says, without the message envelope or the copy/duplicate marker, so that the same
    statement arriving again (the same file, a duplicate copy, or inside a bigger file) is found
    instead of stored twice. ``file_sha256`` is the hash of the file it first came in.
    """

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("bst"), editable=False)
    livemode = models.BooleanField()
    account = models.ForeignKey(
        "settlement.Account", on_delete=models.PROTECT, related_name="bank_statements"
    )
    # The bank that reported it: the uploader, or the bank the operator named; null when the
    # operator imported a statement of an account of its own without naming the bank.
    bank = models.ForeignKey(
        "hub.Participant", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    uploaded_by = models.ForeignKey("hub.Participant", on_delete=models.PROTECT, related_name="+")
    format = models.CharField(max_length=32)
    # Text that comes from the bank's file is unbounded here: a bank writing more than ISO 20022
    # allows is not a reason to lose the statement.
    message_id = models.TextField(blank=True, default="")
    message_created_at = models.DateTimeField(null=True, blank=True)
    statement_id = models.TextField()
    # Position of the statement in its file (camt.053 holds one or more).
    file_position = models.PositiveIntegerField(default=0)
    issued_at = models.DateTimeField(null=True, blank=True)
    electronic_sequence_number = models.BigIntegerField(null=True, blank=True)
    legal_sequence_number = models.BigIntegerField(null=True, blank=True)
    copy_duplicate = models.TextField(blank=True, default="")
    page_number = models.BigIntegerField(null=True, blank=True)
    last_page = models.BooleanField(null=True, blank=True)
    account_identification = models.TextField(blank=True, default="")
    account_details = models.JSONField(default=dict)
    currency = models.CharField(max_length=3)
    from_date_time = models.DateTimeField(null=True, blank=True)
    to_date_time = models.DateTimeField(null=True, blank=True)
    # The stated period widened to every entry's date; null only for a statement without either.
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    # Signed (negative: a debit balance), in minor units of their own currency.
    opening_balance_minor = models.BigIntegerField(null=True, blank=True)
    opening_balance_currency = models.CharField(max_length=3, blank=True, default="")
    opening_balance_date = models.DateField(null=True, blank=True)
    closing_balance_minor = models.BigIntegerField(null=True, blank=True)
    closing_balance_currency = models.CharField(max_length=3, blank=True, default="")
    closing_balance_date = models.DateField(null=True, blank=True)
    balances = models.JSONField(default=list)
    additional_info = models.TextField(blank=True, default="")
    entry_count = models.PositiveIntegerField(default=0)
    filename = models.CharField(max_length=255, blank=True, default="")
    file_size = models.PositiveIntegerField(default=0)
    file_sha256 = models.CharField(max_length=64)
    content_sha256 = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["livemode", "account", "content_sha256"], name="bank_statement_once"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "id"], name="bank_statement_account"),
            models.Index(fields=["bank", "id"], name="bank_statement_bank"),
        ]


class StatementLine(models.Model):
    """One entry of a statement: what the bank booked (or reports as pending), as it wrote it.

    ``credit_debit`` is the bank's: ``CRDT`` is money arriving on the account, ``DBIT`` money
    leaving it. ``reference`` is what reconciliation matches on (the end-to-end id, else the
    structured creditor reference, else the payment information id a batch shares).
    """

    class Status(models.TextChoices):
        UNRECONCILED = "unreconciled"  # no run yet
        MATCHED = "matched"
        MISMATCHED = "mismatched"
        UNMATCHED = "unmatched"
        # Pending, information and future entries: not money on the account yet.
        EXCLUDED = "excluded"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("bsl"), editable=False)
    statement = models.ForeignKey(BankStatement, on_delete=models.PROTECT, related_name="lines")
    index = models.PositiveIntegerField()
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    credit_debit = models.CharField(max_length=4)
    stated_amount = models.TextField(blank=True, default="")
    rounded = models.BooleanField(default=False)
    entry_status = models.CharField(max_length=4)
    reversal = models.BooleanField(default=False)
    booking_date = models.DateField(null=True, blank=True)
    booking_date_time = models.DateTimeField(null=True, blank=True)
    value_date = models.DateField(null=True, blank=True)
    value_date_time = models.DateTimeField(null=True, blank=True)
    reference = models.TextField(blank=True, default="")
    account_servicer_reference = models.TextField(blank=True, default="")
    entry_reference = models.TextField(blank=True, default="")
    end_to_end_id = models.TextField(blank=True, default="")
    instruction_id = models.TextField(blank=True, default="")
    transaction_id = models.TextField(blank=True, default="")
    bank_transaction_code = models.JSONField(null=True, blank=True)
    remittance = models.JSONField(default=dict)
    counterparty = models.JSONField(null=True, blank=True)
    additional_info = models.TextField(blank=True, default="")
    transactions = models.JSONField(default=list)
    # Set by the statement's latest reconciliation run.
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNRECONCILED)
    # The rule that matched it, or the reason codes (comma-separated) it did not match.
    status_reason = models.CharField(max_length=200, blank=True, default="")
    transfer_ids = models.JSONField(default=list)
    run = models.ForeignKey(
        "settlement.ReconciliationRun",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["statement", "index"], name="statement_line_once"),
            models.CheckConstraint(
                condition=Q(amount_minor__gte=0), name="statement_line_amount_unsigned"
            ),
            models.CheckConstraint(
                condition=Q(credit_debit__in=["CRDT", "DBIT"]), name="statement_line_direction"
            ),
        ]
        indexes = [models.Index(fields=["statement", "status", "id"], name="statement_line_status")]


class ReconciliationRun(models.Model):
    """One reconciliation of a statement's booked lines against the ledger, under ``rules``.

    The latest run of a statement is ``current``; an earlier one is ``superseded`` and kept as it
    was. ``result`` holds the groups and unmatched items (each list bounded, the counts complete);
    ``matched_transfer_ids`` every transfer the run matched, so that another statement of the same
    account does not match it again.
    """

    class Status(models.TextChoices):
        CURRENT = "current"
        SUPERSEDED = "superseded"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("rcr"), editable=False)
    livemode = models.BooleanField()
    statement = models.ForeignKey(
        BankStatement, on_delete=models.PROTECT, related_name="reconciliation_runs"
    )
    created_by = models.ForeignKey("hub.Participant", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CURRENT)
    rules = models.JSONField(default=dict)
    # The transfers considered: made on these UTC dates (the statement's period and the window).
    window_start = models.DateField(null=True, blank=True)
    window_end = models.DateField(null=True, blank=True)
    counts = models.JSONField(default=dict)
    exception_counts = models.JSONField(default=dict)
    result = models.JSONField(default=dict)
    matched_transfer_ids = models.JSONField(default=list)
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["statement"],
                condition=Q(status="current"),
                name="reconciliation_run_current",
            ),
        ]


class ReconciliationException(models.Model):
    """An item of the operator's queue: a line or a transfer with nothing to match, or lines and
    transfers that share a reference but disagree (``reasons`` says how).

    A later run of the same statement that finds the same thing (``fingerprint``: kind, items and
    reasons) keeps this row open rather than adding another; one it no longer finds is closed as
    ``superseded``. A resolved exception stays resolved.
    """

    class Kind(models.TextChoices):
        UNMATCHED_LINE = "unmatched_line"
        UNMATCHED_TRANSFER = "unmatched_transfer"
        MISMATCHED = "mismatched"

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"
        SUPERSEDED = "superseded"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("rex"), editable=False)
    livemode = models.BooleanField()
    statement = models.ForeignKey(
        BankStatement, on_delete=models.PROTECT, related_name="reconciliation_exceptions"
    )
    account = models.ForeignKey("settlement.Account", on_delete=models.PROTECT, related_name="+")
    # The run that first found it, and the latest run that still found it.
    run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="+")
    last_run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    reasons = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64)
    reference = models.TextField(blank=True, default="")
    line_ids = models.JSONField(default=list)
    transfer_ids = models.JSONField(default=list)
    # Null where a side is absent, or mixes currencies.
    currency = models.CharField(max_length=3, blank=True, default="")
    line_amount_minor = models.BigIntegerField(null=True, blank=True)
    transfer_amount_minor = models.BigIntegerField(null=True, blank=True)
    amount_difference_minor = models.BigIntegerField(null=True, blank=True)
    tolerance_minor = models.BigIntegerField(null=True, blank=True)
    date_distance_days = models.IntegerField(null=True, blank=True)
    details = models.JSONField(default=dict)
    note = models.TextField(blank=True, default="")
    resolved_by = models.CharField(max_length=40, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.ForeignKey(
        ReconciliationRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["statement", "fingerprint"],
                condition=Q(status="open"),
                name="reconciliation_exception_open_once",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["unmatched_line", "unmatched_transfer", "mismatched"]),
                name="reconciliation_exception_kind",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["open", "resolved", "superseded"]),
                name="reconciliation_exception_status",
            ),
        ]
        indexes = [
            models.Index(fields=["livemode", "status", "id"], name="reconciliation_exc_status"),
            models.Index(fields=["statement", "status"], name="reconciliation_exc_statement"),
        ]
