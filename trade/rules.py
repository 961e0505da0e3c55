"""What makes one trade document fileable, checked the same way for a document sent to the API,
one passed to a service and each row of a bulk file.

A document is refused when it cannot stand on its own: a field missing or malformed, an amount
in the wrong precision or not positive, a currency the hub does not settle, a date in the future,
an order whose total is not its parts, a customs mode that contradicts the trade type. Whether
documents agree with each other (amounts, currencies, buyer and payer, the order of dates) is
not checked here: the documents come from different parties, a disagreement is evidence, and
forex verification judges it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.conf import hub_settings
from hub.errors import InvalidRequest
from hub.money import MAX_MINOR_UNITS, check_currency, currency_exponent, parse_amount
from trade.models import (
    Contract,
    CustomsDeclaration,
    CustomsMode,
    DocumentUpload,
    Invoice,
    Order,
    PaymentRecord,
    TradeType,
    Waybill,
    _Document,
)

# How far ahead of the hub's clock a document's time may be: the clocks of platforms, carriers
# and customs brokers drift, and a document stamped a few seconds "from now" is not a forgery.
CLOCK_SKEW = timedelta(minutes=5)
# No document of the pilot zone predates this; an earlier time is a typo (a year of 0202).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)

B2C_MODES = frozenset({CustomsMode.RETAIL_EXPORT.value, CustomsMode.BONDED.value})
B2B_MODES = frozenset({CustomsMode.B2B_DIRECT.value, CustomsMode.OVERSEAS_WAREHOUSE.value})
MODES_OF = {TradeType.B2C.value: B2C_MODES, TradeType.B2B.value: B2B_MODES}

# Document numbers travel through CSV files, spreadsheets, URLs and customs systems: letters,
# digits and - _ . / only, starting with a letter or digit (so never a spreadsheet formula).
NUMBER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
# RFC 3339 with a time offset; fractions of a second to nanoseconds.
TIME_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# C0 and C1 controls (NUL among them: PostgreSQL cannot store it in text).
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# ISO 3166-1 alpha-2, the officially assigned codes.
_COUNTRY_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO
    DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU
    GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW
    KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU
    MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW
    PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA
    ZM ZW"""
COUNTRIES = frozenset(_COUNTRY_CODES.split())


class DocumentError(InvalidRequest):
    """One document (or one row of a file) that cannot be filed: a code, the field, a reason."""


@dataclass(frozen=True)
class Context:
    """What every check of one request or one file reads: the latest time a document may carry,
    and the currencies the hub settles with their decimal places (read from settings once)."""

    latest: datetime
    exponents: Mapping[str, int]


def context_at(now: datetime) -> Context:
    return Context(
        latest=now + CLOCK_SKEW,
        exponents={code: currency_exponent(code) for code in hub_settings.CURRENCIES},
    )


def _amount_re(exponent: int) -> re.Pattern[str]:
    # Whole digits bounded so that the minor units stay below MAX_MINOR_UNITS (10**17).
    whole = rf"(0|[1-9][0-9]{{0,{16 - exponent}}})"
    return re.compile(whole + (rf"(?:\.([0-9]{{1,{exponent}}}))?" if exponent else ""))


_AMOUNT_RES: dict[int, re.Pattern[str]] = {}


def _bad(param: str, code: str, message: str) -> DocumentError:
    return DocumentError(message, code=code, param=param)


# --- one field each ------------------------------------------------------------------------------


