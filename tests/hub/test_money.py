"""hub.money: API amount strings <-> integer minor units, exactly, and currency codes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.errors import InvalidRequest
from hub.money import (
    MAX_MINOR_UNITS,
    check_currency,
    currency_exponent,
    format_amount,
    parse_amount,
    to_minor,
    to_money,
)


def refusal(call, *args, **kwargs) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        call(*args, **kwargs)
    return caught.value


@pytest.mark.parametrize(("currency", "exponent"), [("CNY", 2), ("KRW", 0), ("USD", 2)], ids=str)
def test_currency_exponents(currency, exponent):
    assert currency_exponent(currency) == exponent


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("1234.50", "CNY", 123450),
        ("1234.5", "CNY", 123450),
        ("1234", "CNY", 123400),
        ("0.01", "CNY", 1),
        ("150000", "KRW", 150000),
        ("1", "KRW", 1),
        ("999999999999999.99", "CNY", MAX_MINOR_UNITS - 1),
        ("99999999999999999", "KRW", MAX_MINOR_UNITS - 1),
    ],
)
def test_parse_amount(text, currency, minor):
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (123450, "CNY", "1234.50"),
        (1, "CNY", "0.01"),
        (100, "CNY", "1.00"),
        (0, "CNY", "0.00"),
        (-5, "CNY", "-0.05"),
        (150000, "KRW", "150000"),
        (0, "KRW", "0"),
        (-150000, "KRW", "-150000"),
    ],
)
def test_format_amount_has_exactly_the_currency_decimals(minor, currency, text):
    assert format_amount(minor, currency) == text


@pytest.mark.parametrize(
    ("value", "currency", "code"),
    [
        ("0.5", "KRW", "amount_precision"),
        ("1.0", "KRW", "amount_precision"),
        ("1.234", "CNY", "amount_precision"),
        ("1e3", "CNY", "amount_invalid"),
        ("1E3", "KRW", "amount_invalid"),
        ("NaN", "CNY", "amount_invalid"),
        ("Infinity", "CNY", "amount_invalid"),
        ("-Infinity", "CNY", "amount_invalid"),
        (" 1", "CNY", "amount_invalid"),
        ("1 ", "CNY", "amount_invalid"),
        ("1\n", "CNY", "amount_invalid"),
        ("+1", "CNY", "amount_invalid"),
        ("01", "CNY", "amount_invalid"),
        ("1.", "CNY", "amount_invalid"),
        (".5", "CNY", "amount_invalid"),
        ("1,000", "CNY", "amount_invalid"),
        ("\uff11", "CNY", "amount_invalid"),  # FULLWIDTH DIGIT ONE
        ("", "CNY", "amount_invalid"),
        ("-1", "CNY", "amount_negative"),
        ("-0.01", "CNY", "amount_negative"),
        ("0", "CNY", "amount_too_small"),
        ("0.00", "CNY", "amount_too_small"),
        ("-0", "KRW", "amount_too_small"),
        ("1000000000000000", "CNY", "amount_too_large"),
        ("100000000000000000", "KRW", "amount_too_large"),
        ("1" + "0" * 21, "KRW", "amount_invalid"),
        (1, "CNY", "amount_invalid"),
        (1.5, "CNY", "amount_invalid"),
        (Decimal("1.50"), "CNY", "amount_invalid"),
        (True, "CNY", "amount_invalid"),
        (None, "CNY", "amount_invalid"),
        (["1"], "CNY", "amount_invalid"),
    ],
)
def test_parse_amount_refusals(value, currency, code):
    error = refusal(parse_amount, value, currency, param="price.amount")
    assert (error.code, error.param, error.status) == (code, "price.amount", 400)


def test_zero_and_negative_only_where_allowed():
    assert parse_amount("0", "CNY", allow_zero=True) == 0
    assert parse_amount("-12.30", "CNY", allow_negative=True) == -1230
    assert refusal(parse_amount, "-1", "KRW", allow_zero=True).code == "amount_negative"
    assert refusal(parse_amount, "0", "KRW", allow_negative=True).code == "amount_too_small"
    too_large = "-" + format_amount(MAX_MINOR_UNITS, "KRW")
    assert refusal(parse_amount, too_large, "KRW", allow_negative=True).code == "amount_too_large"


@pytest.mark.parametrize("code", ["CNY", "KRW", "USD"])
def test_supported_currencies(code):
    assert check_currency(code) == code


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("XYZ", "currency_unknown"),
        ("cny", "currency_invalid"),
        ("Cny", "currency_invalid"),
        ("CN", "currency_invalid"),
        ("CNYY", "currency_invalid"),
        (" CNY", "currency_invalid"),
        ("", "currency_invalid"),
        (156, "currency_invalid"),
        (None, "currency_invalid"),
        ("JPY", "currency_unsupported"),
        ("EUR", "currency_unsupported"),
    ],
)
def test_currency_refusals(value, code):
    error = refusal(check_currency, value, param="price.currency")
    assert (error.code, error.param, error.status) == (code, "price.currency", 400)


def test_money_round_trip_keeps_minor_units():
    money = to_money(123450, "CNY")
    assert money.amount == Decimal("1234.50")
    assert str(money.currency) == "CNY"
    assert to_minor(money) == 123450
    assert to_minor(to_money(150000, "KRW")) == 150000


def test_to_minor_refuses_fractions_of_a_minor_unit():
    from moneyed import Money

    with pytest.raises(ValueError, match="round it first"):
        to_minor(Money(Decimal("0.5"), "KRW"))


@given(
    currency=st.sampled_from(["CNY", "KRW", "USD"]),
    minor=st.integers(min_value=1, max_value=MAX_MINOR_UNITS - 1),
)
def test_format_then_parse_round_trips(currency, minor):
    text = format_amount(minor, currency)
    assert parse_amount(text, currency) == minor
    assert format_amount(parse_amount(text, currency), currency) == text


@given(
    currency=st.sampled_from(["CNY", "KRW"]),
    minor=st.integers(min_value=-(MAX_MINOR_UNITS - 1), max_value=MAX_MINOR_UNITS - 1),
)
def test_signed_amounts_round_trip_where_allowed(currency, minor):
    text = format_amount(minor, currency)
    assert parse_amount(text, currency, allow_zero=True, allow_negative=True) == minor
