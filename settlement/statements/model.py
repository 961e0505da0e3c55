"""What a bank statement says, whatever format it came in: frozen dataclasses, exact amounts.

Amounts are integer minor units of their own currency, always positive (zero included), with the
direction in ``credit_debit`` as ISO 20022 gives it: ``CRDT`` adds to the account, ``DBIT``
takes from it. ``stated_amount`` keeps the amount text exactly as the file wrote it and
``rounded`` says whether turning it into minor units needed rounding (see ``decimal_to_minor``).

``as_dict()`` gives the JSON shape: amounts both as a decimal string in major units with exactly
the currency's decimals (``"885.00"`` EUR, ``"150000"`` KRW) and as ``amount_minor``; dates and
date-times in ISO 8601.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, Literal

from settlement.statements.errors import StatementParseError

CreditDebit = Literal["CRDT", "DBIT"]
CREDIT: CreditDebit = "CRDT"
DEBIT: CreditDebit = "DBIT"

# Large enough for any bank export, small enough to keep hostile input cheap to refuse.
MAX_FILE_BYTES = 20 * 1024 * 1024

# ISO 4217 minor-unit exponents of the currencies statements arrive in. A currency missing here
# is refused rather than guessed: a wrong exponent would scale every amount by a power of ten.
# fmt: off
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        (
            "AED", "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD",
            "HUF", "IDR", "ILS", "INR", "MOP", "MXN", "MYR", "NOK", "NZD", "PHP", "PLN",
            "RON", "RUB", "SAR", "SEK", "SGD", "THB", "TRY", "TWD", "USD", "ZAR",
        ),
        2,
    ),
    **dict.fromkeys(("CLP", "ISK", "JPY", "KRW", "VND"), 0),
    **dict.fromkeys(("BHD", "JOD", "KWD", "OMR", "TND"), 3),
}
# fmt: on

# ISO 20022 amounts carry at most 18 digits; keeps every value far inside Decimal's precision.
MAX_AMOUNT_DIGITS = 18

_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def currency_exponent(code: str) -> int:
    """Decimal places of the currency's minor unit (EUR 2, KRW 0, KWD 3)."""
    try:
        return CURRENCY_EXPONENTS[code]
    except KeyError:
        if not re.fullmatch(r"[A-Z]{3}", code):
            raise StatementParseError(
                f"{code!r} is not a currency code (three upper-case ISO 4217 letters)"
            ) from None
        raise StatementParseError(
            f"unknown currency {code!r}: its ISO 4217 minor unit is not known here "
            f"(known: {', '.join(sorted(CURRENCY_EXPONENTS))})"
        ) from None


def decimal_to_minor(value: Decimal, currency: str, *, allow_rounding: bool) -> tuple[int, bool]:
    """``value`` in major units as integer minor units of ``currency``, and whether it was rounded.

    Digits beyond the currency's precision that are all zero change nothing: ``8.850`` EUR is
    exactly 885 minor units, which is what the reference parse of the camt.053 sample with surplus
    decimals shows. Surplus digits that are not zero are rounded to the nearest minor unit, ties
    to even (ROUND_HALF_EVEN: ``0.125`` EUR is 12, ``0.135`` EUR is 14), and the result is
    flagged as rounded, but only when ``allow_rounding``; otherwise they are refused.
    """
    exponent = currency_exponent(currency)
    with localcontext() as context:
        context.prec = MAX_AMOUNT_DIGITS + 10
        scaled = value.scaleb(exponent)
        minor = scaled.to_integral_value(rounding=ROUND_HALF_EVEN)
    rounded = minor != scaled
    if rounded and not allow_rounding:
        raise StatementParseError(
            f"{currency} has {exponent} decimal place{'s' if exponent != 1 else ''}; "
            f"{value} would have to be rounded"
        )
    return int(minor), rounded


def parse_plain_decimal(text: str) -> Decimal:
    """A plain decimal string (``1234.5``, ``-0.01``): no exponent, spaces or grouping."""
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise StatementParseError(f"{text!r} is not a decimal amount")
    if sum(ch.isdigit() for ch in text.lstrip("-0")) > MAX_AMOUNT_DIGITS:
        raise StatementParseError(f"{text!r} has more than {MAX_AMOUNT_DIGITS} digits")
    return Decimal(text)


def parse_major(text: str, currency: str) -> int:
    """The inverse of ``format_minor``: a signed decimal string in major units, exactly."""
    minor, _ = decimal_to_minor(parse_plain_decimal(text), currency, allow_rounding=False)
    return minor


def format_minor(minor: int, currency: str) -> str:
    """Integer minor units as a decimal string with exactly the currency's decimals."""
    exponent = currency_exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**exponent)
    if exponent == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{exponent}d}"


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _money(minor: int, currency: str) -> dict[str, Any]:
    return {
        "amount": format_minor(minor, currency),
        "amount_minor": minor,
        "currency": currency,
    }


