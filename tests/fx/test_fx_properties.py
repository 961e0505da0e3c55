"""Property tests: any sequence of quotes (either direction, either side fixed, any tier, at the
ECB rate of any day) and conversions (once, again, after expiry, beyond the merchant's funds)
keeps the hub's FX positions equal to what it bought less what it sold, keeps every currency's
debits equal to its credits, converts every quote at exactly its rounded figures, and never
converts a quote twice."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fx.api import QuoteOut
from fx.models import FxConversion, FxQuote
from fx.quotes import conversion_create, quote_create, tier_set
from fx.rates import reference_rate
from hub import errors
from hub.conf import hub_settings
from hub.models import Role
from settlement.models import Account, Transfer
from settlement.payouts import hub_operator
from tests.factories.core import make_participant, principal_for
from tests.factories.ledger import columns, open_account
from tests.fx.conftest import fund

pytestmark = pytest.mark.django_db
Kind = Account.Kind

EXPONENT = {"CNY": 2, "KRW": 0}
FUNDS = {"CNY": 1_000_000_00, "KRW": 100_000_000}
TIERS: dict[str, int] = dict(hub_settings.FX_MARGIN_TIERS)
HALF = Fraction(1, 2)


def round_half_even(value: Fraction) -> int:
    whole = math.floor(value)
    rest = value - whole
    if rest > HALF or (rest == HALF and whole % 2):
        whole += 1
    return whole


def scale(sell: str, buy: str) -> Fraction:
    """Buy minor units per sell minor unit at a rate of 1."""
    return Fraction(10) ** (EXPONENT[buy] - EXPONENT[sell])


def expected_leg(quote_plan: QuotePlan, rate: Fraction, bps: int) -> tuple[int, int, int]:
    """(sell, margin, buy) from the exact arithmetic: the margin is ``bps`` of the sell amount,
    or on top of the amount to convert when the buy amount is fixed."""
    per_unit = rate * scale(quote_plan.sell, quote_plan.buy)
    if quote_plan.fixed == "sell":
        sell = quote_plan.amount
        margin = round_half_even(Fraction(sell * bps, 10_000))
        return sell, margin, round_half_even((sell - margin) * per_unit)
    converted = round_half_even(quote_plan.amount / per_unit)
    sell = round_half_even(Fraction(converted * 10_000, 10_000 - bps))
    return sell, sell - converted, quote_plan.amount


@dataclass(frozen=True)
class QuotePlan:
    sell: str
    buy: str
    fixed: str
    amount: int
    day: date


@dataclass
class Book:
    """What the test expects, kept apart from the database."""

    balances: dict[str, int]
    fees: dict[str, int] = field(default_factory=lambda: {"CNY": 0, "KRW": 0})
    bought: dict[str, int] = field(default_factory=lambda: {"CNY": 0, "KRW": 0})
    sold: dict[str, int] = field(default_factory=lambda: {"CNY": 0, "KRW": 0})
    quotes: list[FxQuote] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)
    converted: dict[str, tuple[str, str]] = field(default_factory=dict)  # quote -> (conv, ref)
    bps: int = TIERS["standard"]


directions = st.sampled_from([("CNY", "KRW"), ("KRW", "CNY")])
# Mostly within the funded balances; now and then one that converts to nothing or is beyond them.
amounts = st.one_of(
    st.integers(1, 4),
    st.integers(1, 400),
    # whole yuan or hundreds of won: the margin often falls on a half (50 bps of 1.00, 30 of
    # 5.00, 15 of 10.00)
    st.integers(1, 60).map(lambda n: 100 * n),
    st.integers(1, 4_000_000),
    st.integers(10**8 + 1, 3 * 10**8),
)
# Any day of the CNY series (weekends and holidays take the day before), often the last one.
days = st.one_of(
    st.just(date(2026, 10, 30)), st.dates(min_value=date(2005, 4, 1), max_value=date(2026, 10, 30))
)
quotes = st.builds(
    lambda pair, fixed, amount, day: QuotePlan(pair[0], pair[1], fixed, amount, day),
    directions,
    st.sampled_from(["sell", "buy"]),
    amounts,
    days,
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("quote"), quotes),
        st.tuples(st.just("convert"), st.integers(0, 30)),
        st.tuples(st.just("quote"), quotes),
        st.tuples(st.just("convert"), st.integers(0, 30)),
        st.tuples(st.just("again"), st.integers(0, 30), st.booleans()),
        st.tuples(st.just("expire"), st.integers(0, 30)),
        st.tuples(st.just("tier"), st.sampled_from(sorted(TIERS))),
    ),
    min_size=4,
    max_size=20,
)


def snapshot() -> tuple[Any, ...]:
    return (
        list(
            Account.objects.order_by("pk").values_list(
                "pk", "debits_posted", "credits_posted", "debits_pending", "credits_pending"
            )
        ),
        Transfer.objects.count(),
        list(FxQuote.objects.order_by("pk").values_list("pk", "status", "expires_at")),
        FxConversion.objects.count(),
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
def test_any_sequence_of_quotes_and_conversions_keeps_the_books(plan, monkeypatch):
    day = [date(2026, 10, 30)]

    def fresh_rate(*, base: str, quote: str, today: date) -> Any:
        return reference_rate(base=base, quote=quote, on=day[0])

    monkeypatch.setattr("fx.quotes.fresh_rate", fresh_rate)
    # Each example starts from the same database; the services' own atomic blocks are durable,
    # so the example is rolled back to a bare savepoint rather than wrapped in another block.
    savepoint = transaction.savepoint()
    try:
        run(plan, day)
    finally:
        transaction.savepoint_rollback(savepoint)


def run(plan: list[tuple[Any, ...]], day: list[date]) -> None:
    merchant = make_participant(role=Role.MERCHANT)
    actor = principal_for(merchant)
    accounts = {
        currency: open_account(Kind.MERCHANT_SETTLEMENT, currency, owner=merchant)
        for currency in ("CNY", "KRW")
    }
    for currency, account in accounts.items():
        fund(account, FUNDS[currency])
    book = Book(balances=dict(FUNDS))
    baseline = hub_balances()
    references = iter(range(10**6))

    for step in plan:
        before = snapshot()
        refused: str | None = None
        if step[0] == "quote":
            quote_plan: QuotePlan = step[1]
            day[0] = quote_plan.day
            refused = make_quote(actor, quote_plan, book)
        elif step[0] == "tier":
            tier_set(merchant_id=merchant.pk, tier=step[1])
            book.bps = TIERS[step[1]]
        elif not book.quotes:
            continue
        elif step[0] == "expire":
            quote = book.quotes[-1 - step[1] % len(book.quotes)]
            FxQuote.objects.filter(pk=quote.pk).update(
                expires_at=timezone.now() - timedelta(seconds=1)
            )
            book.expired.add(quote.pk)
        elif step[0] == "convert":
            quote = book.quotes[-1 - step[1] % len(book.quotes)]
            refused = convert(actor, accounts, quote, f"ref-{next(references)}", book)
        elif step[0] == "again":
            done = sorted(book.converted)
            if not done:
                continue
            quote_id = done[step[1] % len(done)]
            conversion_id, reference = book.converted[quote_id]
            quote = next(q for q in book.quotes if q.pk == quote_id)
            if step[2]:
                # The same reference answers with the conversion it made, and moves nothing.
                found, created = conversion_create(
                    actor=actor,
                    quote_id=quote_id,
                    sell_account_id=accounts[quote.sell_currency].pk,
                    buy_account_id=accounts[quote.buy_currency].pk,
                    reference=reference,
                )
                assert (found.pk, created) == (conversion_id, False)
                assert snapshot() == before
            else:
                refused = convert(actor, accounts, quote, f"ref-{next(references)}", book)
                assert refused == "quote_used"
        event(f"{step[0]}: {refused or 'done'}")
        if refused is not None:
            assert snapshot() == before, refused
        check(book, accounts, baseline)


def make_quote(actor: Any, plan: QuotePlan, book: Book) -> str | None:
    ecb = reference_rate(base=plan.sell, quote=plan.buy, on=plan.day)
    rate = Fraction(ecb.rate)
    sell, margin, buy = expected_leg(plan, rate, book.bps)
    create = functools.partial(
        quote_create,
        actor=actor,
        sell_currency=plan.sell,
        buy_currency=plan.buy,
        sell_amount=plan.amount if plan.fixed == "sell" else None,
        buy_amount=plan.amount if plan.fixed == "buy" else None,
        lock_seconds=300,
    )
    if buy <= 0 or sell <= margin:
        # Refused exactly when the amount converts to nothing.
        with pytest.raises(errors.HubError) as refused:
            create()
        assert (refused.value.code, refused.value.param) == ("amount_too_small", plan.fixed)
        return "amount_too_small"
    quote = create()
    assert buy > 0
    assert sell > margin
    assert (quote.sell_amount, quote.margin_amount, quote.buy_amount) == (sell, margin, buy)
    assert (quote.sell_currency, quote.buy_currency, quote.fixed_side) == (
        plan.sell,
        plan.buy,
        plan.fixed,
    )
    assert (quote.reference_rate, quote.rate_source, quote.rate_date) == (
        str(ecb.rate),
        "ECB",
        ecb.date,
    )
    assert (quote.margin_bps, quote.status, quote.rounding) == (book.bps, "open", "half_even")
    check_rates(quote)
    book.quotes.append(quote)
    return None


def check_rates(quote: FxQuote) -> None:
    """The buy amount against the reference rate and against the all-in rate."""
    rate = Fraction(Decimal(quote.reference_rate))
    per_unit = rate * scale(quote.sell_currency, quote.buy_currency)
    converted = quote.sell_amount - quote.margin_amount
    at_reference = round_half_even(converted * per_unit)
    if quote.fixed_side == "sell" or per_unit < 1:
        assert quote.buy_amount == at_reference
    else:
        # A fixed buy amount may lie between two amounts the sell side's unit can reach: the
        # amount converted is the nearest, so it is worth the buy amount within half a unit.
        assert abs(converted * per_unit - quote.buy_amount) <= per_unit / 2
        assert abs(quote.buy_amount - at_reference) <= 1
    buy_unit = Fraction(1, 10 ** EXPONENT[quote.buy_currency])
    sell_major = Fraction(quote.sell_amount, 10 ** EXPONENT[quote.sell_currency])
    buy_major = Fraction(quote.buy_amount, 10 ** EXPONENT[quote.buy_currency])
    shown = QuoteOut(quote).data["all_in_rate"]
    # 24 significant digits at most (fewer when the ratio is exact).
    assert Decimal(shown) == quote.all_in_rate
    assert len(Decimal(shown).as_tuple().digits) <= 24, shown
    for all_in in (Fraction(quote.all_in_rate), Fraction(Decimal(shown))):
        assert abs(sell_major * all_in - buy_major) <= buy_unit


def convert(
    actor: Any, accounts: dict[str, Account], quote: FxQuote, reference: str, book: Book
) -> str | None:
    sell, buy = quote.sell_currency, quote.buy_currency
    if quote.pk in book.converted:
        expected = "quote_used"
    elif quote.pk in book.expired:
        expected = "quote_expired"
    elif book.balances[sell] < quote.sell_amount:
        expected = "insufficient_funds"
    else:
        expected = None
    execute = functools.partial(
        conversion_create,
        actor=actor,
        quote_id=quote.pk,
        sell_account_id=accounts[sell].pk,
        buy_account_id=accounts[buy].pk,
        reference=reference,
    )
    if expected is not None:
        with pytest.raises(errors.HubError) as refused:
            execute()
        assert refused.value.code == expected
        return expected
    conversion, created = execute()
    assert created
    assert (conversion.sell_amount, conversion.margin_amount, conversion.buy_amount) == (
        quote.sell_amount,
        quote.margin_amount,
        quote.buy_amount,
    )
    book.converted[quote.pk] = (conversion.pk, reference)
    book.balances[sell] -= quote.sell_amount
    book.balances[buy] += quote.buy_amount
    book.fees[sell] += quote.margin_amount
    book.bought[sell] += quote.sell_amount - quote.margin_amount
    book.sold[buy] += quote.buy_amount
    return None


def hub_balances() -> dict[str, tuple[str, str, int]]:
    """The hub's FX position and fee accounts (however many per currency): kind, currency and
    credits less debits."""
    return {
        pk: (kind, currency, credits - debits)
        for pk, kind, currency, credits, debits in Account.objects.filter(
            kind__in=(Kind.FX_POSITION, Kind.FEES), livemode=False
        ).values_list("pk", "kind", "currency", "credits_posted", "debits_posted")
    }


def check(
    book: Book, accounts: dict[str, Account], baseline: dict[str, tuple[str, str, int]]
) -> None:
    conversions = list(FxConversion.objects.order_by("pk"))
    # A quote is used exactly when it was converted, and converted once.
    used = set(FxQuote.objects.filter(status=FxQuote.Status.USED).values_list("pk", flat=True))
    assert used == set(book.converted)
    assert sorted((c.quote_id, c.pk) for c in conversions) == sorted(
        (q, c) for q, (c, _) in book.converted.items()
    )
    hub = hub_balances()
    operator = hub_operator().pk
    # What each of the hub's accounts should hold, from the conversions' own transfers.
    moved = {pk: 0 for pk in hub}
    for conversion in conversions:
        sell, buy = conversion.sell_currency, conversion.buy_currency
        made = {
            row[0]: row[1:]
            for row in Transfer.objects.filter(reference=conversion.pk).values_list(
                "id", "debit_account_id", "credit_account_id", "amount", "currency"
            )
        }
        names = [f"{conversion.pk}-sell", f"{conversion.pk}-buy"]
        if conversion.margin_amount:
            names.append(f"{conversion.pk}-margin")
        assert sorted(made) == sorted(names)
        debit, to_position, amount, currency = made[f"{conversion.pk}-sell"]
        assert (debit, hub[to_position][:2], amount, currency) == (
            accounts[sell].pk,
            (Kind.FX_POSITION, sell),
            conversion.sell_amount - conversion.margin_amount,
            sell,
        )
        moved[to_position] += amount
        from_position, credit, amount, currency = made[f"{conversion.pk}-buy"]
        assert (hub[from_position][:2], credit, amount, currency) == (
            (Kind.FX_POSITION, buy),
            accounts[buy].pk,
            conversion.buy_amount,
            buy,
        )
        moved[from_position] -= amount
        if conversion.margin_amount:
            debit, fees, amount, currency = made[f"{conversion.pk}-margin"]
            assert (debit, hub[fees][:2], amount, currency) == (
                accounts[sell].pk,
                (Kind.FEES, sell),
                conversion.margin_amount,
                sell,
            )
            moved[fees] += amount
    assert set(Account.objects.filter(pk__in=hub).values_list("owner_id", flat=True)) <= {operator}
    for pk, (_, _, net) in hub.items():
        # Each position account (credit-normal): what the hub bought into it less what it sold
        # out of it; each fee account: the margins it took.
        assert net - (baseline[pk][2] if pk in baseline else 0) == moved[pk], pk
    for currency in ("CNY", "KRW"):
        totals = {
            kind: sum(
                net - (baseline[pk][2] if pk in baseline else 0)
                for pk, (k, c, net) in hub.items()
                if (k, c) == (kind, currency)
            )
            for kind in (Kind.FX_POSITION, Kind.FEES)
        }
        assert totals == {
            Kind.FX_POSITION: book.bought[currency] - book.sold[currency],
            Kind.FEES: book.fees[currency],
        }
        # The conversions on record say the same.
        selling = FxConversion.objects.filter(sell_currency=currency).aggregate(
            sell=Sum("sell_amount"), margin=Sum("margin_amount")
        )
        buying = FxConversion.objects.filter(buy_currency=currency).aggregate(buy=Sum("buy_amount"))
        assert (selling["sell"] or 0) - (selling["margin"] or 0) == book.bought[currency]
        assert (buying["buy"] or 0) == book.sold[currency]
        dp, cp, dpe, cpe = columns(accounts[currency])
        assert (cp - dp, dpe, cpe) == (book.balances[currency], 0, 0)
        # Per currency, debits equal credits across all accounts.
        sums = Account.objects.filter(currency=currency).aggregate(
            dp=Sum("debits_posted"),
            cp=Sum("credits_posted"),
            dpe=Sum("debits_pending"),
            cpe=Sum("credits_pending"),
        )
        assert (sums["dp"], sums["dpe"]) == (sums["cp"], sums["cpe"])
