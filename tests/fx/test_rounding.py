"""Rounding at the edges: KRW has no minor unit and CNY has two; ties go half to even, in the
margin and in the conversion; an amount that converts to nothing, or to more than the hub
carries, is refused with its code and never a 500."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from adapters.interface import ReferenceRate
from fx.models import FxConversion, FxQuote
from fx.quotes import Leg, leg_for_buy, leg_for_sell
from fx.rates import reference_rate
from settlement.models import Account, Transfer
from tests.conftest import error_of
from tests.factories.ledger import columns
from tests.fx.conftest import Desk

# Buy minor units per sell minor unit at a rate of 1.
CNY_TO_KRW = Decimal("0.01")
KRW_TO_CNY = Decimal(100)
ONE = Decimal(1)

# --- leg_for_sell --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sell", "rate", "scale", "expected"),
    [
        # 1.00 CNY at 180.5 is 180.5 KRW: the tie goes down to the even 180.
        (100, "180.5", CNY_TO_KRW, Leg(100, 0, 180)),
        # 3.00 CNY: 541.5 KRW goes up to the even 542.
        (300, "180.5", CNY_TO_KRW, Leg(300, 0, 542)),
        (500, "180.5", CNY_TO_KRW, Leg(500, 0, 902)),
        (700, "180.5", CNY_TO_KRW, Leg(700, 0, 1264)),
        # A hair either side of the tie is no tie.
        (100, "180.5000000000000000000000001", CNY_TO_KRW, Leg(100, 0, 181)),
        (300, "180.4999999999999999999999999", CNY_TO_KRW, Leg(300, 0, 541)),
        # KRW to CNY at 0.005: 3 KRW is 1.5 fen -> 2, 5 KRW is 2.5 fen -> 2, 1 KRW is 0.5 -> 0.
        (3, "0.005", KRW_TO_CNY, Leg(3, 0, 2)),
        (5, "0.005", KRW_TO_CNY, Leg(5, 0, 2)),
        (7, "0.005", KRW_TO_CNY, Leg(7, 0, 4)),
        (1, "0.005", KRW_TO_CNY, Leg(1, 0, 0)),
        # The smallest CNY amount, one fen, at the ECB rate of 2026-10-30: 2.007 KRW -> 2.
        (1, "200.7050022872211608320103329", CNY_TO_KRW, Leg(1, 0, 2)),
        (1, "0.004982436853113101303158685043", KRW_TO_CNY, Leg(1, 0, 0)),
        (2, "0.004982436853113101303158685043", KRW_TO_CNY, Leg(2, 0, 1)),
    ],
)
def test_the_converted_amount_rounds_half_to_even(sell, rate, scale, expected):
    assert leg_for_sell(sell, rate=Decimal(rate), bps=0, scale=scale) == expected


@pytest.mark.parametrize(
    ("sell", "bps", "margin"),
    [
        (100, 50, 0),  # 0.5 fen -> 0
        (300, 50, 2),  # 1.5 -> 2
        (500, 50, 2),  # 2.5 -> 2
        (700, 50, 4),  # 3.5 -> 4
        (101, 50, 1),  # 0.505 -> 1, no tie
        (99, 50, 0),  # 0.495 -> 0
        (500, 30, 2),  # 1.5 -> 2
        (2500, 30, 8),  # 7.5 -> 8
        (1000, 15, 2),  # 1.5 -> 2
        (3000, 15, 4),  # 4.5 -> 4
        (1, 50, 0),
        (199, 50, 1),  # 0.995 -> 1
    ],
)
def test_the_margin_rounds_half_to_even(sell, bps, margin):
    leg = leg_for_sell(sell, rate=Decimal(2), bps=bps, scale=ONE)
    assert leg == Leg(sell, margin, 2 * (sell - margin))


def test_the_margin_comes_off_before_the_conversion_rounds():
    # 1.01 CNY: margin 0.505 fen -> 1; 1.00 CNY converted at 180.5 is the tie 180.5 -> 180.
    assert leg_for_sell(101, rate=Decimal("180.5"), bps=50, scale=CNY_TO_KRW) == Leg(101, 1, 180)
    # 3.02 CNY: margin 1.51 fen -> 2; 3.00 CNY -> 541.5 -> 542.
    assert leg_for_sell(302, rate=Decimal("180.5"), bps=50, scale=CNY_TO_KRW) == Leg(302, 2, 542)


def test_a_product_just_below_a_half_rounds_down():
    # 3 KRW at 0.004999...9 (28 significant digits) CNY per KRW is 1.4999...97 fen: 1, not 2.
    rate = Decimal("0.004999999999999999999999999999")
    assert leg_for_sell(3, rate=rate, bps=0, scale=KRW_TO_CNY) == Leg(3, 0, 1)


# --- leg_for_buy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buy", "rate", "bps", "scale", "expected"),
    [
        # 1.00 CNY bought with KRW at 0.005: 200 KRW converted, 201.005 -> 201 with 50 bps.
        (100, "0.005", 50, KRW_TO_CNY, Leg(201, 1, 100)),
        # 0.01 CNY at 0.4 fen per KRW is 2.5 KRW -> 2; 0.03 CNY is 7.5 -> 8.
        (1, "0.004", 0, KRW_TO_CNY, Leg(2, 0, 1)),
        (3, "0.004", 0, KRW_TO_CNY, Leg(8, 0, 3)),
        # 3 KRW at 2 KRW per fen is 1.5 fen -> 2; 5 KRW is 2.5 -> 2; 1 KRW is 0.5 -> 0.
        (3, "200", 0, CNY_TO_KRW, Leg(2, 0, 3)),
        (5, "200", 0, CNY_TO_KRW, Leg(2, 0, 5)),
        (1, "200", 0, CNY_TO_KRW, Leg(0, 0, 1)),
        # margin on top of the converted amount: 1 fen -> 1.005 -> 1; 200 fen -> 201.005 -> 201.
        (2, "200", 50, CNY_TO_KRW, Leg(1, 0, 2)),
        (400, "200", 50, CNY_TO_KRW, Leg(201, 1, 400)),
        (398, "200", 50, CNY_TO_KRW, Leg(200, 1, 398)),
        # 100.00 CNY at the ECB rate of 2026-10-30: 20070.5002... KRW -> 20071, + 0.5% -> 20172.
        (10000, "0.004982436853113101303158685043", 50, KRW_TO_CNY, Leg(20172, 101, 10000)),
    ],
)
def test_a_fixed_buy_amount_rounds_the_amount_to_convert_then_the_margin(
    buy, rate, bps, scale, expected
):
    assert leg_for_buy(buy, rate=Decimal(rate), bps=bps, scale=scale) == expected


# --- through the API -----------------------------------------------------------------------------


@pytest.fixture
def at_rate(monkeypatch) -> Callable[[str], None]:
    """Quotes take ``rate`` units of KRW per CNY (and its reciprocal the other way)."""

    def use(krw_per_cny: str) -> None:
        forward = Decimal(krw_per_cny)
        rates = {("CNY", "KRW"): forward, ("KRW", "CNY"): 1 / forward}

        def fresh_rate(*, base: str, quote: str, today: date) -> ReferenceRate:
            return ReferenceRate(base, quote, rates[(base, quote)], date(2026, 10, 30), "ECB")

        monkeypatch.setattr("fx.quotes.fresh_rate", fresh_rate)

    return use


@pytest.fixture
def at_ecb_rate(monkeypatch) -> None:
    """Quotes take the ECB rate of 2026-10-30, whatever day the tests run."""

    def fresh_rate(*, base: str, quote: str, today: date) -> ReferenceRate:
        return reference_rate(base=base, quote=quote, on=date(2026, 10, 30))

    monkeypatch.setattr("fx.quotes.fresh_rate", fresh_rate)


def state() -> tuple[Any, ...]:
    return (
        list(
            Account.objects.order_by("pk").values_list(
                "pk", "debits_posted", "credits_posted", "debits_pending", "credits_pending"
            )
        ),
        Transfer.objects.count(),
        FxQuote.objects.count(),
        FxConversion.objects.count(),
    )


def figures(quote: dict[str, Any]) -> tuple[str, str, str]:
    return (quote["sell"]["amount"], quote["margin"]["amount"]["amount"], quote["buy"]["amount"])


def refused(desk: Desk, body: dict[str, Any]) -> dict[str, Any]:
    before = state()
    response = desk.quote(**body)
    assert response.status_code == 400, response.json()
    assert state() == before
    return error_of(response)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("1.00", ("1.00", "0.00", "180")),  # margin 0.5 fen -> 0; 180.5 KRW -> 180
        ("3.00", ("3.00", "0.02", "538")),  # margin 1.5 fen -> 2; 537.89 KRW -> 538
        ("5.00", ("5.00", "0.02", "899")),  # margin 2.5 fen -> 2; 898.89 KRW -> 899
        ("1.01", ("1.01", "0.01", "180")),  # margin 0.505 -> 1; 180.5 KRW -> 180
        ("3.02", ("3.02", "0.02", "542")),  # margin 1.51 -> 2; 541.5 KRW -> 542
        ("0.01", ("0.01", "0.00", "2")),  # the smallest CNY amount: 1.805 KRW -> 2
    ],
)
def test_a_sell_quote_rounds_half_to_even(desk: Desk, at_rate, amount, expected):
    at_rate("180.5")

    response = desk.quote(sell={"currency": "CNY", "amount": amount}, buy={"currency": "KRW"})

    assert response.status_code == 201, response.json()
    quote = response.json()
    assert figures(quote) == expected
    assert quote["reference_rate"] == {"rate": "180.5", "source": "ECB", "date": "2026-10-30"}
    assert quote["margin"]["bps"] == 50


def test_a_tie_converts_exactly_as_quoted(desk: Desk, at_rate):
    at_rate("180.5")
    quote = desk.quote(sell={"currency": "CNY", "amount": "1.01"}, buy={"currency": "KRW"}).json()

    response = desk.convert(quote["id"], sell_account=desk.cny.pk, buy_account=desk.krw.pk)

    assert response.status_code == 201, response.json()
    assert columns(desk.cny) == (101, 1_000_000_00, 0, 0)
    assert columns(desk.krw) == (0, 100_000_000 + 180, 0, 0)
    positions = {a.currency: a for a in Account.objects.filter(kind=Account.Kind.FX_POSITION)}
    assert columns(positions["CNY"]) == (0, 100, 0, 0)
    assert columns(positions["KRW"]) == (180, 0, 0, 0)
    assert columns(Account.objects.get(kind=Account.Kind.FEES, currency="CNY")) == (0, 1, 0, 0)


def test_krw_sold_in_whole_won_rounds_to_fen(desk: Desk, at_rate):
    at_rate("200")  # 0.005 CNY, half a fen, per KRW
    three = desk.quote(sell={"currency": "KRW", "amount": "3"}, buy={"currency": "CNY"})
    five = desk.quote(sell={"currency": "KRW", "amount": "5"}, buy={"currency": "CNY"})
    assert figures(three.json()) == ("3", "0", "0.02")  # 1.5 fen -> 2
    assert figures(five.json()) == ("5", "0", "0.02")  # 2.5 fen -> 2
    # 300 KRW: margin 1.5 KRW -> 2; 298 KRW is 1.49 CNY.
    hundreds = desk.quote(sell={"currency": "KRW", "amount": "300"}, buy={"currency": "CNY"})
    assert figures(hundreds.json()) == ("300", "2", "1.49")


@pytest.mark.parametrize(
    ("rate", "body", "param"),
    [
        # 1 KRW is half a fen at 200 KRW per CNY: the tie rounds to nothing.
        ("200", {"sell": {"currency": "KRW", "amount": "1"}, "buy": {"currency": "CNY"}}, "sell"),
        # 0.498 fen at the ECB rate.
        (
            "200.7050022872211608320103329",
            {"sell": {"currency": "KRW", "amount": "1"}, "buy": {"currency": "CNY"}},
            "sell",
        ),
        # 2 KRW bought with CNY at 400 KRW per CNY is half a fen: nothing to convert.
        ("400", {"sell": {"currency": "CNY"}, "buy": {"currency": "KRW", "amount": "2"}}, "buy"),
        (
            "200.7050022872211608320103329",
            {"sell": {"currency": "CNY"}, "buy": {"currency": "KRW", "amount": "1"}},
            "buy",
        ),
        # one order of a batch that converts to nothing
        (
            "200",
            {
                "sell": {"currency": "KRW"},
                "buy": {"currency": "CNY"},
                "orders": [
                    {"reference": "a", "amount": "3"},
                    {"reference": "b", "amount": "1"},
                    {"reference": "c", "amount": "5"},
                ],
            },
            "orders[1].amount",
        ),
    ],
)
def test_an_amount_that_converts_to_nothing_is_refused(desk: Desk, at_rate, rate, body, param):
    at_rate(rate)
    error = refused(desk, body)
    assert (error["code"], error["param"]) == ("amount_too_small", param)


def test_the_smallest_amounts_at_the_ecb_rate(desk: Desk, at_ecb_rate):
    fen = desk.quote(sell={"currency": "CNY", "amount": "0.01"}, buy={"currency": "KRW"})
    won = desk.quote(sell={"currency": "KRW", "amount": "2"}, buy={"currency": "CNY"})
    fixed_fen = desk.quote(sell={"currency": "KRW"}, buy={"currency": "CNY", "amount": "0.01"})
    fixed_won = desk.quote(sell={"currency": "CNY"}, buy={"currency": "KRW", "amount": "2"})

    assert figures(fen.json()) == ("0.01", "0.00", "2")  # 2.007 KRW
    assert figures(won.json()) == ("2", "0", "0.01")  # 0.9965 fen
    assert figures(fixed_fen.json()) == ("2", "0", "0.01")  # 2.007 KRW -> 2, 2.01 -> 2
    assert figures(fixed_won.json()) == ("0.01", "0.00", "2")  # 0.9965 fen -> 1
    nothing = desk.quote(sell={"currency": "KRW", "amount": "1"}, buy={"currency": "CNY"})
    assert (nothing.status_code, error_of(nothing)["code"]) == (400, "amount_too_small")


def test_a_fixed_cny_amount_bought_with_krw(desk: Desk, at_ecb_rate):
    # 100.00 CNY: 20070.5002 KRW to convert -> 20071; with 0.5% on top 20171.86 -> 20172.
    response = desk.quote(sell={"currency": "KRW"}, buy={"currency": "CNY", "amount": "100.00"})

    assert response.status_code == 201, response.json()
    quote = response.json()
    assert figures(quote) == ("20172", "101", "100.00")
    assert quote["fixed_side"] == "buy"
    assert quote["all_in_rate"] == "0.00495736664683720007931787"  # 100 / 20172, 24 digits

    conversion = desk.convert(quote["id"], sell_account=desk.krw.pk, buy_account=desk.cny.pk)

    assert conversion.status_code == 201, conversion.json()
    assert columns(desk.krw) == (20172, 100_000_000, 0, 0)
    assert columns(desk.cny) == (0, 1_000_000_00 + 100_00, 0, 0)
    positions = {a.currency: a for a in Account.objects.filter(kind=Account.Kind.FX_POSITION)}
    assert columns(positions["KRW"]) == (0, 20071, 0, 0)
    assert columns(positions["CNY"]) == (100_00, 0, 0, 0)
    assert columns(Account.objects.get(kind=Account.Kind.FEES, currency="KRW")) == (0, 101, 0, 0)


def test_a_fixed_cny_amount_at_a_tie(desk: Desk, at_rate):
    at_rate("250")  # 0.4 fen per KRW: 0.01 CNY is 2.5 KRW -> 2, 0.03 CNY is 7.5 -> 8
    one = desk.quote(sell={"currency": "KRW"}, buy={"currency": "CNY", "amount": "0.01"})
    three = desk.quote(sell={"currency": "KRW"}, buy={"currency": "CNY", "amount": "0.03"})
    assert figures(one.json()) == ("2", "0", "0.01")
    assert figures(three.json()) == ("8", "0", "0.03")


# --- the largest amounts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        # 10^17 - 1 fen is accepted as an amount but buys about 1.8 * 10^17 KRW.
        (
            {
                "sell": {"currency": "CNY", "amount": "999999999999999.99"},
                "buy": {"currency": "KRW"},
            },
            None,
        ),
        (
            {
                "sell": {"currency": "KRW"},
                "buy": {"currency": "CNY", "amount": "999999999999999.99"},
            },
            None,
        ),
        # two orders each below the limit whose sum is not
        (
            {
                "sell": {"currency": "KRW"},
                "buy": {"currency": "CNY"},
                "orders": [
                    {"reference": "a", "amount": "60000000000000000"},
                    {"reference": "b", "amount": "60000000000000000"},
                ],
            },
            None,
        ),
        (
            {
                "sell": {"currency": "CNY", "amount": "1000000000000000.00"},
                "buy": {"currency": "KRW"},
            },
            "sell.amount",
        ),
        (
            {
                "sell": {"currency": "CNY", "amount": "9000000000000000.00"},
                "buy": {"currency": "KRW"},
            },
            "sell.amount",
        ),
        (
            {
                "sell": {"currency": "KRW", "amount": "900000000000000000"},
                "buy": {"currency": "CNY"},
            },
            "sell.amount",
        ),
        (
            {
                "sell": {"currency": "KRW", "amount": "999999999999999999999"},
                "buy": {"currency": "CNY"},
            },
            "sell.amount",
        ),
        (
            {
                "sell": {"currency": "CNY"},
                "buy": {"currency": "KRW", "amount": "100000000000000000"},
            },
            "buy.amount",
        ),
    ],
)
def test_an_amount_beyond_the_limit_is_refused(desk: Desk, at_rate, body, param):
    at_rate("180.5")
    error = refused(desk, body)
    assert error["code"] == "amount_too_large"
    if param is not None:
        assert error["param"] == param


def test_the_largest_amount_still_quotes_exactly(desk: Desk, at_rate):
    at_rate("200")
    # 10^17 - 1 KRW: margin 499999999999999.995 -> 500000000000000; the rest at half a fen
    # per KRW is 49749999999999999.5 fen, a tie -> 49750000000000000.
    response = desk.quote(
        sell={"currency": "KRW", "amount": "99999999999999999"}, buy={"currency": "CNY"}
    )

    assert response.status_code == 201, response.json()
    quote = response.json()
    assert figures(quote) == ("99999999999999999", "500000000000000", "497500000000000.00")
    assert quote["all_in_rate"] == "0.00497500000000000004975000"
    stored = FxQuote.objects.get(pk=quote["id"])
    assert (stored.sell_amount, stored.margin_amount, stored.buy_amount) == (
        99999999999999999,
        500000000000000,
        49750000000000000,
    )


def test_a_large_quote_at_the_ecb_rate_rounds_the_exact_product(desk: Desk, at_ecb_rate):
    # Margin 5025125628173.98 -> 5025125628174 KRW; the remaining 1000000000006622 KRW at
    # 0.004982436853113101303158685043 CNY are 498243685314609.49999999999998296 fen: ...09.
    response = desk.quote(
        sell={"currency": "KRW", "amount": "1005025125634796"}, buy={"currency": "CNY"}
    )

    assert response.status_code == 201, response.json()
    assert figures(response.json()) == ("1005025125634796", "5025125628174", "4982436853146.09")