@dataclass(frozen=True)
class Account:
    """The statement's account: an IBAN or another identifier, and what else the bank says."""

    iban: str | None = None
    other_id: str | None = None
    currency: str | None = None
    name: str | None = None
    owner_name: str | None = None
    servicer_bic: str | None = None
    servicer_name: str | None = None

    @property
    def identification(self) -> str | None:
        return self.iban if self.iban is not None else self.other_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "iban": self.iban,
            "other_id": self.other_id,
            "currency": self.currency,
            "name": self.name,
            "owner_name": self.owner_name,
            "servicer_bic": self.servicer_bic,
            "servicer_name": self.servicer_name,
        }


@dataclass(frozen=True)
class Balance:
    """One balance line: ``type_code`` is the ISO 20022 code (OPBD opening booked, CLBD closing
    booked, OPAV/CLAV opening/closing available, PRCD previously closed booked, ITBD interim
    booked, ...) or the bank's proprietary type."""

    type_code: str
    amount_minor: int
    currency: str
    credit_debit: CreditDebit
    date: date
    date_time: datetime | None = None
    stated_amount: str = ""
    rounded: bool = False

    @property
    def signed_minor(self) -> int:
        return self.amount_minor if self.credit_debit == CREDIT else -self.amount_minor

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type_code,
            **_money(self.amount_minor, self.currency),
            "credit_debit": self.credit_debit,
            "date": _iso(self.date),
            "date_time": _iso(self.date_time),
            "stated_amount": self.stated_amount,
            "rounded": self.rounded,
        }


@dataclass(frozen=True)
class BankTransactionCode:
    """ISO domain/family/sub-family (``PMNT``/``RCDT``/``DMCT``) and/or a proprietary code."""

    domain: str | None = None
    family: str | None = None
    subfamily: str | None = None
    proprietary_code: str | None = None
    proprietary_issuer: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "family": self.family,
            "subfamily": self.subfamily,
            "proprietary_code": self.proprietary_code,
            "proprietary_issuer": self.proprietary_issuer,
        }


@dataclass(frozen=True)
class Party:
    """A debtor, creditor or counterparty: name, account and the bank (agent) holding it."""

    name: str | None = None
    iban: str | None = None
    account_id: str | None = None
    agent_bic: str | None = None

    @property
    def account(self) -> str | None:
        return self.iban if self.iban is not None else self.account_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "iban": self.iban,
            "account_id": self.account_id,
            "agent_bic": self.agent_bic,
        }


@dataclass(frozen=True)
class Remittance:
    """Free-text lines (``Ustrd``) and the structured creditor reference (``CdtrRefInf``, e.g.
    an ISO 11649 ``RF..`` reference of type ``SCOR``)."""

    unstructured: tuple[str, ...] = ()
    creditor_reference: str | None = None
    creditor_reference_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "unstructured": list(self.unstructured),
            "creditor_reference": self.creditor_reference,
            "creditor_reference_type": self.creditor_reference_type,
        }


@dataclass(frozen=True)
class ProprietaryReference:
    type: str
    reference: str


@dataclass(frozen=True)
class TransactionDetail:
    """One transaction inside an entry (``NtryDtls/TxDtls``); a batch entry holds several."""

    end_to_end_id: str | None = None
    instruction_id: str | None = None
    transaction_id: str | None = None
    account_servicer_reference: str | None = None
    message_id: str | None = None
    payment_information_id: str | None = None
    mandate_id: str | None = None
    uetr: str | None = None
    proprietary_references: tuple[ProprietaryReference, ...] = ()
    amount_minor: int | None = None
    currency: str | None = None
    credit_debit: CreditDebit | None = None
    stated_amount: str | None = None
    rounded: bool = False
    bank_transaction_code: BankTransactionCode | None = None
    debtor: Party | None = None
    creditor: Party | None = None
    remittance: Remittance = field(default_factory=Remittance)
    additional_info: str | None = None

    def as_dict(self) -> dict[str, Any]:
        amount: dict[str, Any] = (
            _money(self.amount_minor, self.currency)
            if self.amount_minor is not None and self.currency is not None
            else {"amount": None, "amount_minor": None, "currency": None}
        )
        return {
            "end_to_end_id": self.end_to_end_id,
            "instruction_id": self.instruction_id,
            "transaction_id": self.transaction_id,
            "account_servicer_reference": self.account_servicer_reference,
            "message_id": self.message_id,
            "payment_information_id": self.payment_information_id,
            "mandate_id": self.mandate_id,
            "uetr": self.uetr,
            "proprietary_references": [
                {"type": ref.type, "reference": ref.reference}
                for ref in self.proprietary_references
            ],
            **amount,
            "credit_debit": self.credit_debit,
            "stated_amount": self.stated_amount,
            "rounded": self.rounded,
            "bank_transaction_code": _optional(self.bank_transaction_code),
            "debtor": _optional(self.debtor),
            "creditor": _optional(self.creditor),
            "remittance_information": self.remittance.as_dict(),
            "additional_info": self.additional_info,
        }


