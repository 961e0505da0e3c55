"""camt.053 parsing, checked field by field against an independent parser's output.

The samples and their ``*.expected.json`` (genkgo/camt, MIT, serialised getter by getter) live in
``tests/settlement/data/camt053``. The adapter below turns both that serialisation and our
``Statement`` into the same plain dicts, so a mismatch names the field.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.statements import (
    CURRENCY_EXPONENTS,
    MAX_FILE_BYTES,
    BankTransactionCode,
    Party,
    Statement,
    StatementParseError,
    format_minor,
    parse_camt053,
    parse_major,
    parse_statement_file,
)
from settlement.statements.model import decimal_to_minor

DATA = Path(__file__).resolve().parent / "data" / "camt053"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "camt053"
SAMPLES = [
    "camt053.v2.minimal",
    "camt053.v2.multi.statement",
    "camt053.v2.five.decimals",
    "camt053.v3",
    "camt053.v4",
    "camt053.v8",
]
# The serialiser writes an object it has already written as this marker.
SEEN = "__RECURSIVITY__"
# genkgo names balances by role; these are the ISO codes it reads them from.
ORACLE_BALANCE_TYPES = {
    "opening": "OPBD",
    "closing": "CLBD",
    "opening_available": "OPAV",
    "closing_available": "CLAV",
}


def sample(name: str) -> bytes:
    return (DATA / f"{name}.xml").read_bytes()


def oracle(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((DATA / f"{name}.expected.json").read_text())
    return result


def parse(name: str) -> list[Statement]:
    return parse_statement_file(sample(name), filename=f"{name}.xml")


def resolve(items: list[Any], single: Any) -> list[Any]:
    """A list getter whose only element was written out by the matching single getter."""
    if items == [SEEN]:
        return [single]
    assert SEEN not in items, items
    return items


# --- the oracle side -------------------------------------------------------------------------


def oracle_money(money: dict[str, Any] | None) -> tuple[int, str] | None:
    if money is None:
        return None
    return int(money["getAmount"]), money["getCurrency"]["getCode"]


def oracle_instant(value: dict[str, Any] | None) -> str | None:
    return None if value is None else str(value["0"])


def oracle_code(code: dict[str, Any] | None) -> tuple[str | None, ...] | None:
    if code is None:
        return None
    domain = code["getDomain"]
    proprietary = code["getProprietary"]
    family = None if domain is None else domain["getFamily"]
    result = (
        None if domain is None else domain["getCode"],
        None if family is None else family["getCode"],
        None if family is None else family["getSubFamilyCode"],
        None if proprietary is None else proprietary["getCode"],
        None if proprietary is None else proprietary["getIssuer"] or None,
    )
    # An absent code is written as an object with nothing in it.
    return None if result == (None,) * 5 else result


def oracle_record(record: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    account = record["getAccount"]
    return {
        "message_id": header["getMessageId"],
        "message_created_at": oracle_instant(header["getCreatedOn"]),
        "statement_id": record["getId"],
        "created_at": oracle_instant(record["getCreatedOn"]),
        "electronic_sequence_number": record["getElectronicSequenceNumber"],
        "legal_sequence_number": record["getLegalSequenceNumber"],
        "copy_duplicate": record["getCopyDuplicateIndicator"],
        "additional_info": record["getAdditionalInformation"],
        "account_iban": account["getIban"]["getIban"] if "getIban" in account else None,
        "account_identification": account["getIdentification"],
        "balances": [
            (
                ORACLE_BALANCE_TYPES[balance["getType"]],
                oracle_money(balance["getAmount"]),
                oracle_instant(balance["getDate"]),
            )
            for balance in record["getBalances"]
        ],
        "entry_count": len(record["getEntries"]),
    }


def oracle_entry(entry: dict[str, Any]) -> dict[str, Any]:
    details = resolve(entry["getTransactionDetails"], entry["getTransactionDetail"])
    detail = entry["getTransactionDetail"]
    reference = detail["getReference"] or {}
    remittance = detail["getRemittanceInformation"]
    unstructured = resolve(remittance["getUnstructuredBlocks"], remittance["getUnstructuredBlock"])
    creditor_reference = remittance["getCreditorReferenceInformation"]
    return {
        "index": entry["getIndex"],
        "amount": oracle_money(entry["getAmount"]),
        "credit_debit": entry["getCreditDebitIndicator"],
        "status": entry["getStatus"],
        "reversal": entry["getReversalIndicator"],
        "booking": oracle_instant(entry["getBookingDate"]),
        "value": oracle_instant(entry["getValueDate"]),
        "account_servicer_reference": entry["getAccountServicerReference"],
        "entry_reference": entry["getReference"],
        "additional_info": entry["getAdditionalInfo"] or None,
        "bank_transaction_code": oracle_code(entry["getBankTransactionCode"]),
        "transaction_count": len(details),
        "end_to_end_id": reference.get("getEndToEndId"),
        "instruction_id": reference.get("getInstructionId"),
        "transaction_id": reference.get("getTransactionId"),
        "proprietary_references": [
            (item["getType"], item["getReference"]) for item in reference["getProprietaries"]
        ],
        "transaction_amount": oracle_money(detail["getAmount"]),
        "transaction_credit_debit": detail["getCreditDebitIndicator"],
        "transaction_code": oracle_code(detail["getBankTransactionCode"]),
        "remittance_unstructured": [block["getMessage"] for block in unstructured],
        "creditor_reference": None
        if creditor_reference is None
        else (creditor_reference["getCode"], creditor_reference["getRef"]),
        "related_parties": sorted(
            (
                party["getRelatedPartyType"]["__CLASS__"].rpartition("\\")[2],
                party["getRelatedPartyType"]["getName"],
                None if party["getAccount"] is None else party["getAccount"]["getIdentification"],
            )
            for party in detail["getRelatedParties"]
        ),
    }


# --- our side, in the oracle's terms ---------------------------------------------------------


def instant(on: date | None, at: datetime | None) -> str | None:
    """A date or date-time as genkgo writes it: the UTC instant, a date at midnight UTC."""
    if at is not None:
        return at.astimezone(UTC).isoformat()
    return None if on is None else f"{on.isoformat()}T00:00:00+00:00"


def signed(minor: int, credit_debit: str) -> int:
    return minor if credit_debit == "CRDT" else -minor


def code_tuple(code: BankTransactionCode | None) -> tuple[str | None, ...] | None:
    if code is None:
        return None
    return (
        code.domain,
        code.family,
        code.subfamily,
        code.proprietary_code,
        code.proprietary_issuer,
    )


def our_record(statement: Statement) -> dict[str, Any]:
    account = statement.account
    return {
        "message_id": statement.message_id,
        "message_created_at": instant(None, statement.message_created_at),
        "statement_id": statement.statement_id,
        "created_at": instant(None, statement.created_at),
        "electronic_sequence_number": None
        if statement.electronic_sequence_number is None
        else str(statement.electronic_sequence_number),
        "legal_sequence_number": None
        if statement.legal_sequence_number is None
        else str(statement.legal_sequence_number),
        "copy_duplicate": statement.copy_duplicate,
        "additional_info": statement.additional_info,
        "account_iban": account.iban,
        "account_identification": account.identification,
        "balances": [
            (
                balance.type_code,
                (balance.signed_minor, balance.currency),
                instant(balance.date, balance.date_time),
            )
            for balance in statement.balances
        ],
        "entry_count": len(statement.entries),
    }


def parties(creditor: Party | None, debtor: Party | None) -> list[tuple[str, Any, Any]]:
    found = [("Creditor", creditor), ("Debtor", debtor)]
    return sorted(
        (role, party.name, party.account)
        for role, party in found
        if party is not None and (party.name is not None or party.account is not None)
    )


def our_entry(statement: Statement, index: int) -> dict[str, Any]:
    entry = statement.entries[index]
    detail = entry.transactions[0]
    amount = detail.amount_minor
    return {
        "index": entry.index,
        "amount": (signed(entry.amount_minor, entry.credit_debit), entry.currency),
        "credit_debit": entry.credit_debit,
        "status": entry.status,
        "reversal": entry.reversal,
        "booking": instant(entry.booking_date, entry.booking_date_time),
        "value": instant(entry.value_date, entry.value_date_time),
        "account_servicer_reference": entry.account_servicer_reference,
        "entry_reference": entry.entry_reference,
        "additional_info": entry.additional_info,
        "bank_transaction_code": code_tuple(entry.bank_transaction_code),
        "transaction_count": len(entry.transactions),
        "end_to_end_id": entry.end_to_end_id,
        "instruction_id": entry.instruction_id,
        "transaction_id": entry.transaction_id,
        "proprietary_references": [
            (ref.type, ref.reference) for ref in detail.proprietary_references
        ],
        "transaction_amount": None
        if amount is None or detail.currency is None
        else (signed(amount, detail.credit_debit or "CRDT"), detail.currency),
        "transaction_credit_debit": detail.credit_debit,
        "transaction_code": code_tuple(detail.bank_transaction_code),
        "remittance_unstructured": list(entry.remittance.unstructured),
        "creditor_reference": None
        if entry.remittance.creditor_reference is None
        else (entry.remittance.creditor_reference_type, entry.remittance.creditor_reference),
        "related_parties": parties(detail.creditor, detail.debtor),
    }


def by_id(statements: list[Statement]) -> dict[str, Statement]:
    return {statement.statement_id: statement for statement in statements}


# --- against the oracle ----------------------------------------------------------------------


def test_repository_copy_is_the_shared_oracle() -> None:
    if not SHARED.is_dir():
        pytest.skip("the shared oracle directory is not beside this checkout")
    for path in sorted(SHARED.iterdir()):
        assert (DATA / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize("name", SAMPLES)
def test_statements_match_oracle(name: str) -> None:
    expected = oracle(name)
    statements = parse(name)

    assert len(statements) == len(expected["getRecords"])
    ours = by_id(statements)
    for entry in expected["getEntries"]:
        record = entry["getRecord"]
        assert our_record(ours[record["getId"]]) == oracle_record(
            record, expected["getGroupHeader"]
        )


@pytest.mark.parametrize("name", SAMPLES)
def test_entries_match_oracle(name: str) -> None:
    expected = oracle(name)
    ours = by_id(parse(name))

    # The oracle lists entries keyed by their index within a statement, so of several statements
    # only the last one's entry at each index survives; each is still matched to its statement.
    assert expected["getEntries"], "the oracle lists no entries"
    for entry in expected["getEntries"]:
        statement = ours[entry["getRecord"]["getId"]]
        assert our_entry(statement, entry["getIndex"]) == oracle_entry(entry)


def test_multi_statement_keeps_both_statements_in_order() -> None:
    first, second = parse("camt053.v2.multi.statement")

    # The first statement is not in the oracle (see above); what the file says, read directly.
    assert [first.statement_id, second.statement_id] == [
        "253EURNL26VAYB8060476890",
        "254EURNL26VAYB8060476890",
    ]
    assert first.electronic_sequence_number == 12312
    assert second.electronic_sequence_number is None
    assert first.opening_balance is not None
    assert first.closing_balance is not None
    assert (first.opening_balance.amount_minor, first.closing_balance.amount_minor) == (1815, 2700)
    (entry,) = first.entries
    assert (entry.index, entry.amount_minor, entry.credit_debit) == (0, 885, "CRDT")
    assert entry.end_to_end_id == "000000001"
    assert entry.remittance.unstructured == ("Transaction Description 1",)
    assert entry.transactions[0].creditor == Party(name="Company Name 1", iban="NL56AGDH9619008421")
    # A credit's counterparty is its debtor, which this entry does not name.
    assert entry.counterparty is None
    assert [e.index for e in second.entries] == [0]


def test_surplus_zero_decimals_are_exact_as_the_oracle_shows() -> None:
    expected = oracle("camt053.v2.five.decimals")
    (statement,) = parse("camt053.v2.five.decimals")
    (entry,) = statement.entries
    oracle_amounts = [oracle_money(e["getAmount"]) for e in expected["getEntries"]]

    assert oracle_amounts == [(entry.amount_minor, "EUR")]
    assert (entry.stated_amount, entry.amount_minor, entry.rounded) == ("8.850", 885, False)
    assert entry.as_dict()["amount"] == "8.85"
    assert [(b.stated_amount, b.amount_minor, b.rounded) for b in statement.balances] == [
        ("18.150", 1815, False),
        ("27.050", 2705, False),
    ]


# --- what the oracle does not cover ----------------------------------------------------------


def test_v8_account_owner_booking_time_and_pagination() -> None:
    (statement,) = parse("camt053.v8")
    (entry,) = statement.entries

    assert statement.format == "camt.053.001.08"
    assert statement.account.iban is None
    assert statement.account.other_id == "NL26VAYB8060476890"
    assert statement.account.owner_name == "FINPETROL"
    assert statement.account.servicer_name == "AAAA BANKEN"
    assert (statement.page_number, statement.last_page) == (2, True)
    assert entry.booking_date == date(2014, 12, 31)
    assert entry.booking_date_time == datetime(
        2014, 12, 31, 13, 15, tzinfo=timezone(timedelta(hours=1))
    )
    assert entry.status == "BOOK"
    assert entry.counterparty == Party(name="NAME NAME", iban="NL56AGDH9619008421")


def test_v3_servicer_bic_account_currency_and_agents() -> None:
    (statement,) = parse("camt053.v3")
    detail = statement.entries[0].transactions[0]

    assert statement.account.servicer_bic == "KREDBEBB"
    assert statement.account.currency == "EUR"
    assert statement.account.owner_name == "COMPANY BVBA"
    assert detail.debtor is not None
    assert detail.debtor.agent_bic == "KREDBEBB"
    assert (detail.amount_minor, detail.currency, detail.stated_amount) == (10575, "EUR", "105.750")


def test_period_of_the_statement() -> None:
    (statement,) = parse("camt053.v2.minimal")
    plus_one = timezone(timedelta(hours=1))

    assert statement.from_date_time == datetime(2007, 10, 18, 8, 0, tzinfo=plus_one)
    assert statement.to_date_time == datetime(2007, 10, 18, 12, 30, tzinfo=plus_one)
    assert statement.account.currency == "EUR"


def test_json_amounts_are_decimal_strings_with_the_currency_precision() -> None:
    (statement,) = parse("camt053.v2.minimal")
    data = statement.as_dict()

    assert [
        (b["type"], b["amount"], b["amount_minor"], b["currency"]) for b in data["balances"]
    ] == [
        ("OPBD", "18.15", 1815, "EUR"),
        ("CLBD", "27.00", 2700, "SEK"),
        ("OPAV", "35.00", 3500, "CHF"),
        ("CLAV", "2700", 2700, "JPY"),
    ]
    assert data["entries"][0]["booking_date"] == "2014-12-31"
    assert json.loads(statement.to_json()) == data


def minimal_with(old: str, new: str, *, count: int = 1) -> bytes:
    text = sample("camt053.v2.minimal").decode()
    assert old in text, old
    return text.replace(old, new, count).encode()


def test_batch_entry_lists_each_transaction_and_leaves_entry_references_empty() -> None:
    text = sample("camt053.v2.minimal").decode()
    start, end = text.index("<TxDtls>"), text.index("</TxDtls>") + len("</TxDtls>")
    second = text[start:end].replace("<Ref>100</Ref>", "<Ref>101</Ref>")
    data = (text[:end] + second + text[end:]).encode()

    (statement,) = parse_camt053(data)
    (entry,) = statement.entries

    assert len(entry.transactions) == 2
    assert [t.proprietary_references[0].reference for t in entry.transactions] == ["100", "101"]
    assert (entry.end_to_end_id, entry.counterparty, entry.remittance.creditor_reference) == (
        None,
        None,
        None,
    )


# --- rounding --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stated", "minor", "rounded"),
    [
        ("8.85", 885, False),
        ("8.85000", 885, False),
        ("8.855", 886, True),
        ("8.845", 884, True),
        ("8.84501", 885, True),
        ("0.005", 0, True),
    ],
)
def test_surplus_decimals_round_half_even_and_say_so(
    stated: str, minor: int, rounded: bool
) -> None:
    (statement,) = parse_camt053(minimal_with(">8.85<", f">{stated}<"))
    entry = statement.entries[0]

    assert (entry.amount_minor, entry.rounded, entry.stated_amount) == (minor, rounded, stated)


def test_zero_decimal_currency_rounds_half_even() -> None:
    data = minimal_with('<Amt Ccy="JPY">2700</Amt>', '<Amt Ccy="JPY">2700.5</Amt>')
    (statement,) = parse_camt053(data)
    balance = statement.balance("CLAV")

    assert balance is not None
    assert (balance.amount_minor, balance.rounded) == (2700, True)


def test_more_than_five_decimals_is_not_an_iso_20022_amount() -> None:
    with pytest.raises(StatementParseError) as caught:
        parse_camt053(minimal_with(">8.85<", ">8.850001<"))
    assert str(caught.value) == "line 91, Stmt[1]/Ntry[1]/Amt: '8.850001' has more than 5 decimals"


@pytest.mark.parametrize("currency", sorted(CURRENCY_EXPONENTS))
@given(minor=st.integers(min_value=-(10**17) + 1, max_value=10**17 - 1))
def test_formatting_minor_units_and_parsing_back_is_the_identity(currency: str, minor: int) -> None:
    text = format_minor(minor, currency)

    assert parse_major(text, currency) == minor
    assert text.count(".") == (1 if CURRENCY_EXPONENTS[currency] else 0)


def test_exponent_table_agrees_with_iso_4217_as_py_moneyed_has_it() -> None:
    import moneyed

    for code, exponent in CURRENCY_EXPONENTS.items():
        assert len(str(moneyed.get_currency(code).sub_unit)) - 1 == exponent, code


def test_rounding_never_goes_through_float() -> None:
    # 0.285 is 0.28499999999999998 as a float; exact decimal arithmetic keeps the tie a tie.
    assert decimal_to_minor(Decimal("0.285"), "EUR", allow_rounding=True) == (28, True)
    assert decimal_to_minor(Decimal("0.275"), "EUR", allow_rounding=True) == (28, True)


# --- refused input ---------------------------------------------------------------------------


def refused(data: bytes) -> str:
    with pytest.raises(StatementParseError) as caught:
        parse_statement_file(data)
    return str(caught.value)


def test_the_wrong_sample_is_refused_for_holding_no_statement() -> None:
    assert refused(sample("camt053.v2.wrong")) == (
        "line 3, BkToCstmrStmt: the document holds no statement (no Stmt element)"
    )


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">&lol2;</Document>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Document [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">&secret;</Document>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_doctype_with_entities_is_refused_before_parsing(data: bytes) -> None:
    assert refused(data) == (
        "the document contains a DOCTYPE declaration; DTDs and entities are refused"
    )


def test_doctype_is_refused_by_the_parser_too_when_the_byte_scan_cannot_see_it() -> None:
    utf16 = XXE.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"')

    assert refused(utf16.encode("utf-16")) == (
        "line 2: the document contains a DOCTYPE declaration; DTDs and entities are refused"
    )


def test_entity_declaration_without_doctype_is_refused() -> None:
    assert refused(b'<!ENTITY x "y"><Document/>') == (
        "the document contains an ENTITY declaration; DTDs and entities are refused"
    )


def test_not_xml_at_all() -> None:
    assert refused(b"this is not a statement") == (
        "the file is not XML, and reading it as CSV needs a CSV mapping of its columns"
    )
    with pytest.raises(StatementParseError) as caught:
        parse_statement_file(b"PK\x03\x04 zip", filename="statement.xml")
    assert str(caught.value) == "statement.xml is not XML: it does not start with '<'"


def test_malformed_xml() -> None:
    assert refused(b"<Document><Stmt></Document>") == (
        "line 1: not well-formed XML: mismatched tag (column 18)"
    )


@pytest.mark.parametrize(
    ("namespace", "message"),
    [
        (
            "urn:iso:std:iso:20022:tech:xsd:camt.052.001.02",
            "not a camt.053 statement: found a camt.052.001.02 document",
        ),
        (
            "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08",
            "not a camt.053 statement: found a camt.054.001.08 document",
        ),
        (
            "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03",
            "not a camt.053 statement: found a pain.001.001.03 document",
        ),
        (
            "urn:iso:std:iso:20022:tech:xsd:camt.053.001.01",
            "camt.053.001.01 is not supported; supported versions are camt.053.001.02 to "
            "camt.053.001.08",
        ),
        (
            "urn:iso:std:iso:20022:tech:xsd:camt.053.001.13",
            "camt.053.001.13 is not supported; supported versions are camt.053.001.02 to "
            "camt.053.001.08",
        ),
        (
            "http://example.com/statement",
            "not an ISO 20022 camt.053 document: the Document element has namespace "
            "'http://example.com/statement'",
        ),
    ],
)
def test_other_messages_and_versions_are_refused_by_name(namespace: str, message: str) -> None:
    data = minimal_with("urn:iso:std:iso:20022:tech:xsd:camt.053.001.02", namespace)

    assert refused(data) == message


def test_every_supported_version_is_accepted() -> None:
    for version in range(2, 9):
        namespace = f"urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version:02d}"
        (statement,) = parse_camt053(
            minimal_with("urn:iso:std:iso:20022:tech:xsd:camt.053.001.02", namespace)
        )
        assert statement.format == f"camt.053.001.{version:02d}"


def test_a_root_other_than_document_is_refused() -> None:
    assert refused(b"<html><body/></html>") == (
        "line 1: not an ISO 20022 camt.053 document: the root element is <html>"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '<Amt Ccy="EUR">8.85</Amt>',
            "",
            "line 90, Stmt[1]/Ntry[1]: Amt is missing",
        ),
        (
            ">8.85<",
            ">8,85<",
            "line 91, Stmt[1]/Ntry[1]/Amt: '8,85' is not a decimal amount",
        ),
        (
            ">8.85<",
            ">1E3<",
            "line 91, Stmt[1]/Ntry[1]/Amt: '1E3' is not a decimal amount",
        ),
        (
            ">8.85<",
            "><",
            "line 91, Stmt[1]/Ntry[1]/Amt: the amount is empty",
        ),
        (
            ">8.85<",
            ">-8.85<",
            "line 91, Stmt[1]/Ntry[1]/Amt: '-8.85' is negative; ISO 20022 amounts are unsigned "
            "(see CdtDbtInd)",
        ),
        (
            '<Amt Ccy="EUR">8.85',
            '<Amt Ccy="XYZ">8.85',
            "line 91, Stmt[1]/Ntry[1]/Amt: unknown currency 'XYZ': its ISO 4217 minor unit is "
            "not known here (known: " + ", ".join(sorted(CURRENCY_EXPONENTS)) + ")",
        ),
        (
            '<Amt Ccy="EUR">8.85',
            "<Amt>8.85",
            "line 91, Stmt[1]/Ntry[1]/Amt: the currency (Ccy) is missing",
        ),
        (
            '<Amt Ccy="EUR">18.15',
            '<Amt Ccy="EUR">1234567890123456789',
            "line 48, Stmt[1]/Bal[1]/Amt: '1234567890123456789' has more than 18 digits",
        ),
        (
            "<CdtDbtInd>CRDT</CdtDbtInd>\n                <RvslInd>",
            "<CdtDbtInd>CR</CdtDbtInd>\n                <RvslInd>",
            "line 92, Stmt[1]/Ntry[1]/CdtDbtInd: 'CR' is not a credit/debit indicator "
            "(CRDT or DBIT)",
        ),
        (
            "<Sts>BOOK</Sts>",
            "<Sts>DONE</Sts>",
            "line 94, Stmt[1]/Ntry[1]/Sts: 'DONE' is not an entry status (BOOK, FUTR, INFO, PDNG)",
        ),
        (
            "<Dt>2015-01-02</Dt>",
            "<Dt>2015-02-30</Dt>",
            "line 99, Stmt[1]/Ntry[1]/ValDt/Dt: '2015-02-30' is not a calendar date",
        ),
        (
            "<Dt>2015-01-02</Dt>",
            "<Dt>02.01.2015</Dt>",
            "line 99, Stmt[1]/Ntry[1]/ValDt/Dt: '02.01.2015' is not an ISO date (YYYY-MM-DD)",
        ),
        (
            "<Id>253EURNL26VAYB8060476890</Id>",
            "",
            "line 26, Stmt[1]: Id is missing",
        ),
        (
            "<IBAN>NL26VAYB8060476890</IBAN>",
            "",
            "line 37, Stmt[1]/Acct/Id: the account has neither an IBAN nor Othr/Id",
        ),
        (
            "<ElctrncSeqNb>12312</ElctrncSeqNb>",
            "<ElctrncSeqNb>12a</ElctrncSeqNb>",
            "line 28, Stmt[1]/ElctrncSeqNb: '12a' is not a whole number",
        ),
        (
            "<MsgId>CAMT053RIB000000000001</MsgId>",
            "",
            "line 4, GrpHdr: MsgId is missing",
        ),
    ],
)
def test_malformed_fields_are_refused_where_they_are(old: str, new: str, message: str) -> None:
    assert refused(minimal_with(old, new)) == message


def test_empty_file_is_refused() -> None:
    assert refused(b"") == "the file is empty"
    assert refused(b"  \n\t") == "the file is empty"
    with pytest.raises(StatementParseError, match=r"^the file is empty$"):
        parse_camt053(b"")


def test_file_over_the_size_cap_is_refused_unread() -> None:
    data = b"<Document>" + b" " * MAX_FILE_BYTES + b"</Document>"

    assert refused(data) == (
        f"the file has {len(data)} bytes; statements are limited to {MAX_FILE_BYTES} bytes"
    )


def test_errors_carry_their_location_as_fields() -> None:
    with pytest.raises(StatementParseError) as caught:
        parse_camt053(minimal_with(">8.85<", ">x<"))

    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.line, error.element, error.row) == (91, "Stmt[1]/Ntry[1]/Amt", None)
    assert error.reason == "'x' is not a decimal amount"


def test_parsing_imports_no_django() -> None:
    probe = (
        "import sys, settlement.statements; "
        "sys.exit(sorted(m for m in sys.modules if m.split('.')[0] == 'django') or 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )

    assert (result.returncode, result.stderr) == (0, "")


def test_an_unknown_encoding_is_a_parse_error() -> None:
    data = b'<?xml version="1.0" encoding="no-such-codec"?><Document/>'
    with pytest.raises(StatementParseError, match="encoding"):
        parse_camt053(data)
