"""The double-entry ledger: accounts and immutable transfers between them.

Modelled on TigerBeetle's accounts and transfers, inside the database:

- An account has one currency and four balance columns. Only the database changes them: a
  trigger on ``settlement_transfer`` adds each inserted transfer to both of its accounts (one
  aggregate update per account and statement on PostgreSQL), so a balance is always the sum of
  its transfers and, per currency, debits always equal credits.
- On a ``hot`` account, a move that no flag of the account could refuse (a credit to an
  account that may not be overdrawn, say) does not wait for the account when another
  transaction holds it: on PostgreSQL it is kept beside the account as an ``AccountDelta`` and
  folded into the columns by the next transfer that takes the account's lock. An account's
  balance is its columns plus its deltas (``Account.objects.with_balances()``,
  ``Account.balance_columns``).
- A transfer moves a positive amount between two accounts of its currency and mode. It is never
  updated or deleted (a trigger refuses); a mistake is corrected by another transfer that names
  it in ``corrects``.
- Two-phase transfers: a ``pending`` transfer reserves funds (the ``*_pending`` columns); one
  later transfer resolves it: ``post`` (in full or in part: ``amount`` is posted, the whole
  ``pending_amount`` released), ``void``, or ``expire`` once its ``expires_at`` has passed. A
  unique index lets a pending transfer be resolved once.

The migrations hold the triggers, for PostgreSQL and for SQLite (the embedded default).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from hub.ids import IdFactory
from hub.models import Participant

_BALANCES = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


def _balances_not_negative() -> Q:
    return Q(*[(f"{name}__gte", 0) for name in _BALANCES])


class AccountQuerySet(models.QuerySet["Account"]):
    def with_balances(self) -> AccountQuerySet:
        """The accounts with their deltas not yet folded, read by the same statement as their
        columns (a fold between two statements would count its deltas twice, or not at all)."""
        deltas = AccountDelta.objects.filter(account=OuterRef("pk")).values("account")
        return self.annotate(
            **{
                f"unfolded_{name}": Coalesce(
                    Subquery(deltas.annotate(total=Sum(name)).values("total")), 0
                )
                for name in (*_BALANCES, "transfers")
            }
        )


class Account(models.Model):
    class Kind(models.TextChoices):
        # What merchants hold at the hub (a liability of the hub): credit-normal.
        MERCHANT_SETTLEMENT = "merchant_settlement"
        # Held for payouts on their way to a bank: credit-normal.
        PAYOUT_CLEARING = "payout_clearing"
        # The hub's money at a bank, the mirror of a real bank account: debit-normal.
        BANK_CASH = "bank_cash"
        # What a payment institution owes the hub until it settles: debit-normal.
        INSTITUTION_RECEIVABLE = "institution_receivable"
        # The hub's position in one currency through conversions: credit-normal, so that its
        # balance is what the hub bought in that currency less what it sold.
        FX_POSITION = "fx_position"
        FEES = "fees"  # credit-normal
        INSURANCE_PREMIUM = "insurance_premium"  # credit-normal
        LOAN = "loan"  # debit-normal (a receivable from the borrower)
        SUSPENSE = "suspense"  # credit-normal: what cannot be placed yet
        EQUITY = "equity"  # credit-normal: opening balances and the hub's own funds

    DEBIT_NORMAL = frozenset({Kind.BANK_CASH, Kind.INSTITUTION_RECEIVABLE, Kind.LOAN})

    id = models.CharField(
        primary_key=True, max_length=40, default=IdFactory("acct"), editable=False
    )
    livemode = models.BooleanField()
    # Found through (owner, currency) below; an index of its own would only cost each write.
    owner = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="accounts", db_index=False
    )
    currency = models.CharField(max_length=3)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # TigerBeetle's flags: the account may never be overdrawn on its normal side.
    debits_must_not_exceed_credits = models.BooleanField(default=False)
    credits_must_not_exceed_debits = models.BooleanField(default=False)
    # Set at opening: moves that no flag could refuse do not wait for the account's lock (see
    # ``AccountDelta``); for an account that many transfers touch at once.
    hot = models.BooleanField(default=False)
    debits_posted = models.BigIntegerField(default=0)
    credits_posted = models.BigIntegerField(default=0)
    debits_pending = models.BigIntegerField(default=0)
    credits_pending = models.BigIntegerField(default=0)
    # Bumped by every transfer that touches the account. These five columns are the folded part
    # of the account; ``balance_columns`` and ``current_version`` add what is waiting beside it.
    version = models.BigIntegerField(default=0)
    reference = models.CharField(max_length=128, blank=True, default="")
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    objects = AccountQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=_balances_not_negative(), name="account_balances_not_negative"
            ),
            models.CheckConstraint(
                condition=~(
                    Q(debits_must_not_exceed_credits=True) & Q(credits_must_not_exceed_debits=True)
                ),
                name="account_one_overdraft_flag",
            ),
            models.CheckConstraint(
                condition=Q(debits_must_not_exceed_credits=False)
                | Q(credits_posted__gte=F("debits_posted") + F("debits_pending")),
                name="account_debits_within_credits",
            ),
            models.CheckConstraint(
                condition=Q(credits_must_not_exceed_debits=False)
                | Q(debits_posted__gte=F("credits_posted") + F("credits_pending")),
                name="account_credits_within_debits",
            ),
        ]
        indexes = [models.Index(fields=["owner", "currency"], name="account_owner_currency")]

    @property
    def balance_columns(self) -> tuple[int, int, int, int]:
        """(debits_posted, credits_posted, debits_pending, credits_pending) with the account's
        deltas: from ``with_balances()`` if it was read so, else read now."""
        if not hasattr(self, "unfolded_transfers"):
            self._read_balances()
        return (
            self.debits_posted + self.unfolded_debits_posted,
            self.credits_posted + self.unfolded_credits_posted,
            self.debits_pending + self.unfolded_debits_pending,
            self.credits_pending + self.unfolded_credits_pending,
        )

    @property
    def current_version(self) -> int:
        """``version`` with the transfers waiting in deltas."""
        if not hasattr(self, "unfolded_transfers"):
            self._read_balances()
        return self.version + self.unfolded_transfers

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        # The deltas read with the old columns go with them.
        for name in (*_BALANCES, "transfers"):
            self.__dict__.pop(f"unfolded_{name}", None)

    def _read_balances(self) -> None:
        names = (*_BALANCES, "version")
        unfolded = tuple(f"unfolded_{name}" for name in (*_BALANCES, "transfers"))
        row = Account.objects.with_balances().filter(pk=self.pk).values_list(*names, *unfolded)
        for name, value in zip((*names, *unfolded), row.get(), strict=True):
            setattr(self, name, value)

    @property
    def normal_balance(self) -> str:
        return "debit" if self.kind in self.DEBIT_NORMAL else "credit"

    @property
    def posted(self) -> int:
        return self._on_normal_side()[0]

    @property
    def pending(self) -> int:
        """What pending transfers would add to the posted balance if all were posted."""
        return self._on_normal_side()[1]

    @property
    def available(self) -> int:
        """Posted, less what pending transfers hold against it (incoming ones do not count)."""
        return self._on_normal_side()[2]

    def _on_normal_side(self) -> tuple[int, int, int]:
        return on_normal_side(self.normal_balance, *self.balance_columns)

    # Set by ``with_balances()``.
    unfolded_debits_posted: int
    unfolded_credits_posted: int
    unfolded_debits_pending: int
    unfolded_credits_pending: int
    unfolded_transfers: int


class AccountDelta(models.Model):
    """A move applied to an account without its lock, waiting to be folded into its columns
    (see ``Account``). Only PostgreSQL's transfer trigger writes them, and folds them under the
    account's lock; elsewhere there are none. Its columns are never negative."""

    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    debits_posted = models.BigIntegerField()
    credits_posted = models.BigIntegerField()
    debits_pending = models.BigIntegerField()
    credits_pending = models.BigIntegerField()
    transfers = models.BigIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=_balances_not_negative() & Q(transfers__gt=0),
                name="account_delta_not_negative",
            )
        ]
        indexes = [models.Index(fields=["account"], name="account_delta_account")]