def _optional(value: BankTransactionCode | Party | Balance | None) -> dict[str, Any] | None:
    return None if value is None else value.as_dict()


@dataclass(frozen=True)
class Entry:
    """One booked (or pending, or information) movement on the account.

    The references, remittance information and counterparty are those of the entry's only
    transaction; an entry that batches several transactions leaves them empty and lists each in
    ``transactions``. The counterparty is the debtor of a credit and the creditor of a debit.
    """

    index: int
    amount_minor: int
    currency: str
    credit_debit: CreditDebit
    status: str
    booking_date: date | None = None
    value_date: date | None = None
    booking_date_time: datetime | None = None
    value_date_time: datetime | None = None
    reversal: bool = False
    stated_amount: str = ""
    rounded: bool = False
    account_servicer_reference: str | None = None
    entry_reference: str | None = None
    bank_transaction_code: BankTransactionCode | None = None
    end_to_end_id: str | None = None
    instruction_id: str | None = None
    transaction_id: str | None = None
    remittance: Remittance = field(default_factory=Remittance)
    counterparty: Party | None = None
    additional_info: str | None = None
    transactions: tuple[TransactionDetail, ...] = ()

    @property
    def signed_minor(self) -> int:
        return self.amount_minor if self.credit_debit == CREDIT else -self.amount_minor

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            **_money(self.amount_minor, self.currency),
            "credit_debit": self.credit_debit,
            "stated_amount": self.stated_amount,
            "rounded": self.rounded,
            "status": self.status,
            "reversal": self.reversal,
            "booking_date": _iso(self.booking_date),
            "booking_date_time": _iso(self.booking_date_time),
            "value_date": _iso(self.value_date),
            "value_date_time": _iso(self.value_date_time),
            "account_servicer_reference": self.account_servicer_reference,
            "entry_reference": self.entry_reference,
            "bank_transaction_code": _optional(self.bank_transaction_code),
            "end_to_end_id": self.end_to_end_id,
            "instruction_id": self.instruction_id,
            "transaction_id": self.transaction_id,
            "remittance_information": self.remittance.as_dict(),
            "counterparty": _optional(self.counterparty),
            "additional_info": self.additional_info,
            "transactions": [detail.as_dict() for detail in self.transactions],
        }


@dataclass(frozen=True)
class Statement:
    """One account statement: a camt.053 ``Stmt`` or a whole mapped CSV file.

    ``format`` is the message version (``camt.053.001.02``) or ``csv``. Balances keep the order
    of the file; ``opening_balance`` and ``closing_balance`` pick the booked ones.
    """

    format: str
    statement_id: str
    account: Account
    message_id: str | None = None
    message_created_at: datetime | None = None
    created_at: datetime | None = None
    electronic_sequence_number: int | None = None
    legal_sequence_number: int | None = None
    from_date_time: datetime | None = None
    to_date_time: datetime | None = None
    copy_duplicate: str | None = None
    page_number: int | None = None
    last_page: bool | None = None
    balances: tuple[Balance, ...] = ()
    entries: tuple[Entry, ...] = ()
    additional_info: str | None = None

    def balance(self, *type_codes: str) -> Balance | None:
        """The first balance of the first of ``type_codes`` that the statement has."""
        for code in type_codes:
            for balance in self.balances:
                if balance.type_code == code:
                    return balance
        return None

    @property
    def opening_balance(self) -> Balance | None:
        # Some banks state the opening booked balance as the previous statement's closing one.
        return self.balance("OPBD", "PRCD")

    @property
    def closing_balance(self) -> Balance | None:
        return self.balance("CLBD")

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "message_id": self.message_id,
            "message_created_at": _iso(self.message_created_at),
            "statement_id": self.statement_id,
            "electronic_sequence_number": self.electronic_sequence_number,
            "legal_sequence_number": self.legal_sequence_number,
            "created_at": _iso(self.created_at),
            "from_date_time": _iso(self.from_date_time),
            "to_date_time": _iso(self.to_date_time),
            "copy_duplicate": self.copy_duplicate,
            "page_number": self.page_number,
            "last_page": self.last_page,
            "account": self.account.as_dict(),
            "opening_balance": _optional(self.opening_balance),
            "closing_balance": _optional(self.closing_balance),
            "balances": [balance.as_dict() for balance in self.balances],
            "entries": [entry.as_dict() for entry in self.entries],
            "additional_info": self.additional_info,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.as_dict(), indent=indent, ensure_ascii=False)


def statements_to_json(statements: list[Statement], *, indent: int | None = 2) -> str:
    """One JSON document for a whole file: the list of its statements."""
    return json.dumps(
        [statement.as_dict() for statement in statements], indent=indent, ensure_ascii=False
    )
