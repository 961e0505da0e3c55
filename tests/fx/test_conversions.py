"""Quotes and conversions through the API: the rate locked and shown before the merchant commits,
the conversion as three linked transfers through the hub's FX positions, once per quote."""

from __future__ import annotations

from datetime import timedelta
from decimal import Context, Decimal, localcontext
from typing import Any

import pytest
from django.utils import timezone

from fx.models import FxConversion, FxQuote
from fx.rates import latest_rate
from hub.models import Event
from settlement.models import Account, Transfer
from tests.conftest import error_of
from tests.factories.ledger import columns, open_account
from tests.fx.conftest import Desk


def state() -> tuple[Any, ...]:
    return (
        list(
            Account.objects.order_by("pk").values_list(
                "pk", "debits_posted", "credits_posted", "debits_pending", "credits_pending"
            )
        ),
        Transfer.objects.count(),
        list(FxQuote.objects.order_by("pk").values_list("pk", "status")),
        FxConversion.objects.count(),
        Event.objects.count(),
    )


def cny_to_krw(desk: Desk, amount: str = "1000.00") -> dict[str, Any]:
    response = desk.quote(sell={"currency": "CNY", "amount": amount}, buy={"currency": "KRW"})
    assert response.status_code == 201, response.json()
    result: dict[str, Any] = response.json()
    return result


def test_a_quote_shows_the_reference_rate_margin_and_both_amounts(desk: Desk):
    quote = cny_to_krw(desk)

    rate = latest_rate(base="CNY", quote="KRW", on=timezone.now().date())
    assert quote["reference_rate"] == {
        "rate": str(rate.rate),
        "source": "ECB",
        "date": rate.date.isoformat(),
    }
    # standard tier: 50 bps of 1000.00 CNY = 5.00 CNY; 995.00 CNY converted at the rate.
    assert quote["margin"] == {
        "bps": 50,
        "tier": "standard",
        "amount": {"amount": "5.00", "currency": "CNY"},
    }
    expected = (Decimal("995.00") * rate.rate).quantize(Decimal(1), rounding="ROUND_HALF_EVEN")
    assert quote["sell"] == {"amount": "1000.00", "currency": "CNY"}
    assert quote["buy"] == {"amount": str(expected), "currency": "KRW"}
    with localcontext(Context(prec=24)):
        assert Decimal(quote["all_in_rate"]) == expected / Decimal("1000.00")
    assert quote["rounding"] == {"mode": "half_even"}
    assert (quote["status"], quote["fixed_side"]) == ("open", "sell")


def test_a_conversion_moves_money_through_the_hubs_positions(desk: Desk):
    quote = cny_to_krw(desk)
    buy = int(quote["buy"]["amount"])

    response = desk.convert(quote["id"], sell_account=desk.cny.pk, buy_account=desk.krw.pk)

    assert response.status_code == 201, response.json()
    conversion = response.json()
    assert conversion["transfers"] == [
        f"{conversion['id']}-sell",
        f"{conversion['id']}-buy",
        f"{conversion['id']}-margin",
    ]
    assert columns(desk.cny) == (1000_00, 1_000_000_00, 0, 0)
    assert columns(desk.krw) == (0, 100_000_000 + buy, 0, 0)
    positions = {a.currency: a for a in Account.objects.filter(kind=Account.Kind.FX_POSITION)}
    # Credit-normal: bought 995.00 CNY, sold the KRW.
    assert columns(positions["CNY"]) == (0, 995_00, 0, 0)
    assert columns(positions["KRW"]) == (buy, 0, 0, 0)
    fees = Account.objects.get(kind=Account.Kind.FEES, currency="CNY")
    assert columns(fees) == (0, 5_00, 0, 0)
    assert FxQuote.objects.get().status == "used"