def on_normal_side(
    normal_balance: str,
    debits_posted: int,
    credits_posted: int,
    debits_pending: int,
    credits_pending: int,
) -> tuple[int, int, int]:
    """(posted, pending, available) of an account's four columns, on its normal side: what the
    pending transfers hold against it counts against what is available, what they would bring
    in does not."""
    if normal_balance == "debit":
        posted = debits_posted - credits_posted
        return posted, debits_pending - credits_pending, posted - credits_pending
    posted = credits_posted - debits_posted
    return posted, credits_pending - debits_pending, posted - debits_pending


class Transfer(models.Model):
    class Type(models.TextChoices):
        SINGLE = "single"  # posted at once
        PENDING = "pending"
        POST = "post"
        VOID = "void"
        EXPIRE = "expire"

    RESOLUTIONS = (Type.POST, Type.VOID, Type.EXPIRE)

    # Insertion order: cursors and replays follow it.
    seq = models.BigAutoField(primary_key=True)
    # The caller's id (TigerBeetle's id as idempotency key), or one the hub made up.
    id = models.CharField(max_length=64)
    livemode = models.BooleanField()
    type = models.CharField(max_length=8, choices=Type.choices)
    # Checked by the ledger's trigger, for a whole statement at once (that each account exists
    # with the transfer's currency and mode), rather than by a foreign key row by row; accounts
    # are never deleted.
    # Indexed with ``seq`` below (the account's history in order), not alone.
    debit_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    credit_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    # post, void, expire: the pending transfer they resolve and the amount it held.
    # Indexed by the unique ``transfer_resolved_once`` (the rows that have one).
    pending = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="resolutions",
        db_index=False,
    )
    pending_amount = models.BigIntegerField(null=True, blank=True)
    # pending: when it expires if nothing resolved it (never, if null).
    expires_at = models.DateTimeField(null=True, blank=True)
    reference = models.CharField(max_length=128, blank=True, default="")
    code = models.CharField(max_length=32, blank=True, default="")
    corrects = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="corrections",
        db_index=False,
    )
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_positive"),
            models.CheckConstraint(
                condition=~Q(debit_account=F("credit_account")), name="transfer_two_accounts"
            ),
            models.CheckConstraint(
                condition=Q(type__in=["single", "pending", "post", "void", "expire"]),
                name="transfer_type_known",
            ),
            models.CheckConstraint(
                condition=(
                    Q(type__in=["post", "void", "expire"])
                    & Q(pending__isnull=False)
                    & Q(pending_amount__isnull=False)
                    & Q(amount__lte=F("pending_amount"))
                )
                | (
                    Q(type__in=["single", "pending"])
                    & Q(pending__isnull=True)
                    & Q(pending_amount__isnull=True)
                ),
                name="transfer_resolution_shape",
            ),
            # A void or an expiry releases the whole hold and posts nothing.
            models.CheckConstraint(
                condition=~Q(type__in=["void", "expire"]) | Q(amount=F("pending_amount")),
                name="transfer_release_whole",
            ),
            models.CheckConstraint(
                condition=Q(type="pending") | Q(expires_at__isnull=True),
                name="transfer_expiry_on_pending",
            ),
            models.UniqueConstraint(fields=["livemode", "id"], name="transfer_id_once"),
            models.UniqueConstraint(
                fields=["pending"],
                condition=Q(type__in=["post", "void", "expire"]),
                name="transfer_resolved_once",
            ),
        ]
        indexes = [
            models.Index(fields=["debit_account", "seq"], name="transfer_debit_seq"),
            models.Index(fields=["credit_account", "seq"], name="transfer_credit_seq"),
            models.Index(
                fields=["reference"], condition=~Q(reference=""), name="transfer_reference"
            ),
            models.Index(
                fields=["corrects"], condition=Q(corrects__isnull=False), name="transfer_corrects"
            ),
            models.Index(
                fields=["expires_at"],
                condition=Q(type="pending") & Q(expires_at__isnull=False),
                name="transfer_pending_expiry",
            ),
        ]


from settlement.models_payins import *  # noqa: E402,F403
from settlement.models_payouts import *  # noqa: E402,F403
from settlement.models_statements import *  # noqa: E402,F403
