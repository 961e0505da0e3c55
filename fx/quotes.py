"""Quotes and conversions: a merchant sees the rate before it commits, then converts at it once.

A quote takes the latest reference rate (``fx.rates``), the merchant's margin (its tier in
``HUB_FX_MARGIN_TIERS``), and either amount: with the sell amount fixed, the margin is that many
basis points of it (rounded half to even to the sell currency's unit) and the rest is converted
at the reference rate (rounded half to even to the buy currency's unit); with the buy amount
fixed, the amount to convert is the buy amount at the reference rate (half to even) and the sell
amount adds the margin on top. A batch quote converts each order on its own, so that the
merchant's per-order figures add up to its totals; it reports what that rounding changed against
converting the sum.

A conversion executes a live quote of the merchant's once, as linked transfers in one ledger
batch: the sell amount less the margin to the hub's position in the sell currency, the buy amount
from the hub's position in the buy currency, and the margin to the hub's fees.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.utils import timezone

from fx.models import FxConversion, FxQuote, FxTier
from fx.rates import check_pair, fresh_rate
from hub import errors
from hub.conf import hub_settings
from hub.fastinsert import insert, insert_statement
from hub.ids import new_id
from hub.money import currency_exponent, format_amount, money_payload
from hub.principal import Principal
from hub.services.events import event_emit, register_event_types
from settlement.ledger import TransferSpec, transfers_create_linked, violated
from settlement.models import Account
from settlement.payouts import hub_own_account_ids

Kind = Account.Kind
MAX_ORDERS = 1000

register_event_types("fx_conversion.created")


@dataclass(frozen=True)
class Leg:
    """One conversion's figures in minor units: what the merchant pays (margin included), the
    margin, and what it gets."""

    sell: int
    margin: int
    buy: int


def _round(value: Fraction) -> int:
    """Half to even, exactly: no intermediate rounding of a product or quotient."""
    whole, rest = divmod(value.numerator, value.denominator)
    twice = 2 * rest
    if twice > value.denominator or (twice == value.denominator and whole % 2 == 1):
        whole += 1
    return whole


def _scale(sell_currency: str, buy_currency: str) -> Decimal:
    """Buy minor units per sell minor unit at a rate of 1."""
    return Decimal(10) ** (currency_exponent(buy_currency) - currency_exponent(sell_currency))


def leg_for_sell(sell: int, *, rate: Decimal, bps: int, scale: Decimal) -> Leg:
    margin = _round(Fraction(sell * bps, 10_000))
    return Leg(
        sell=sell, margin=margin, buy=_round((sell - margin) * Fraction(rate) * Fraction(scale))
    )


def leg_for_buy(buy: int, *, rate: Decimal, bps: int, scale: Decimal) -> Leg:
    converted = _round(Fraction(buy) / (Fraction(rate) * Fraction(scale)))
    sell = _round(Fraction(converted * 10_000, 10_000 - bps))
    return Leg(sell=sell, margin=sell - converted, buy=buy)


def tier_of(merchant_id: str) -> tuple[str, int]:
    tiers: Mapping[str, int] = hub_settings.FX_MARGIN_TIERS
    found = FxTier.objects.filter(merchant_id=merchant_id).values_list("tier", flat=True).first()
    tier = found if found is not None and found in tiers else "standard"
    return tier, tiers[tier]


def quote_payload(quote: FxQuote) -> dict[str, Any]:
    return {
        "id": quote.pk,
        "sell": money_payload(quote.sell_amount, quote.sell_currency),
        "buy": money_payload(quote.buy_amount, quote.buy_currency),
        "status": quote.status,
    }


@transaction.atomic(durable=True)
def quote_create(
    *,
    actor: Principal,
    sell_currency: str,
    buy_currency: str,
    sell_amount: int | None = None,
    buy_amount: int | None = None,
    orders: Sequence[tuple[str, int]] | None = None,
    lock_seconds: int,
) -> FxQuote:
    """Lock a rate for the merchant. Exactly one of ``sell_amount``, ``buy_amount`` and
    ``orders`` (references and sell amounts) is given."""
    sell_currency, buy_currency = check_pair(
        sell_currency, buy_currency, params=("sell.currency", "buy.currency")
    )
    given = [
        name
        for name, value in (("sell", sell_amount), ("buy", buy_amount), ("orders", orders))
        if value is not None
    ]
    if len(given) != 1:
        raise errors.InvalidRequest(
            "Give the sell amount, the buy amount or the orders: exactly one.",
            code="parameter_invalid",
            param="sell",
        )
    low, high = hub_settings.FX_LOCK_MIN_SECONDS, hub_settings.FX_LOCK_MAX_SECONDS
    if not low <= lock_seconds <= high:
        raise errors.InvalidRequest(
            f"lock_seconds is {low} to {high}.", code="lock_out_of_bounds", param="lock_seconds"
        )
    now = timezone.now()
    rate = fresh_rate(base=sell_currency, quote=buy_currency, today=now.date())
    tier, bps = tier_of(actor.participant.pk)
    scale = _scale(sell_currency, buy_currency)
    order_rows = None
    if orders is not None:
        if not 1 <= len(orders) <= MAX_ORDERS:
            raise errors.InvalidRequest(
                f"A batch quote has 1 to {MAX_ORDERS} orders.",
                code="parameter_invalid",
                param="orders",
            )
        if len({reference for reference, _ in orders}) != len(orders):
            raise errors.InvalidRequest(
                "An order reference appears twice.", code="parameter_invalid", param="orders"
            )
        legs = [leg_for_sell(amount, rate=rate.rate, bps=bps, scale=scale) for _, amount in orders]
        order_rows = [
            {"reference": reference, "sell": leg.sell, "margin": leg.margin, "buy": leg.buy}
            for (reference, _), leg in zip(orders, legs, strict=True)
        ]
        leg = Leg(
            sell=sum(x.sell for x in legs),
            margin=sum(x.margin for x in legs),
            buy=sum(x.buy for x in legs),
        )
        bad = next((n for n, x in enumerate(legs) if x.buy <= 0 or x.sell <= x.margin), None)
    elif sell_amount is not None:
        leg = leg_for_sell(sell_amount, rate=rate.rate, bps=bps, scale=scale)
        bad = 0 if leg.buy <= 0 or leg.sell <= leg.margin else None
    else:
        assert buy_amount is not None
        leg = leg_for_buy(buy_amount, rate=rate.rate, bps=bps, scale=scale)
        bad = 0 if leg.sell <= leg.margin else None
    if bad is not None:
        raise errors.InvalidRequest(
            "The amount converts to nothing at this rate.",
            code="amount_too_small",
            param=f"orders[{bad}].amount" if orders is not None else given[0],
        )
    if max(leg.sell, leg.buy) >= 10**17:
        raise errors.InvalidRequest("The amount is too large.", code="amount_too_large")
    return FxQuote.objects.create(
        livemode=actor.livemode,
        merchant=actor.participant,
        sell_currency=sell_currency,
        buy_currency=buy_currency,
        fixed_side=FxQuote.Fixed.BUY if buy_amount is not None else FxQuote.Fixed.SELL,
        sell_amount=leg.sell,
        margin_amount=leg.margin,
        buy_amount=leg.buy,
        reference_rate=str(rate.rate),
        rate_source=rate.source,
        rate_date=rate.date,
        margin_bps=bps,
        tier=tier,
        orders=order_rows,
        expires_at=now + timedelta(seconds=lock_seconds),
        created_at=now,
    )


def rounding_of(quote: FxQuote) -> dict[str, Any]:
    """What converting each order on its own changed against converting their sum at once."""
    result: dict[str, Any] = {"mode": quote.rounding}
    if quote.orders:
        whole = leg_for_sell(
            quote.sell_amount,
            rate=Decimal(quote.reference_rate),
            bps=quote.margin_bps,
            scale=_scale(quote.sell_currency, quote.buy_currency),
        )
        result["per_order_vs_sum"] = {
            "margin": format_amount(quote.margin_amount - whole.margin, quote.sell_currency),
            "buy": format_amount(quote.buy_amount - whole.buy, quote.buy_currency),
        }
    return result


# --- conversions ---------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def conversion_create(
    *,
    actor: Principal,
    quote_id: str,
    sell_account_id: str,
    buy_account_id: str,
    reference: str,
    metadata: Mapping[str, str] | None = None,
) -> tuple[FxConversion, bool]:
    """Execute the merchant's live quote. The same reference again returns the conversion it
    made; a used, expired or foreign quote is refused and nothing moves."""
    merchant = actor.participant
    # The quote's row is the lock: of the conversions racing for it, one finds it open.
    found = _quote_locked(
        quote_id=quote_id,
        merchant_id=merchant.pk,
        livemode=actor.livemode,
        sell_account_id=sell_account_id,
        buy_account_id=buy_account_id,
    )
    if found is None:
        raise errors.InvalidRequest("No such quote.", code="quote_missing", param="quote")
    quote, held = found
    if quote.status == FxQuote.Status.USED:
        done = FxConversion.objects.get(quote_id=quote.pk)
        if (done.reference, done.sell_account_id, done.buy_account_id) == (
            reference,
            sell_account_id,
            buy_account_id,
        ):
            return done, False  # the same request again
        raise errors.Conflict("The quote was used already.", code="quote_used", param="quote")
    now = timezone.now()
    if quote.expires_at <= now:
        raise errors.Conflict("The quote has expired.", code="quote_expired", param="quote")
    for param, currency in (
        ("sell_account", quote.sell_currency),
        ("buy_account", quote.buy_currency),
    ):
        if held[param] is None:
            raise errors.InvalidRequest(
                "No such settlement account.", code="account_missing", param=param
            )
        if held[param] != currency:
            raise errors.InvalidRequest(
                f"The {param.replace('_', ' ')} is in {held[param]}, not {currency}.",
                code="currency_mismatch",
                param=param,
            )
    conversion = FxConversion(
        id=new_id("conv"),
        livemode=actor.livemode,
        merchant=merchant,
        quote_id=quote.pk,
        sell_account_id=sell_account_id,
        buy_account_id=buy_account_id,
        sell_currency=quote.sell_currency,
        buy_currency=quote.buy_currency,
        sell_amount=quote.sell_amount,
        margin_amount=quote.margin_amount,
        buy_amount=quote.buy_amount,
        reference=reference,
        metadata=dict(metadata or {}),
        created_at=now,
    )
    # On PostgreSQL the event's row, the conversion's and the quote's use are written by the
    # transfers' own statement.
    writes: list[tuple[str, list[Any]]] | None = (
        [] if connections[DEFAULT_DB_ALIAS].vendor == "postgresql" else None
    )
    event_emit(
        type="fx_conversion.created",
        owner=merchant,
        actor=actor,
        data=conversion_payload(conversion),
        alongside=writes,
    )
    try:
        # The ledger last: the hub's position and fee accounts, which every conversion moves,
        # stay locked only from there to the commit.
        _move(conversion, writes)
    except IntegrityError as exc:
        if not violated(exc, "fx_conversion_reference_once", sqlite="fx_fxconversion.reference"):
            raise
        raise errors.Conflict(
            f"The reference {reference!r} was used for another conversion.",
            code="conversion_reference_reused",
            param="reference",
        ) from None
    conversion._state.adding = False
    conversion._state.db = DEFAULT_DB_ALIAS
    return conversion, True


# The quote locked, and the currencies of the merchant's two settlement accounts named (NULL for
# one that is not such an account of its), in one statement.
_QUOTE_LOCKED = """
SELECT q.status, q.expires_at, q.sell_currency, q.buy_currency,
       q.sell_amount, q.margin_amount, q.buy_amount, s.currency, b.currency