def _text(value: object, param: str, *, max_length: int, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _bad(param, "parameter_invalid", f"{param} must be a string.")
    value = value.strip()
    if not value:
        if required:
            raise _bad(param, "parameter_missing", f"{param} is required.")
        return ""
    if len(value) > max_length or CONTROL_RE.search(value):
        raise _bad(
            param,
            "parameter_invalid",
            f"{param} has 1 to {max_length} characters, none of them control characters.",
        )
    return value


def _number(value: object, param: str, *, required: bool = True) -> str:
    if value is None or value == "":
        if required:
            raise _bad(param, "parameter_missing", f"{param} is required.")
        return ""
    if not isinstance(value, str) or NUMBER_RE.fullmatch(value) is None:
        raise _bad(
            param,
            "document_number_invalid",
            f"{param} has 1 to 64 characters: letters, digits and - _ . /, beginning with a "
            "letter or digit.",
        )
    return value


def _country(value: object, param: str) -> str:
    if value is None or value == "":
        raise _bad(param, "parameter_missing", f"{param} is required.")
    if not isinstance(value, str) or value not in COUNTRIES:
        raise _bad(
            param,
            "country_invalid",
            f"{param} is an ISO 3166-1 alpha-2 country code in upper case, such as KR or CN.",
        )
    return value


def _choice(value: object, param: str, choices: frozenset[str]) -> str:
    if value is None or value == "":
        raise _bad(param, "parameter_missing", f"{param} is required.")
    if not isinstance(value, str) or value not in choices:
        raise _bad(param, "parameter_invalid", f"{param} is one of: {', '.join(sorted(choices))}.")
    return value


def _currency(value: object, param: str, ctx: Context) -> str:
    if value is None or value == "":
        raise _bad(param, "parameter_missing", f"{param} is required.")
    if isinstance(value, str) and value in ctx.exponents:
        return value
    try:
        check_currency(value, param=param)
    except InvalidRequest as exc:
        raise _bad(param, exc.code, exc.message) from None
    raise AssertionError("check_currency accepted a currency the hub does not settle")


def _amount(
    value: object, param: str, currency: str, ctx: Context, *, required: bool = True
) -> int:
    """Minor units from an API decimal string, or an int of minor units as they are."""
    if value is None or value == "":
        if required:
            raise _bad(param, "parameter_missing", f"{param} is required.")
        return 0
    if isinstance(value, str):
        exponent = ctx.exponents[currency]
        pattern = _AMOUNT_RES.get(exponent) or _AMOUNT_RES.setdefault(
            exponent, _amount_re(exponent)
        )
        match = pattern.fullmatch(value)
        if match is not None:
            fraction = match.group(2) if exponent else None
            minor = int(match.group(1)) * 10**exponent + (
                int(fraction.ljust(exponent, "0")) if fraction else 0
            )
            if minor or not required:
                return _bounded(minor, param)
        try:  # not a plain amount: parse_amount says what is wrong with it
            return _bounded(
                parse_amount(value, currency, param=param, allow_zero=not required), param
            )
        except InvalidRequest as exc:
            raise _bad(param, exc.code, exc.message) from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(param, "amount_invalid", f"{param} is an integer of minor units.")
    if value < 0:
        raise _bad(param, "amount_negative", "The amount must not be negative.")
    if value == 0 and required:
        raise _bad(param, "amount_too_small", "The amount must be greater than zero.")
    if value >= MAX_MINOR_UNITS:
        raise _bad(param, "amount_too_large", "The amount is too large.")
    return _bounded(value, param)


# A document's amounts stay below 2**53 minor units (90 trillion yuan): verification's
# vectorised pass holds amounts of missing documents as NaN, in float columns, where every
# integer below 2**53 is exact.
DOCUMENT_MAX_MINOR_UNITS = 2**53


def _bounded(minor: int, param: str) -> int:
    if minor >= DOCUMENT_MAX_MINOR_UNITS:
        raise _bad(
            param,
            "amount_too_large",
            f"A document's amounts are below {DOCUMENT_MAX_MINOR_UNITS} minor units.",
        )
    return minor


def _time(value: object, param: str, ctx: Context) -> datetime:
    if value is None or value == "":
        raise _bad(param, "parameter_missing", f"{param} is required.")
    if isinstance(value, str):
        if TIME_RE.fullmatch(value) is None:
            raise _bad(
                param,
                "timestamp_invalid",
                f"{param} is an RFC 3339 time with its offset, such as 2026-11-02T10:15:00+09:00.",
            )
        if value[10] != "T" or value[-1] == "z":
            value = value[:10] + "T" + value[11:].upper()
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _bad(param, "timestamp_invalid", f"{param} is not a valid time.") from None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise _bad(param, "timestamp_invalid", f"{param} is a time with its offset.")
    if value > ctx.latest:
        raise _bad(
            param,
            "timestamp_in_future",
            f"{param} is later than now (a document records what has happened).",
        )
    if value < EARLIEST:
        raise _bad(param, "timestamp_too_early", f"{param} is before {EARLIEST.year}.")
    return value.astimezone(UTC)


# --- one document each ---------------------------------------------------------------------------

Values = dict[str, Any]


def _order(raw: Mapping[str, object], ctx: Context) -> Values:
    order_no = _number(raw.get("order_no"), "order_no")
    trade_type = _choice(raw.get("trade_type"), "trade_type", frozenset(MODES_OF))
    customs_mode = _choice(raw.get("customs_mode"), "customs_mode", B2C_MODES | B2B_MODES)
    if customs_mode not in MODES_OF[trade_type]:
        raise _bad(
            "customs_mode",
            "customs_mode_mismatch",
            f"Customs mode {customs_mode} is for "
            f"{'B2C' if customs_mode in B2C_MODES else 'B2B'} trade, not {trade_type} "
            "(9610 and 1210 are B2C; 9710 and 9810 are B2B).",
        )
    currency = _currency(raw.get("currency"), "currency", ctx)
    amount = _amount(raw.get("amount"), "amount", currency, ctx)
    goods = _amount(raw.get("goods_amount"), "goods_amount", currency, ctx, required=False)
    shipping = _amount(raw.get("shipping_amount"), "shipping_amount", currency, ctx, required=False)
    tax = _amount(raw.get("tax_amount"), "tax_amount", currency, ctx, required=False)
    if goods + shipping + tax != amount:
        raise _bad(
            "amount",
            "amount_mismatch",
            "amount must equal goods_amount + shipping_amount + tax_amount.",
        )
    return {
        "order_no": order_no,
        "trade_type": trade_type,
        "customs_mode": customs_mode,
        "buyer_name": _text(raw.get("buyer_name"), "buyer_name", max_length=200, required=True),
        "buyer_id": _text(raw.get("buyer_id"), "buyer_id", max_length=64, required=True),
        "buyer_country": _country(raw.get("buyer_country"), "buyer_country"),
        "currency": currency,
        "amount": amount,
        "goods_amount": goods,
        "shipping_amount": shipping,
        "tax_amount": tax,
        "ordered_at": _time(raw.get("ordered_at"), "ordered_at", ctx),
    }


def _payment_record(raw: Mapping[str, object], ctx: Context) -> Values:
    payment_no = _number(raw.get("payment_no"), "payment_no")
    order_no = _number(raw.get("order_no"), "order_no")
    currency = _currency(raw.get("currency"), "currency", ctx)
    return {
        "payment_no": payment_no,
        "order_no": order_no,
        "payer_name": _text(raw.get("payer_name"), "payer_name", max_length=200, required=True),
        "payer_id": _text(raw.get("payer_id"), "payer_id", max_length=64, required=True),
        "payer_country": _country(raw.get("payer_country"), "payer_country"),
        "institution_name": _text(
            raw.get("institution_name"), "institution_name", max_length=200, required=False
        ),
        "currency": currency,
        "amount": _amount(raw.get("amount"), "amount", currency, ctx),
        "paid_at": _time(raw.get("paid_at"), "paid_at", ctx),
    }


def _waybill(raw: Mapping[str, object], ctx: Context) -> Values:
    return {
        "waybill_no": _number(raw.get("waybill_no"), "waybill_no"),
        "order_no": _number(raw.get("order_no"), "order_no"),
        "carrier": _text(raw.get("carrier"), "carrier", max_length=100, required=True),
        "consignee_name": _text(
            raw.get("consignee_name"), "consignee_name", max_length=200, required=True
        ),
        "destination_country": _country(raw.get("destination_country"), "destination_country"),
        "shipped_at": _time(raw.get("shipped_at"), "shipped_at", ctx),
    }


def _customs_declaration(raw: Mapping[str, object], ctx: Context) -> Values:
    declaration_no = _number(raw.get("declaration_no"), "declaration_no")
    order_no = _number(raw.get("order_no"), "order_no")
    waybill_no = _number(raw.get("waybill_no"), "waybill_no", required=False)
    customs_mode = _choice(raw.get("customs_mode"), "customs_mode", B2C_MODES | B2B_MODES)
    currency = _currency(raw.get("currency"), "currency", ctx)
    return {
        "declaration_no": declaration_no,
        "order_no": order_no,
        "waybill_no": waybill_no,
        "customs_mode": customs_mode,
        "currency": currency,
        "amount": _amount(raw.get("amount"), "amount", currency, ctx),
        "declared_at": _time(raw.get("declared_at"), "declared_at", ctx),
    }


def _contract(raw: Mapping[str, object], ctx: Context) -> Values:
    contract_no = _number(raw.get("contract_no"), "contract_no")
    currency = _currency(raw.get("currency"), "currency", ctx)
    return {
        "contract_no": contract_no,
        "buyer_name": _text(raw.get("buyer_name"), "buyer_name", max_length=200, required=True),
        "buyer_country": _country(raw.get("buyer_country"), "buyer_country"),
        "currency": currency,
        "amount": _amount(raw.get("amount"), "amount", currency, ctx),
        "signed_at": _time(raw.get("signed_at"), "signed_at", ctx),
    }


def _invoice(raw: Mapping[str, object], ctx: Context) -> Values:
    invoice_no = _number(raw.get("invoice_no"), "invoice_no")
    contract_no = _number(raw.get("contract_no"), "contract_no", required=False)
    order_no = _number(raw.get("order_no"), "order_no", required=False)
    if not contract_no and not order_no:
        raise _bad(
            "contract_no",
            "parameter_missing",
            "An invoice names the contract_no or the order_no it bills (or both).",
        )
    currency = _currency(raw.get("currency"), "currency", ctx)
    return {
        "invoice_no": invoice_no,
        "contract_no": contract_no,
        "order_no": order_no,
        "currency": currency,
        "amount": _amount(raw.get("amount"), "amount", currency, ctx),
        "issued_at": _time(raw.get("issued_at"), "issued_at", ctx),
    }


@dataclass(frozen=True)
class Kind:
    """One kind of document: its model, the field that numbers it, the fields it takes (in the
    order of a CSV header) and which of them are optional, and the links it resolves."""

    name: str
    model: type[_Document]
    number: str
    fields: tuple[str, ...]
    optional: frozenset[str]
    clean: Callable[[Mapping[str, object], Context], Values]
    # Numbers naming earlier documents: field -> (model, that model's number field).
    links: tuple[tuple[str, type[_Document], str], ...] = ()


_K = DocumentUpload.Kind
KINDS: dict[str, Kind] = {
    _K.ORDER: Kind(
        "order",
        Order,
        "order_no",
        (
            "order_no",
            "trade_type",
            "customs_mode",
            "buyer_name",
            "buyer_id",
            "buyer_country",
            "currency",
            "amount",
            "goods_amount",
            "shipping_amount",
            "tax_amount",
            "ordered_at",
        ),
        frozenset({"shipping_amount", "tax_amount"}),
        _order,
    ),
    _K.PAYMENT_RECORD: Kind(
        "payment_record",
        PaymentRecord,
        "payment_no",
        (
            "payment_no",
            "order_no",
            "payer_name",
            "payer_id",
            "payer_country",
            "institution_name",
            "currency",
            "amount",
            "paid_at",
        ),
        frozenset({"institution_name"}),
        _payment_record,
        (("order_no", Order, "order_no"),),
    ),
    _K.WAYBILL: Kind(
        "waybill",
        Waybill,
        "waybill_no",
        (
            "waybill_no",
            "order_no",
            "carrier",
            "consignee_name",
            "destination_country",
            "shipped_at",
        ),
        frozenset(),
        _waybill,
        (("order_no", Order, "order_no"),),
    ),
    _K.CUSTOMS_DECLARATION: Kind(
        "customs_declaration",
        CustomsDeclaration,
        "declaration_no",
        (
            "declaration_no",
            "order_no",
            "waybill_no",
            "customs_mode",
            "currency",
            "amount",
            "declared_at",
        ),
        frozenset({"waybill_no"}),
        _customs_declaration,
        (("order_no", Order, "order_no"),),
    ),
    _K.CONTRACT: Kind(
        "contract",
        Contract,
        "contract_no",
        ("contract_no", "buyer_name", "buyer_country", "currency", "amount", "signed_at"),
        frozenset(),
        _contract,
    ),
    _K.INVOICE: Kind(
        "invoice",
        Invoice,
        "invoice_no",
        ("invoice_no", "contract_no", "order_no", "currency", "amount", "issued_at"),
        frozenset({"contract_no", "order_no"}),
        _invoice,
        (("contract_no", Contract, "contract_no"), ("order_no", Order, "order_no")),
    ),
}
KIND_OF_MODEL: dict[type[_Document], Kind] = {kind.model: kind for kind in KINDS.values()}


def document_clean(kind: Kind, raw: Mapping[str, object], *, now: datetime) -> Values:
    """The document's fields, parsed (decimal strings to minor units, RFC 3339 to aware UTC
    times) and checked; ``DocumentError`` at the first field that is wrong."""
    return kind.clean(raw, context_at(now))
