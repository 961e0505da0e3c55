"""The adapters that ship with the hub (each one has a sandbox institution in ``adapters.sandbox``,
except the ECB rate source, which reads offline data), and helpers they share."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from adapters.errors import MalformedResponse

# ISO 4217 minor-unit exponents of the currencies the built-in adapters move.
EXPONENTS: dict[str, int] = {"CNY": 2, "KRW": 0, "EUR": 2, "USD": 2, "JPY": 0, "HKD": 2}


def exponent_of(currency: str) -> int:
    try:
        return EXPONENTS[currency]
    except KeyError:
        raise MalformedResponse(f"no minor-unit exponent is known for {currency!r}") from None


def minor_to_decimal(minor: int, currency: str) -> Decimal:
    """123456 CNY -> Decimal('1234.56'); 1000 KRW -> Decimal('1000'). Exact."""
    return Decimal(minor).scaleb(-exponent_of(currency))


def decimal_to_minor(value: str | Decimal, currency: str) -> int:
    """'1234.56' CNY -> 123456, exactly, or ``MalformedResponse`` when the value is not a
    decimal or has more places than the currency has (never rounded)."""
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise MalformedResponse(f"not a decimal amount: {value!r}") from None
    if not number.is_finite():
        raise MalformedResponse(f"not a finite amount: {value!r}")
    scaled = number.scaleb(exponent_of(currency))
    if scaled != scaled.to_integral_value():
        raise MalformedResponse(f"{value} has more decimals than {currency} has")
    return int(scaled)


def load_object(content: bytes, *, what: str = "the body") -> dict[str, Any]:
    """``content`` as a JSON object, numbers with a fraction read as ``Decimal`` (never float)."""
    try:
        value = json.loads(content, parse_float=Decimal)
    except ValueError:
        raise MalformedResponse(f"{what} is not JSON: {content[:200]!r}") from None
    if not isinstance(value, dict):
        raise MalformedResponse(f"{what} is not a JSON object but {type(value).__name__}")
    return value


def read_object(response: httpx.Response) -> dict[str, Any]:
    return load_object(response.content, what=f"the HTTP {response.status_code} answer")


def required(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    """``obj[name]`` when it is of ``kind`` (a bool is no int here), else ``MalformedResponse``."""
    value = obj.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise MalformedResponse(f"the provider's {name!r} is missing or not {kind}")
    return value


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever the case of the mapping's keys."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None