FROM fx_fxquote q
LEFT JOIN settlement_account s
  ON s.id = %s AND s.owner_id = q.merchant_id AND s.livemode = q.livemode AND s.kind = %s
LEFT JOIN settlement_account b
  ON b.id = %s AND b.owner_id = q.merchant_id AND b.livemode = q.livemode AND b.kind = %s
WHERE q.id = %s AND q.merchant_id = %s AND q.livemode = %s
FOR UPDATE OF q
"""


def _quote_locked(
    *, quote_id: str, merchant_id: str, livemode: bool, sell_account_id: str, buy_account_id: str
) -> tuple[FxQuote, dict[str, str | None]] | None:
    """The merchant's quote, locked, with the currency of each account named if it is one of
    the merchant's settlement accounts in that mode (else None)."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        quote = (
            FxQuote.objects.select_for_update()
            .filter(pk=quote_id, merchant_id=merchant_id, livemode=livemode)
            .first()
        )
        if quote is None:
            return None
        currencies = dict(
            Account.objects.filter(
                pk__in=(sell_account_id, buy_account_id),
                owner_id=merchant_id,
                livemode=livemode,
                kind=Kind.MERCHANT_SETTLEMENT,
            ).values_list("pk", "currency")
        )
        return quote, {
            "sell_account": currencies.get(sell_account_id),
            "buy_account": currencies.get(buy_account_id),
        }
    db.ensure_connection()
    settlement = Kind.MERCHANT_SETTLEMENT.value
    params = (
        *(sell_account_id, settlement, buy_account_id, settlement),
        *(quote_id, merchant_id, livemode),
    )
    # In a pipeline, the transaction's BEGIN travels with the statement: one round trip.
    with (
        db.wrap_database_errors,
        db.connection.pipeline(),
        psycopg.Cursor(db.connection) as cursor,
    ):
        cursor.execute(_QUOTE_LOCKED, params, prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    status, expires_at, sell, buy, sell_amount, margin_amount, buy_amount, held_sell, held_buy = row
    quote = FxQuote(
        id=quote_id,
        livemode=livemode,
        merchant_id=merchant_id,
        sell_currency=sell,
        buy_currency=buy,
        sell_amount=sell_amount,
        margin_amount=margin_amount,
        buy_amount=buy_amount,
        status=status,
        expires_at=expires_at,
    )
    return quote, {"sell_account": held_sell, "buy_account": held_buy}


def _move(conversion: FxConversion, writes: list[tuple[str, list[Any]]] | None) -> None:
    """The linked transfers, in one ledger batch: all made or none. ``writes`` (PostgreSQL) are
    the caller's, sent with them."""
    livemode = conversion.livemode
    sell, buy = conversion.sell_currency, conversion.buy_currency
    # Every conversion moves the hub's positions and fees: each conversion takes one of
    # FX_SHARDS sets of them (by its id), so that conversions at once seldom wait for each other.
    hub = hub_own_account_ids(
        wanted=[(Kind.FX_POSITION, sell), (Kind.FX_POSITION, buy), (Kind.FEES, sell)],
        livemode=livemode,
        shard=zlib.crc32(conversion.pk.encode()) % hub_settings.FX_SHARDS,
    )
    sell_position, buy_position = hub[(Kind.FX_POSITION, sell)], hub[(Kind.FX_POSITION, buy)]
    specs = [
        TransferSpec(
            id=f"{conversion.pk}-sell",
            debit_account_id=conversion.sell_account_id,
            credit_account_id=sell_position,
            amount=conversion.sell_amount - conversion.margin_amount,
            currency=conversion.sell_currency,
            reference=conversion.pk,
            code="fx",
        ),
        TransferSpec(
            id=f"{conversion.pk}-buy",
            debit_account_id=buy_position,
            credit_account_id=conversion.buy_account_id,
            amount=conversion.buy_amount,
            currency=conversion.buy_currency,
            reference=conversion.pk,
            code="fx",
        ),
    ]
    if conversion.margin_amount:
        fees = hub[(Kind.FEES, sell)]
        specs.append(
            TransferSpec(
                id=f"{conversion.pk}-margin",
                debit_account_id=conversion.sell_account_id,
                credit_account_id=fees,
                amount=conversion.margin_amount,
                currency=conversion.sell_currency,
                reference=conversion.pk,
                code="fx_margin",
            )
        )
    if writes is not None:
        writes += [insert_statement(conversion), (_QUOTE_USED, [conversion.quote_id])]
    else:
        insert(conversion)
        FxQuote.objects.filter(pk=conversion.quote_id).update(status=FxQuote.Status.USED)
    # The merchant's accounts were checked above; the hub's are its own.
    transfers_create_linked(
        livemode=livemode,
        specs=specs,
        accounts_checked=True,
        now=conversion.created_at,
        alongside=writes or (),
    )


_QUOTE_USED = "UPDATE fx_fxquote SET status = 'used' WHERE id = %s"


def conversion_payload(conversion: FxConversion) -> dict[str, Any]:
    return {
        "id": conversion.pk,
        "quote": conversion.quote_id,
        "sell": money_payload(conversion.sell_amount, conversion.sell_currency),
        "buy": money_payload(conversion.buy_amount, conversion.buy_currency),
        "reference": conversion.reference,
    }


def tier_set(*, merchant_id: str, tier: str) -> FxTier:
    from hub.models import Participant, Role

    if tier not in hub_settings.FX_MARGIN_TIERS:
        raise errors.InvalidRequest(
            f"tier is one of {', '.join(sorted(hub_settings.FX_MARGIN_TIERS))}.",
            code="parameter_invalid",
            param="tier",
        )
    if not Participant.objects.filter(pk=merchant_id, role=Role.MERCHANT).exists():
        raise errors.InvalidRequest("No such merchant.", code="merchant_missing", param="merchant")
    try:
        with transaction.atomic():
            found, _ = FxTier.objects.update_or_create(
                merchant_id=merchant_id, defaults={"tier": tier, "updated_at": timezone.now()}
            )
    except IntegrityError:
        found = FxTier.objects.get(merchant_id=merchant_id)
    return found