def test_a_quote_converts_once(desk: Desk):
    quote = cny_to_krw(desk)
    first = desk.convert(quote["id"], sell_account=desk.cny.pk, buy_account=desk.krw.pk)
    again = desk.convert(quote["id"], sell_account=desk.cny.pk, buy_account=desk.krw.pk)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    before = state()

    other = desk.convert(quote["id"], "conv-2", sell_account=desk.cny.pk, buy_account=desk.krw.pk)

    assert (other.status_code, error_of(other)["code"]) == (409, "quote_used")
    assert state() == before


def test_an_expired_or_foreign_quote_moves_nothing(desk: Desk, tenants, api):
    quote = cny_to_krw(desk)
    FxQuote.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    before = state()
    expired = desk.convert(quote["id"], sell_account=desk.cny.pk, buy_account=desk.krw.pk)
    assert (expired.status_code, error_of(expired)["code"]) == (409, "quote_expired")
    other = tenants["other_merchant"]
    foreign = api.post(
        "/v1/fx/conversions",
        {
            "quote": quote["id"],
            "sell_account": desk.cny.pk,
            "buy_account": desk.krw.pk,
            "reference": "steal",
        },
        key=other.key,
    )
    assert (foreign.status_code, error_of(foreign)["code"]) == (400, "quote_missing")
    assert state() == before


def test_a_conversion_beyond_the_merchants_funds_moves_nothing(desk: Desk):
    quote = cny_to_krw(desk, "2000000.00")
    before = state()

    response = desk.convert(quote["id"], sell_account=desk.cny.pk, buy_account=desk.krw.pk)

    assert (response.status_code, error_of(response)["code"]) == (409, "insufficient_funds")
    assert state() == before


def test_a_conversion_into_accounts_not_the_merchants_own_moves_nothing(desk: Desk):
    quote = cny_to_krw(desk)
    stranger = open_account(Account.Kind.MERCHANT_SETTLEMENT, "KRW")
    hubs = open_account(Account.Kind.EQUITY, "KRW")
    before = state()
    cases = [
        ({"sell_account": desk.cny.pk, "buy_account": stranger.pk}, "account_missing"),
        ({"sell_account": desk.cny.pk, "buy_account": hubs.pk}, "account_missing"),
        ({"sell_account": "acc_nope", "buy_account": desk.krw.pk}, "account_missing"),
        ({"sell_account": desk.krw.pk, "buy_account": desk.cny.pk}, "currency_mismatch"),
        ({"sell_account": desk.cny.pk, "buy_account": desk.cny.pk}, "currency_mismatch"),
    ]
    for accounts, code in cases:
        response = desk.convert(quote["id"], **accounts)
        assert (response.status_code, error_of(response)["code"]) == (400, code), accounts
        assert state() == before


