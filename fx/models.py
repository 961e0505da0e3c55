"""Quotes, conversions, merchants' margin tiers and auto-conversion rules.

Rates are kept as decimal text (never a float, and SQLite has no exact decimal column): units of
the buy currency per one unit of the sell currency.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

from django.db import models
from django.db.models import Q
from django.utils import timezone

from hub.ids import IdFactory
from hub.models import Participant
from settlement.models import Account

ALL_IN_DIGITS = 24


class FxQuote(models.Model):
    """A rate locked for a merchant until ``expires_at``, for one conversion at most.

    ``reference_rate`` (from ``rate_source`` on ``rate_date``) is what the hub's position trades
    at; the merchant pays ``margin_bps`` of what it sells as a fee of its own, so its all-in
    rate is ``buy_amount / sell_amount``. Amounts are minor units, rounded half to even."""

    class Status(models.TextChoices):
        OPEN = "open"
        USED = "used"

    class Fixed(models.TextChoices):
        SELL = "sell"
        BUY = "buy"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("quo"), editable=False)
    livemode = models.BooleanField()
    merchant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="fx_quotes")
    sell_currency = models.CharField(max_length=3)
    buy_currency = models.CharField(max_length=3)
    fixed_side = models.CharField(max_length=4, choices=Fixed.choices)
    sell_amount = models.BigIntegerField()  # what leaves the merchant, margin included
    margin_amount = models.BigIntegerField()  # in the sell currency
    buy_amount = models.BigIntegerField()
    reference_rate = models.CharField(max_length=64)
    rate_source = models.CharField(max_length=40)
    rate_date = models.DateField()
    margin_bps = models.PositiveIntegerField()
    tier = models.CharField(max_length=32)
    rounding = models.CharField(max_length=16, default="half_even")
    # A batch quote: each order converted on its own ([{"reference", "sell", "margin", "buy"}]),
    # the totals being their sums.
    orders = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(sell_amount__gt=0) & Q(buy_amount__gt=0) & Q(margin_amount__gte=0),
                name="fx_quote_amounts",
            ),
            models.CheckConstraint(
                condition=~Q(sell_currency=models.F("buy_currency")), name="fx_quote_two_currencies"
            ),
        ]

    @property
    def all_in_rate(self) -> Decimal:
        """Units of the buy currency the merchant gets per unit of the sell currency it pays,
        in major units, margin included, to ``ALL_IN_DIGITS`` significant digits (enough for
        the sell amount times it to give the buy amount within a minor unit at any size)."""
        from hub.money import currency_exponent

        scale = Decimal(10) ** (
            currency_exponent(self.sell_currency) - currency_exponent(self.buy_currency)
        )
        with localcontext(Context(prec=ALL_IN_DIGITS, rounding=ROUND_HALF_EVEN)):
            return Decimal(self.buy_amount) * scale / Decimal(self.sell_amount)


class FxConversion(models.Model):
    """A quote executed: three linked ledger transfers (``{id}-sell``: the merchant's sell
    account to the hub's position in that currency; ``{id}-buy``: the hub's position in the buy
    currency to the merchant's buy account; ``{id}-margin``: the margin to the hub's fees)."""

    id = models.CharField(
        primary_key=True, max_length=40, default=IdFactory("conv"), editable=False
    )
    livemode = models.BooleanField()
    # Conversions are looked up by merchant through ``fx_conversion_reference_once`` and never
    # by account; the ledger keeps every account (its trigger refuses a delete), so the account
    # links need neither an index nor a check at each commit.
    merchant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # One conversion per quote, whatever the races.
    quote = models.OneToOneField(FxQuote, on_delete=models.PROTECT, related_name="conversion")
    sell_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    buy_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    sell_currency = models.CharField(max_length=3)
    buy_currency = models.CharField(max_length=3)
    sell_amount = models.BigIntegerField()
    margin_amount = models.BigIntegerField()
    buy_amount = models.BigIntegerField()
    reference = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "livemode", "reference"], name="fx_conversion_reference_once"
            )
        ]
        indexes = [models.Index(fields=["created_at"], name="fx_conversion_created")]


class FxTier(models.Model):
    """A merchant's margin tier (``HUB_FX_MARGIN_TIERS``); ``standard`` without one."""

    merchant = models.OneToOneField(
        Participant, primary_key=True, on_delete=models.PROTECT, related_name="+"
    )
    tier = models.CharField(max_length=32)
    updated_at = models.DateTimeField(default=timezone.now)


class AutoConversion(models.Model):
    """A merchant's standing order: what its settlement runs credit in ``from_account``'s
    currency is converted into ``to_account``'s, at the rate of the moment, after each run."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("fxa"), editable=False)
    livemode = models.BooleanField()
    merchant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    from_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    to_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["livemode", "from_account"], name="fx_auto_conversion_once"
            )
        ]


from fx.models_receipts import *  # noqa: E402,F403
from fx.models_verification import *  # noqa: E402,F403
