"""Mapped CSV statements: columns, separators, dates, exact amounts, and row-numbered errors."""

from __future__ import annotations

from datetime import date

import pytest

from settlement.statements import (
    DEFAULT_CSV_MAPPING,
    CsvMapping,
    CsvMappingError,
    Party,
    Remittance,
    StatementParseError,
    parse_csv,
    parse_statement_file,
)

GOOD = (
    "booking_date,value_date,amount,currency,reference,counterparty,description\n"
    "2024-03-01,2024-03-01,1500.00,CNY,BK-1,Weihai Trading Co.,Order 17\n"
    '2024-03-02,,-250.5,CNY,BK-2,Busan Logistics,"Freight, March"\n'
    "2024-03-03,2024-03-04,0.01,CNY,BK-3,,\n"
)

# A German bank export: semicolons, comma decimals, dot grouping, S/H for debit/credit.
GERMAN = CsvMapping(
    booking_date="Buchungstag",
    value_date="Valuta",
    amount="Betrag",
    credit_debit="S/H",
    credit_values=("H",),
    debit_values=("S",),
    fixed_currency="EUR",
    counterparty="Empfänger/Zahlungspflichtiger",
    counterparty_account="IBAN",
    description="Verwendungszweck",
    balance_after="Saldo",
    account="DE89 3704 0044 0532 0130 00",
    delimiter=";",
    decimal_separator=",",
    thousands_separator=".",
    date_format="%d.%m.%Y",
)
GERMAN_FILE = (
    "Buchungstag;Valuta;Betrag;S/H;Saldo;Empfänger/Zahlungspflichtiger;IBAN;Verwendungszweck\n"
    "01.03.2024;01.03.2024;1.234,56;H;2.234,56;Weihai Trading;CN12 3456 7890 1234 5678 90;"
    "RE 2024-17\n"
    "04.03.2024;05.03.2024;34,56;s;2.200,00;Bank;;Kontoführung\n"
)


def refused(data: str | bytes, mapping: CsvMapping = DEFAULT_CSV_MAPPING) -> str:
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(StatementParseError) as caught:
        parse_statement_file(raw, csv_mapping=mapping)
    return str(caught.value)


def test_good_file_with_the_default_mapping() -> None:
    (statement,) = parse_statement_file(GOOD.encode(), csv_mapping=DEFAULT_CSV_MAPPING)

    assert statement.format == "csv"
    assert statement.statement_id.startswith("csv-")
    assert statement.account.currency == "CNY"
    assert statement.balances == ()
    assert [
        (e.index, e.amount_minor, e.credit_debit, e.booking_date, e.value_date)
        for e in statement.entries
    ] == [
        (0, 150000, "CRDT", date(2024, 3, 1), date(2024, 3, 1)),
        (1, 25050, "DBIT", date(2024, 3, 2), None),
        (2, 1, "CRDT", date(2024, 3, 3), date(2024, 3, 4)),
    ]
    first, second, third = statement.entries
    assert first.account_servicer_reference == "BK-1"
    assert first.counterparty == Party(name="Weihai Trading Co.")
    assert second.remittance == Remittance(unstructured=("Freight, March",))
    assert (third.counterparty, third.remittance) == (None, Remittance())
    assert second.as_dict()["amount"] == "250.50"
    assert (second.stated_amount, second.status) == ("-250.5", "BOOK")


def test_statement_id_is_stable_for_the_same_bytes() -> None:
    once = parse_csv(GOOD.encode(), DEFAULT_CSV_MAPPING)
    again = parse_csv(GOOD.encode(), DEFAULT_CSV_MAPPING)
    other = parse_csv(GOOD.replace("BK-3", "BK-4").encode(), DEFAULT_CSV_MAPPING)

    assert once.statement_id == again.statement_id != other.statement_id


def test_semicolons_comma_decimals_indicator_column_and_running_balance() -> None:
    statement = parse_csv(GERMAN_FILE.encode(), GERMAN)

    assert statement.account.iban == "DE89370400440532013000"
    assert [(e.amount_minor, e.credit_debit, e.currency) for e in statement.entries] == [
        (123456, "CRDT", "EUR"),
        (3456, "DBIT", "EUR"),
    ]
    assert statement.entries[0].counterparty == Party(
        name="Weihai Trading", iban="CN12345678901234567890"
    )
    assert statement.entries[1].remittance.unstructured == ("Kontoführung",)
    opening, closing = statement.opening_balance, statement.closing_balance
    assert opening is not None
    assert closing is not None
    assert (opening.amount_minor, opening.credit_debit, opening.date) == (
        100000,
        "CRDT",
        date(2024, 3, 1),
    )
    assert (closing.amount_minor, closing.date) == (220000, date(2024, 3, 4))
    assert closing.as_dict()["amount"] == "2200.00"


