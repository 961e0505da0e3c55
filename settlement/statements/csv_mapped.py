"""Bank statements exported as CSV, read through a mapping of their columns.

Banks without camt.053 export a table of movements whose columns, date format and separators
differ per bank; a ``CsvMapping`` names them. A whole file is one statement of one account and one
currency. Every row is checked and the first fault is reported with its row number (the header is
row 1, as a spreadsheet shows it).

Amounts are never rounded here: digits beyond the currency's precision must be zeros
(``1500.00`` KRW is 1500, ``1500.5`` KRW is refused), because a CSV export carries no rounding
rule of its own and any rounding would be a guess.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from typing import Any

from settlement.statements.errors import CsvMappingError, StatementParseError
from settlement.statements.model import (
    CREDIT,
    DEBIT,
    Account,
    Balance,
    CreditDebit,
    Entry,
    Party,
    Remittance,
    Statement,
    currency_exponent,
    decimal_to_minor,
    format_minor,
    parse_plain_decimal,
)

FORMAT = "csv"
_UNSIGNED = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_DECIMAL_SEPARATORS = (".", ",")
_THOUSANDS_SEPARATORS = (".", ",", " ", "'", "\u00a0", "\u202f")


@dataclass(frozen=True)
class CsvMapping:
    """Which column holds what, and how the file writes dates and numbers.

    Column fields name a header cell; ``None`` means the file has no such column. The amount is
    signed (a leading ``-`` is a debit) unless ``credit_debit`` names an indicator column, whose
    values are matched case-insensitively against ``credit_values`` and ``debit_values``. The
    currency is a column or ``fixed_currency``, never both. Balances come from the mapping
    (``opening_balance``/``closing_balance``: signed decimal strings with a ``.``, in major units)
    or from a running ``balance_after`` column; both are optional.
    """

    booking_date: str = "booking_date"
    amount: str = "amount"
    value_date: str | None = None
    credit_debit: str | None = None
    credit_values: tuple[str, ...] = ("CRDT", "C", "CR", "CREDIT")
    debit_values: tuple[str, ...] = ("DBIT", "D", "DR", "DEBIT")
    currency: str | None = None
    fixed_currency: str | None = None
    reference: str | None = None
    end_to_end_id: str | None = None
    counterparty: str | None = None
    counterparty_account: str | None = None
    description: str | None = None
    balance_after: str | None = None
    opening_balance: str | None = None
    opening_balance_date: date | None = None
    closing_balance: str | None = None
    closing_balance_date: date | None = None
    account: str | None = None
    statement_id: str | None = None
    date_format: str = "%Y-%m-%d"
    decimal_separator: str = "."
    thousands_separator: str | None = None
    delimiter: str = ","
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        if len(self.delimiter) != 1 or self.delimiter in '\r\n"':
            raise CsvMappingError(f"CSV mapping: delimiter {self.delimiter!r} is not one character")
        if self.decimal_separator not in _DECIMAL_SEPARATORS:
            raise CsvMappingError(
                f"CSV mapping: decimal_separator must be '.' or ',', not {self.decimal_separator!r}"
            )
        if self.thousands_separator is not None and (
            self.thousands_separator not in _THOUSANDS_SEPARATORS
            or self.thousands_separator == self.decimal_separator
        ):
            raise CsvMappingError(
                f"CSV mapping: thousands_separator {self.thousands_separator!r} cannot be used "
                f"with decimal_separator {self.decimal_separator!r}"
            )
        if (self.currency is None) == (self.fixed_currency is None):
            raise CsvMappingError(
                "CSV mapping: give either a currency column or a fixed_currency, exactly one"
            )
        if self.fixed_currency is not None:
            try:
                currency_exponent(self.fixed_currency)
            except StatementParseError as exc:
                raise CsvMappingError(f"CSV mapping: fixed_currency: {exc.reason}") from None
        if "%" not in self.date_format:
            raise CsvMappingError(
                f"CSV mapping: date_format {self.date_format!r} has no strftime directive"
            )
        credits = {value.upper() for value in self.credit_values}
        debits = {value.upper() for value in self.debit_values}
        if self.credit_debit is not None and (not credits or not debits or credits & debits):
            raise CsvMappingError(
                "CSV mapping: credit_values and debit_values must both be given and not overlap"
            )
        for name in ("opening_balance", "closing_balance"):
            value = getattr(self, name)
            if value is not None:
                try:
                    parse_plain_decimal(value)
                except StatementParseError as exc:
                    raise CsvMappingError(f"CSV mapping: {name}: {exc.reason}") from None
        try:
            "".encode(self.encoding)
        except LookupError:
            raise CsvMappingError(f"CSV mapping: unknown encoding {self.encoding!r}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CsvMapping:
        """A mapping from its JSON form: the field names as keys, dates as ``YYYY-MM-DD``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CsvMappingError(
                f"CSV mapping: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"known keys: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("credit_values", "debit_values"):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise CsvMappingError(f"CSV mapping: {key} must be a list of strings")
                values[key] = tuple(value)
            elif key in ("opening_balance_date", "closing_balance_date"):
                values[key] = None if value is None else _mapping_date(key, value)
            elif value is not None and not isinstance(value, str):
                raise CsvMappingError(f"CSV mapping: {key} must be a string or null")
            else:
                values[key] = value
        for required in ("booking_date", "amount"):
            if values.get(required, "") is None:
                raise CsvMappingError(f"CSV mapping: {required} must name a column")
        return cls(**values)

    def columns(self) -> dict[str, str]:
        """The columns the file must have: mapping field -> header name."""
        names = (
            "booking_date",
            "amount",
            "value_date",
            "credit_debit",
            "currency",
            "reference",
            "end_to_end_id",
            "counterparty",
            "counterparty_account",
            "description",
            "balance_after",
        )
        return {name: column for name in names if (column := getattr(self, name)) is not None}


DEFAULT_CSV_MAPPING = CsvMapping(
    booking_date="booking_date",
    value_date="value_date",
    amount="amount",
    currency="currency",
    reference="reference",
    counterparty="counterparty",
    description="description",
)


def _mapping_date(key: str, value: object) -> date:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise CsvMappingError(f"CSV mapping: {key} must be a date written YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CsvMappingError(f"CSV mapping: {key} {value!r} is not a calendar date") from None


@dataclass(frozen=True)
class _Row:
    number: int
    cells: dict[str, str]

    def get(self, column: str | None) -> str | None:
        if column is None:
            return None
        value = self.cells[column].strip()
        return value or None

    def require(self, column: str) -> str:
        value = self.get(column)
        if value is None:
            raise StatementParseError("is empty", row=self.number, column=column)
        return value

    def fail(self, column: str | None, reason: str) -> StatementParseError:
        return StatementParseError(reason, row=self.number, column=column)


def parse_csv(data: bytes, mapping: CsvMapping) -> Statement:
    """The one statement a mapped CSV file holds."""
    rows = _rows(data, mapping)
    entries: list[Entry] = []
    running: list[tuple[int, int]] = []  # (row number, balance after) per entry
    currency = mapping.fixed_currency
    for row in rows:
        row_currency = mapping.fixed_currency or _row_currency(row, mapping)
        if currency is None:
            currency = row_currency
        elif row_currency != currency:
            raise row.fail(
                mapping.currency,
                f"currency {row_currency} differs from {currency} of the rows above; "
                "a statement has one currency",
            )
        entry = _entry(row, mapping, index=len(entries), currency=row_currency)
        entries.append(entry)
        if mapping.balance_after is not None:
            text = row.require(mapping.balance_after)
            running.append(
                (row.number, _signed_minor(row, mapping.balance_after, text, mapping, row_currency))
            )
    balances = _balances(mapping, entries, running, currency)
    return Statement(
        format=FORMAT,
        statement_id=mapping.statement_id or f"csv-{hashlib.sha256(data).hexdigest()[:16]}",
        account=_account(mapping.account, currency),
        balances=balances,
        entries=tuple(entries),
    )


def _rows(data: bytes, mapping: CsvMapping) -> list[_Row]:
    encoding = (
        "utf-8-sig" if mapping.encoding.lower().replace("_", "-") == "utf-8" else mapping.encoding
    )
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise StatementParseError(
            f"the file is not {mapping.encoding} text (byte {exc.start}); "
            "set the CSV mapping's encoding"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=mapping.delimiter, strict=True)
    header: list[str] | None = None
    header_row = 0
    rows: list[_Row] = []
    number = 0
    try:
        for record in reader:
            number += 1
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header, header_row = [cell.strip() for cell in record], number
                _check_header(header, mapping, header_row)
                continue
            if len(record) != len(header):
                raise StatementParseError(
                    f"has {len(record)} fields, the header has {len(header)} "
                    f"(delimiter {mapping.delimiter!r})",
                    row=number,
                )
            rows.append(_Row(number, dict(zip(header, record, strict=True))))
    except csv.Error as exc:
        raise StatementParseError(f"not readable as CSV: {exc}", row=number + 1) from None
    if header is None:
        raise StatementParseError("the file is empty")
    return rows


def _check_header(header: list[str], mapping: CsvMapping, row: int) -> None:
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise StatementParseError(
            f"the header repeats column {', '.join(map(repr, duplicates))}", row=row
        )
    missing = [column for column in mapping.columns().values() if column not in header]
    if missing:
        raise StatementParseError(
            f"the header lacks column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, dict.fromkeys(missing)))} named by the CSV mapping; "
            f"found {', '.join(map(repr, header))}",
            row=row,
        )


def _row_currency(row: _Row, mapping: CsvMapping) -> str:
    assert mapping.currency is not None  # CsvMapping requires a column or a fixed currency
    code = row.require(mapping.currency).upper()
    try:
        currency_exponent(code)
    except StatementParseError as exc:
        raise exc.at(row=row.number, column=mapping.currency) from None
    return code


def _entry(row: _Row, mapping: CsvMapping, *, index: int, currency: str) -> Entry:
    booking = _date(row, mapping.booking_date, row.require(mapping.booking_date), mapping)
    value_text = row.get(mapping.value_date)
    value = None if value_text is None else _date(row, mapping.value_date, value_text, mapping)
    stated = row.require(mapping.amount)
    sign, magnitude = _decimal(row, mapping.amount, stated, mapping)
    if mapping.credit_debit is None:
        credit_debit: CreditDebit = DEBIT if sign == "-" else CREDIT
    else:
        if sign:
            raise row.fail(
                mapping.amount,
                f"{stated!r} carries a sign, but the direction is the {mapping.credit_debit!r} "
                "column's",
            )
        credit_debit = _indicator(row, mapping)
    minor = _minor(row, mapping.amount, magnitude, currency)
    description = row.get(mapping.description)
    name = row.get(mapping.counterparty)
    account = row.get(mapping.counterparty_account)
    compact = None if account is None else account.replace(" ", "").upper()
    is_iban = compact is not None and _IBAN.fullmatch(compact) is not None
    return Entry(
        index=index,
        amount_minor=minor,
        currency=currency,
        credit_debit=credit_debit,
        status="BOOK",
        booking_date=booking,
        value_date=value,
        stated_amount=stated,
        account_servicer_reference=row.get(mapping.reference),
        end_to_end_id=row.get(mapping.end_to_end_id),
        remittance=Remittance(unstructured=() if description is None else (description,)),
        counterparty=None
        if name is None and account is None
        else Party(
            name=name,
            iban=compact if is_iban else None,
            account_id=None if is_iban else account,
        ),
    )


def _indicator(row: _Row, mapping: CsvMapping) -> CreditDebit:
    assert mapping.credit_debit is not None
    value = row.require(mapping.credit_debit).upper()
    if value in {v.upper() for v in mapping.credit_values}:
        return CREDIT
    if value in {v.upper() for v in mapping.debit_values}:
        return DEBIT
    raise row.fail(
        mapping.credit_debit,
        f"{value!r} is neither a credit ({', '.join(mapping.credit_values)}) "
        f"nor a debit ({', '.join(mapping.debit_values)})",
    )


def _date(row: _Row, column: str | None, text: str, mapping: CsvMapping) -> date:
    # time.strptime: a calendar date only, no naive datetime in between.
    try:
        parsed = time.strptime(text, mapping.date_format)
    except ValueError:
        raise row.fail(
            column, f"{text!r} is not a date in the format {mapping.date_format!r}"
        ) from None
    return date(parsed.tm_year, parsed.tm_mon, parsed.tm_mday)


def _decimal(row: _Row, column: str, text: str, mapping: CsvMapping) -> tuple[str, Decimal]:
    """The sign (``""``, ``"+"`` or ``"-"``) and the magnitude of a number as the file writes it."""
    body = text.strip()
    sign = ""
    if body[:1] in ("+", "-"):
        sign, body = body[0], body[1:].strip()
    if mapping.thousands_separator is not None:
        body = body.replace(mapping.thousands_separator, "")
    if mapping.decimal_separator == ",":
        body = body.replace(".", "\x00").replace(",", ".")
    if not _UNSIGNED.fullmatch(body):
        grouping = (
            f" and thousands separator {mapping.thousands_separator!r}"
            if mapping.thousands_separator
            else ""
        )
        raise row.fail(
            column,
            f"{text!r} is not an amount with decimal separator "
            f"{mapping.decimal_separator!r}{grouping}",
        )
    try:
        return sign, parse_plain_decimal(body)
    except StatementParseError as exc:
        raise exc.at(row=row.number, column=column) from None


def _minor(row: _Row, column: str, magnitude: Decimal, currency: str) -> int:
    try:
        minor, _ = decimal_to_minor(magnitude, currency, allow_rounding=False)
    except StatementParseError as exc:
        raise exc.at(row=row.number, column=column) from None
    return minor


def _signed_minor(row: _Row, column: str, text: str, mapping: CsvMapping, currency: str) -> int:
    sign, magnitude = _decimal(row, column, text, mapping)
    minor = _minor(row, column, magnitude, currency)
    return -minor if sign == "-" else minor


def _balances(
    mapping: CsvMapping, entries: list[Entry], running: list[tuple[int, int]], currency: str | None
) -> tuple[Balance, ...]:
    stated = {
        "OPBD": (mapping.opening_balance, mapping.opening_balance_date),
        "CLBD": (mapping.closing_balance, mapping.closing_balance_date),
    }
    if currency is None:
        if any(text is not None for text, _ in stated.values()):
            raise StatementParseError(
                "the file has no rows, so the currency of the mapping's balances is unknown; "
                "set fixed_currency"
            )
        return ()
    net = sum(entry.signed_minor for entry in entries)
    derived = _from_running(entries, running)
    amounts: dict[str, int | None] = {}
    for code, (text, _) in stated.items():
        given = None if text is None else _mapping_minor(code, text, currency)
        from_rows = None if derived is None else derived[code]
        if given is not None and from_rows is not None and given != from_rows:
            raise StatementParseError(
                f"the mapping's {_NAMES[code]} balance {format_minor(given, currency)} differs "
                f"from the {format_minor(from_rows, currency)} the balance column gives"
            )
        amounts[code] = given if given is not None else from_rows
    opening, closing = amounts["OPBD"], amounts["CLBD"]
    if opening is not None and closing is not None and opening + net != closing:
        raise StatementParseError(
            f"the closing balance {format_minor(closing, currency)} {currency} is not the opening "
            f"balance {format_minor(opening, currency)} plus the entries' net "
            f"{format_minor(net, currency)}"
        )
    booked = [entry.booking_date for entry in entries if entry.booking_date is not None]
    dates = {
        "OPBD": mapping.opening_balance_date or (min(booked) if booked else None),
        "CLBD": mapping.closing_balance_date or (max(booked) if booked else None),
    }
    balances: list[Balance] = []
    for code, minor in amounts.items():
        if minor is None:
            continue
        on = dates[code]
        if on is None:
            raise StatementParseError(
                f"the file has no rows; give {_NAMES[code]}_balance_date in the mapping"
            )
        balances.append(
            Balance(
                type_code=code,
                amount_minor=abs(minor),
                currency=currency,
                credit_debit=DEBIT if minor < 0 else CREDIT,
                date=on,
                stated_amount=format_minor(minor, currency),
            )
        )
    return tuple(balances)


_NAMES = {"OPBD": "opening", "CLBD": "closing"}


def _mapping_minor(code: str, text: str, currency: str) -> int:
    try:
        minor, _ = decimal_to_minor(parse_plain_decimal(text), currency, allow_rounding=False)
    except StatementParseError as exc:
        raise CsvMappingError(f"CSV mapping: {_NAMES[code]}_balance: {exc.reason}") from None
    return minor


def _from_running(entries: list[Entry], running: list[tuple[int, int]]) -> dict[str, int] | None:
    """Opening and closing balances from a balance-after column, whichever way the rows run.

    Exports list movements oldest first or newest first; the balances tell which: oldest first,
    each balance is the one above plus this row's amount; newest first, the one below plus the
    amount of the row below.
    """
    if not running:
        return None
    amounts = [entry.signed_minor for entry in entries]
    balances = [balance for _, balance in running]
    pairs = range(1, len(balances))
    if all(balances[i] == balances[i - 1] + amounts[i] for i in pairs):
        return {"OPBD": balances[0] - amounts[0], "CLBD": balances[-1]}
    if all(balances[i - 1] == balances[i] + amounts[i - 1] for i in pairs):
        return {"OPBD": balances[-1] - amounts[-1], "CLBD": balances[0]}
    first = next(i for i in pairs if balances[i] != balances[i - 1] + amounts[i])
    raise StatementParseError(
        "the balance after this row is not the balance above plus its amount "
        "(and the rows do not run newest first either)",
        row=running[first][0],
    )


def _account(identification: str | None, currency: str | None) -> Account:
    if identification is None:
        return Account(currency=currency)
    compact = identification.replace(" ", "").upper()
    if _IBAN.fullmatch(compact):
        return Account(iban=compact, currency=currency)
    return Account(other_id=identification, currency=currency)