@pytest.mark.parametrize(
    "reference",
    # References that read like the ledger's own constraints: only the constraint counts.
    ["inv-7", "account_debits_within_credits", "transfer_resolved_once", "transfer_id_once"],
)
def test_a_reference_used_by_another_conversion_moves_nothing(desk: Desk, reference: str):
    first = cny_to_krw(desk, "10.00")
    second = cny_to_krw(desk, "20.00")
    done = desk.convert(first["id"], reference, sell_account=desk.cny.pk, buy_account=desk.krw.pk)
    assert done.status_code == 201, done.json()
    before = state()

    response = desk.convert(
        second["id"], reference, sell_account=desk.cny.pk, buy_account=desk.krw.pk
    )

    assert (response.status_code, error_of(response)["code"]) == (
        409,
        "conversion_reference_reused",
    )
    assert error_of(response)["param"] == "reference"
    assert state() == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"sell": {"currency": "CNY", "amount": "1"}, "buy": {"currency": "CNY"}},
            400,
            "currency_pair_invalid",
        ),
        (
            {"sell": {"currency": "ABC", "amount": "1"}, "buy": {"currency": "CNY"}},
            400,
            "currency_unknown",
        ),
        (
            {"sell": {"currency": "KRW", "amount": "0.5"}, "buy": {"currency": "CNY"}},
            400,
            "amount_precision",
        ),
        (
            {"sell": {"currency": "CNY", "amount": "1.234"}, "buy": {"currency": "KRW"}},
            400,
            "amount_precision",
        ),
        (
            {"sell": {"currency": "CNY", "amount": "0"}, "buy": {"currency": "KRW"}},
            400,
            "amount_too_small",
        ),
        (
            {"sell": {"currency": "CNY", "amount": "-5"}, "buy": {"currency": "KRW"}},
            400,
            "amount_negative",
        ),
        (
            {"sell": {"currency": "KRW", "amount": "1"}, "buy": {"currency": "CNY"}},
            400,
            "amount_too_small",
        ),
        (
            {"sell": {"currency": "CNY", "amount": "1"}, "buy": {"currency": "KRW", "amount": "1"}},
            400,
            "parameter_invalid",
        ),
        ({"sell": {"currency": "CNY"}, "buy": {"currency": "KRW"}}, 400, "parameter_invalid"),
        (
            {
                "sell": {"currency": "CNY", "amount": "1"},
                "buy": {"currency": "KRW"},
                "lock_seconds": 29,
            },
            400,
            "lock_out_of_bounds",
        ),
        (
            {
                "sell": {"currency": "CNY", "amount": "1"},
                "buy": {"currency": "KRW"},
                "lock_seconds": 86401,
            },
            400,
            "lock_out_of_bounds",
        ),
    ],
)
def test_bad_quotes_are_refused(desk: Desk, body, status, code):
    before = state()
    response = desk.quote(**body)
    assert (response.status_code, error_of(response)["code"]) == (status, code), response.json()
    assert state() == before


def test_a_fixed_buy_amount_is_what_the_merchant_gets(desk: Desk):
    response = desk.quote(sell={"currency": "CNY"}, buy={"currency": "KRW", "amount": "150000"})
    quote = response.json()
    assert quote["buy"] == {"amount": "150000", "currency": "KRW"}
    assert quote["fixed_side"] == "buy"
    rate = Decimal(quote["reference_rate"]["rate"])
    sell = Decimal(quote["sell"]["amount"])
    margin = Decimal(quote["margin"]["amount"]["amount"])
    converted = sell - margin
    # What the hub's position buys converts to the buy amount within one fen.
    assert abs(converted * rate - Decimal(150000)) <= rate * Decimal("0.01")
    assert margin == (sell * Decimal("0.005")).quantize(Decimal("0.01")) or abs(
        margin - sell * Decimal("0.005")
    ) <= Decimal("0.01")


def test_a_batch_quote_converts_each_order_and_its_totals_agree(desk: Desk):
    orders = [
        {"reference": f"o-{n}", "amount": amount}
        for n, amount in enumerate(["0.01", "0.03", "10.05", "99.99", "1234.57"])
    ]
    response = desk.quote(sell={"currency": "CNY"}, buy={"currency": "KRW"}, orders=orders)

    assert response.status_code == 201, response.json()
    quote = response.json()
    lines = quote["orders"]
    assert [line["reference"] for line in lines] == [o["reference"] for o in orders]
    assert sum(Decimal(line["sell"]["amount"]) for line in lines) == Decimal(
        quote["sell"]["amount"]
    )
    assert sum(int(line["buy"]["amount"]) for line in lines) == int(quote["buy"]["amount"])
    assert sum(Decimal(line["margin"]["amount"]) for line in lines) == Decimal(
        quote["margin"]["amount"]["amount"]
    )
    assert set(quote["rounding"]["per_order_vs_sum"]) == {"margin", "buy"}
    conversion = desk.convert(quote["id"], sell_account=desk.cny.pk, buy_account=desk.krw.pk)
    assert conversion.status_code == 201
    assert conversion.json()["buy"] == quote["buy"]
