"""Exact money: integer minor units in storage, decimal strings in the API, Money in services.

The API carries ``{"amount": "1234.50", "currency": "CNY"}``: a plain decimal string in major
units with no more decimals than the currency has (CNY 2, KRW 0). Exponents, signs other than a
leading minus, NaN, infinities and surplus decimals are refused, never rounded away silently.
"""

from __future__ import annotations

import re
from decimal import Decimal

import moneyed
from moneyed import Money

from hub.conf import hub_settings
from hub.errors import InvalidRequest

_AMOUNT_RE = re.compile(r"^(-?)(0|[1-9][0-9]{0,20})(?:\.([0-9]{1,20}))?$")
# Far above any real amount, far below BigIntegerField's 9.2e18.
MAX_MINOR_UNITS = 10**17


def currency_exponent(code: str) -> int:
    """Decimal places of the currency's minor unit (CNY 2, KRW 0)."""
    sub_unit = moneyed.get_currency(code).sub_unit
    return len(str(sub_unit)) - 1


def check_currency(code: object, *, param: str = "currency") -> str:
    if not isinstance(code, str) or not re.fullmatch(r"[A-Z]{3}", code):
        raise InvalidRequest(
            "Currency must be a three-letter upper-case ISO 4217 code.",
            code="currency_invalid",
            param=param,
        )
    try:
        moneyed.get_currency(code)
    except moneyed.CurrencyDoesNotExist:
        raise InvalidRequest(
            f"{code} is not an ISO 4217 currency.", code="currency_unknown", param=param
        ) from None
    if code not in hub_settings.CURRENCIES:
        raise InvalidRequest(
            f"{code} is not settled by the hub; supported: {', '.join(hub_settings.CURRENCIES)}.",
            code="currency_unsupported",
            param=param,
        )
    return code


def parse_amount(
    value: object,
    currency: str,
    *,
    param: str = "amount",
    allow_zero: bool = False,
    allow_negative: bool = False,
) -> int:
    """Parse an API amount string in major units into integer minor units, exactly."""
    if not isinstance(value, str):
        raise InvalidRequest(
            'Amounts are decimal strings, for example "1234.50".',
            code="amount_invalid",
            param=param,
        )
    match = _AMOUNT_RE.fullmatch(value)
    if match is None:
        raise InvalidRequest(
            'Amounts are plain decimal strings such as "1234.50", with no exponent or spaces.',
            code="amount_invalid",
            param=param,
        )
    sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
    exponent = currency_exponent(currency)
    if len(fraction) > exponent:
        raise InvalidRequest(
            f"{currency} amounts have at most {exponent} decimal places.",
            code="amount_precision",
            param=param,
        )
    minor = int(whole) * 10**exponent + int(fraction.ljust(exponent, "0") or "0")
    if sign:
        minor = -minor
    if minor == 0 and not allow_zero:
        raise InvalidRequest(
            "The amount must be greater than zero.", code="amount_too_small", param=param
        )
    if minor < 0 and not allow_negative:
        raise InvalidRequest(
            "The amount must not be negative.", code="amount_negative", param=param
        )
    if abs(minor) >= MAX_MINOR_UNITS:
        raise InvalidRequest("The amount is too large.", code="amount_too_large", param=param)
    return minor


def format_amount(minor: int, currency: str) -> str:
    """Integer minor units as the API's decimal string with exactly the currency's decimals."""
    exponent = currency_exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**exponent)
    if exponent == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{exponent}d}"


def money_payload(minor: int, currency: str) -> dict[str, str]:
    """An amount as the API shows it: ``{"amount": "1234.50", "currency": "CNY"}``."""
    return {"amount": format_amount(minor, currency), "currency": currency}


def to_money(minor: int, currency: str) -> Money:
    return Money(Decimal(minor).scaleb(-currency_exponent(currency)), currency)


def to_minor(money: Money) -> int:
    """Money back to minor units; refuses a value that is not a whole number of minor units."""
    code = money.currency.code
    scaled = money.amount.scaleb(currency_exponent(code))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{money!r} is not a whole number of {code} minor units; round it first")
    return int(scaled)