def test_running_balance_of_a_newest_first_export() -> None:
    lines = GERMAN_FILE.splitlines()
    newest_first = "\n".join([lines[0], lines[2], lines[1]]) + "\n"

    statement = parse_csv(newest_first.encode(), GERMAN)

    assert [e.amount_minor for e in statement.entries] == [3456, 123456]
    assert statement.opening_balance is not None
    assert statement.closing_balance is not None
    assert statement.opening_balance.amount_minor == 100000
    assert statement.closing_balance.amount_minor == 220000


def test_running_balance_that_does_not_add_up_is_refused_at_its_row() -> None:
    assert refused(GERMAN_FILE.replace("2.200,00", "2.200,01"), GERMAN) == (
        "row 3: the balance after this row is not the balance above plus its amount "
        "(and the rows do not run newest first either)"
    )


def test_balances_given_in_the_mapping_must_add_up() -> None:
    mapping = CsvMapping(
        fixed_currency="KRW",
        opening_balance="-1000",
        closing_balance="149000",
        opening_balance_date=date(2024, 2, 29),
    )
    statement = parse_csv(b"booking_date,amount\n2024-03-01,150000\n", mapping)

    assert statement.opening_balance is not None
    assert statement.closing_balance is not None
    assert (statement.opening_balance.amount_minor, statement.opening_balance.credit_debit) == (
        1000,
        "DBIT",
    )
    assert statement.opening_balance.date == date(2024, 2, 29)
    assert statement.closing_balance.as_dict()["amount"] == "149000"
    bad = CsvMapping(fixed_currency="KRW", opening_balance="0", closing_balance="1")
    assert refused(b"booking_date,amount\n2024-03-01,150000\n", bad) == (
        "the closing balance 1 KRW is not the opening balance 0 plus the entries' net 150000"
    )


def test_bad_date_names_its_row_and_column() -> None:
    assert refused(GOOD.replace("2024-03-02,,", "2024-02-30,,")) == (
        "row 3, column 'booking_date': '2024-02-30' is not a date in the format '%Y-%m-%d'"
    )
    assert refused(GOOD.replace("2024-03-04", "04/03/2024")) == (
        "row 4, column 'value_date': '04/03/2024' is not a date in the format '%Y-%m-%d'"
    )


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("12.5x", "'12.5x' is not an amount with decimal separator '.'"),
        ('"1,500.00"', "'1,500.00' is not an amount with decimal separator '.'"),
        ("1e3", "'1e3' is not an amount with decimal separator '.'"),
        ("--3", "'--3' is not an amount with decimal separator '.'"),
        ("", "is empty"),
    ],
)
def test_bad_amount_names_its_row(amount: str, message: str) -> None:
    data = GOOD.replace("-250.5", amount)

    assert refused(data) == f"row 3, column 'amount': {message}"


def test_missing_required_column() -> None:
    data = GOOD.replace("reference,", "ref,")

    assert refused(data) == (
        "row 1: the header lacks column 'reference' named by the CSV mapping; found "
        "'booking_date', 'value_date', 'amount', 'currency', 'ref', 'counterparty', 'description'"
    )


def test_krw_with_decimals_is_refused_not_rounded() -> None:
    mapping = CsvMapping(fixed_currency="KRW")

    assert refused(b"booking_date,amount\n2024-03-01,150000\n2024-03-02,1500.5\n", mapping) == (
        "row 3, column 'amount': KRW has 0 decimal places; 1500.5 would have to be rounded"
    )
    assert refused(
        b"booking_date,amount\n2024-03-01,0.001\n", CsvMapping(fixed_currency="CNY")
    ) == ("row 2, column 'amount': CNY has 2 decimal places; 0.001 would have to be rounded")


def test_surplus_zero_decimals_are_exact() -> None:
    statement = parse_csv(
        b"booking_date,amount\n2024-03-01,150000.00\n", CsvMapping(fixed_currency="KRW")
    )

    assert statement.entries[0].amount_minor == 150000


def test_unknown_currency_in_a_row() -> None:
    assert refused(GOOD.replace("0.01,CNY", "0.01,XXY")) == (
        "row 4, column 'currency': unknown currency 'XXY': its ISO 4217 minor unit is not known "
        "here (known: AED, AUD, BHD, BRL, CAD, CHF, CLP, CNY, CZK, DKK, EUR, GBP, HKD, HUF, IDR, "
        "ILS, INR, ISK, JOD, JPY, KRW, KWD, MOP, MXN, MYR, NOK, NZD, OMR, PHP, PLN, RON, RUB, SAR, "
        "SEK, SGD, THB, TND, TRY, TWD, USD, VND, ZAR)"
    )


def test_one_currency_per_statement() -> None:
    assert refused(GOOD.replace("1500.00,CNY", "1500,KRW")) == (
        "row 3, column 'currency': currency CNY differs from KRW of the rows above; "
        "a statement has one currency"
    )


def test_indicator_column_problems() -> None:
    assert refused(GERMAN_FILE.replace(";H;", ";X;"), GERMAN) == (
        "row 2, column 'S/H': 'X' is neither a credit (H) nor a debit (S)"
    )
    assert refused(GERMAN_FILE.replace(";34,56;", ";-34,56;"), GERMAN) == (
        "row 3, column 'Betrag': '-34,56' carries a sign, but the direction is the 'S/H' column's"
    )


def test_comma_decimal_file_refuses_a_dot_where_no_grouping_is_declared() -> None:
    mapping = CsvMapping(fixed_currency="EUR", delimiter=";", decimal_separator=",")

    assert refused(b"booking_date;amount\n2024-03-01;1.234,56\n", mapping) == (
        "row 2, column 'amount': '1.234,56' is not an amount with decimal separator ','"
    )


def test_ragged_row_and_stray_quote() -> None:
    assert refused(GOOD + "2024-03-05,,1.00,CNY\n") == (
        "row 5: has 4 fields, the header has 7 (delimiter ',')"
    )
    assert refused(
        b'booking_date,amount\n2024-03-01,"1.00\n', CsvMapping(fixed_currency="EUR")
    ) == ("row 2: not readable as CSV: unexpected end of data")


def test_blank_lines_are_skipped_but_counted() -> None:
    data = GOOD.replace("\n2024-03-02", "\n\n2024-03-02").replace("2024-03-03", "2024-13-03")

    assert refused(data) == (
        "row 5, column 'booking_date': '2024-13-03' is not a date in the format '%Y-%m-%d'"
    )


def test_header_only_and_empty_files() -> None:
    statement = parse_csv(b"booking_date,amount\n", CsvMapping(fixed_currency="EUR"))

    assert (statement.entries, statement.account.currency) == ((), "EUR")
    assert refused(b"", CsvMapping(fixed_currency="EUR")) == "the file is empty"
    assert refused(b"\n\n", CsvMapping(fixed_currency="EUR")) == "the file is empty"


def test_byte_order_mark_and_other_encodings() -> None:
    statement = parse_csv(b"\xef\xbb\xbf" + GOOD.encode(), DEFAULT_CSV_MAPPING)
    assert len(statement.entries) == 3

    latin = CsvMapping(fixed_currency="EUR", description="text", encoding="latin-1")
    statement = parse_csv(
        "booking_date,amount,text\n2024-03-01,1,Gebühr\n".encode("latin-1"), latin
    )
    assert statement.entries[0].remittance.unstructured == ("Gebühr",)

    assert refused(
        b"booking_date,amount\n2024-03-01,\xff1\n", CsvMapping(fixed_currency="EUR")
    ) == ("the file is not utf-8 text (byte 31); set the CSV mapping's encoding")


def test_mapping_from_json_object() -> None:
    mapping = CsvMapping.from_dict(
        {
            "booking_date": "Datum",
            "amount": "Betrag",
            "credit_debit": "S/H",
            "credit_values": ["H"],
            "debit_values": ["S"],
            "fixed_currency": "EUR",
            "closing_balance": "10.00",
            "closing_balance_date": "2024-03-31",
        }
    )

    assert mapping.credit_values == ("H",)
    assert mapping.closing_balance_date == date(2024, 3, 31)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"amout": "x", "fixed_currency": "EUR"}, "CSV mapping: unknown key amout; known keys: "),
        ({"fixed_currency": "EUR", "delimiter": ";;"}, "CSV mapping: delimiter ';;' is not one"),
        ({"fixed_currency": "EUR", "decimal_separator": ";"}, "CSV mapping: decimal_separator"),
        ({}, "CSV mapping: give either a currency column or a fixed_currency, exactly one"),
        (
            {"currency": "ccy", "fixed_currency": "EUR"},
            "CSV mapping: give either a currency column or a fixed_currency, exactly one",
        ),
        ({"fixed_currency": "XXY"}, "CSV mapping: fixed_currency: unknown currency 'XXY'"),
        ({"fixed_currency": "EUR", "amount": 3}, "CSV mapping: amount must be a string or null"),
        ({"fixed_currency": "EUR", "amount": None}, "CSV mapping: amount must name a column"),
        (
            {"fixed_currency": "EUR", "opening_balance": "1,5"},
            "CSV mapping: opening_balance: '1,5'",
        ),
        (
            {"fixed_currency": "EUR", "opening_balance_date": "31.03.2024"},
            "CSV mapping: opening_balance_date must be a date written YYYY-MM-DD",
        ),
        (
            {"fixed_currency": "EUR", "credit_debit": "dc", "debit_values": ["C"]},
            "CSV mapping: credit_values and debit_values must both be given and not overlap",
        ),
        (
            {"fixed_currency": "EUR", "decimal_separator": ",", "thousands_separator": ","},
            "CSV mapping: thousands_separator ',' cannot be used with decimal_separator ','",
        ),
        ({"fixed_currency": "EUR", "encoding": "klingon"}, "CSV mapping: unknown encoding"),
    ],
)
def test_bad_mappings_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(CsvMappingError) as caught:
        CsvMapping.from_dict(data)
    assert str(caught.value).startswith(message)
