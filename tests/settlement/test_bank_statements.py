"""Bank statements over HTTP: a bank uploads camt.053 or mapped CSV files, the operator reconciles
them with the ledger and works the exceptions queue. Every refusal is the error object, with
nothing stored."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from hub.models import Event, Participant
from settlement.ledger import TransferSpec, transfer_create, transfer_post
from settlement.models import (
    Account,
    BankStatement,
    ReconciliationException,
    ReconciliationRun,
    StatementLine,
    Transfer,
)
from settlement.statements import Entry, Statement, format_minor, parse_statement_file
from tests.conftest import Api, Tenant, error_of, row_counts

pytestmark = pytest.mark.django_db

DATA = Path(__file__).resolve().parent / "data" / "camt053"
SAMPLES = [
    "camt053.v2.minimal",
    "camt053.v2.multi.statement",
    "camt053.v2.five.decimals",
    "camt053.v3",
    "camt053.v4",
    "camt053.v8",
]
IBAN = "NL26VAYB8060476890"  # the account of every sample


def sample(name: str) -> bytes:
    return (DATA / f"{name}.xml").read_bytes()


def stored() -> dict[str, int]:
    models = (
        BankStatement,
        StatementLine,
        ReconciliationRun,
        ReconciliationException,
        Account,
        Transfer,
    )
    return {**row_counts(), **{model.__name__: model.objects.count() for model in models}}


def upload(
    api: Api,
    tenant: Tenant,
    data: bytes,
    filename: str = "statement.xml",
    idempotency_key: str | None = None,
    **fields: Any,
) -> Any:
    headers = {"Authorization": f"Bearer {tenant.key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    form = {"file": SimpleUploadedFile(filename, data), **fields}
    return api.client.post("/v1/bank_statements", form, headers=headers)


def mirror(owner: Participant, currency: str = "EUR", reference: str = IBAN) -> Account:
    return Account.objects.create(
        livemode=False, owner=owner, currency=currency, kind="bank_cash", reference=reference
    )


def lines_of(api: Api, tenant: Tenant, statement_id: str, **params: Any) -> list[dict[str, Any]]:
    response = api.get(
        f"/v1/bank_statements/{statement_id}/lines",
        key=tenant.key,
        params={"limit": 100, **params},
    )
    assert response.status_code == 200, response.content
    return list(response.json()["data"])


def _instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def _without_minor(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_minor(v) for k, v in value.items() if k != "amount_minor"}
    if isinstance(value, list):
        return [_without_minor(item) for item in value]
    return value


LINE_FIELDS = (
    "credit_debit",
    "stated_amount",
    "rounded",
    "reversal",
    "booking_date",
    "value_date",
    "account_servicer_reference",
    "entry_reference",
    "end_to_end_id",
    "instruction_id",
    "transaction_id",
    "bank_transaction_code",
    "counterparty",
    "additional_info",
)


def parsed_line(entry: Entry) -> dict[str, Any]:
    """What the API must show of a parsed entry."""
    raw = entry.as_dict()
    return {
        "index": entry.index,
        "amount": {"amount": format_minor(entry.amount_minor, entry.currency), "currency": "EUR"},
        "entry_status": entry.status,
        **{name: raw[name] for name in LINE_FIELDS},
        "booking_date_time": entry.booking_date_time,
        "value_date_time": entry.value_date_time,
        "remittance_information": raw["remittance_information"],
        "transactions": _without_minor(raw["transactions"]),
    }


def shown_line(line: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": line["index"],
        "amount": line["amount"],
        "entry_status": line["entry_status"],
        **{name: line[name] for name in LINE_FIELDS},
        "booking_date_time": _instant(line["booking_date_time"]),
        "value_date_time": _instant(line["value_date_time"]),
        "remittance_information": line["remittance_information"],
        "transactions": line["transactions"],
    }


def balance_of(statement: Statement, which: str) -> dict[str, Any] | None:
    balance = getattr(statement, which)
    if balance is None:
        return None
    return {
        "amount": format_minor(balance.signed_minor, balance.currency),
        "currency": balance.currency,
        "date": balance.date.isoformat(),
    }


# --- import --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_a_bank_imports_every_sample_and_the_lines_are_the_parsers(api, tenants, name):
    bank = tenants["bank"]
    account = mirror(bank.participant, reference="NL26 VAYB 8060 4768 90")
    parsed = parse_statement_file(sample(name), filename=f"{name}.xml")

    response = upload(api, bank, sample(name), f"{name}.xml")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["object"], body["filename"], body["created"], body["existing"]) == (
        "bank_statement_import",
        f"{name}.xml",
        len(parsed),
        0,
    )
    assert len(body["statements"]) == len(parsed)
    for shown, statement in zip(body["statements"], parsed, strict=True):
        assert shown["id"].startswith("bst_")
        assert {k: shown[k] for k in ("account", "bank", "uploaded_by", "currency")} == {
            "account": account.pk,
            "bank": bank.id,
            "uploaded_by": bank.id,
            "currency": "EUR",
        }
        assert shown["statement_id"] == statement.statement_id
        assert shown["format"] == statement.format
        assert shown["message_id"] == statement.message_id
        assert shown["account_identification"] == IBAN
        assert shown["entry_count"] == len(statement.entries)
        assert shown["opening_balance"] == balance_of(statement, "opening_balance")
        assert shown["closing_balance"] == balance_of(statement, "closing_balance")
        assert [b["type"] for b in shown["balances"]] == [b.type_code for b in statement.balances]
        assert shown["electronic_sequence_number"] == statement.electronic_sequence_number
        assert shown["reconciliation_run"] is None
        lines = lines_of(api, bank, shown["id"])
        assert [shown_line(line) for line in lines] == [parsed_line(e) for e in statement.entries]
        assert all(line["reconciliation"]["status"] == "unreconciled" for line in lines)
        # And what the bank sees later is what the upload answered.
        again = api.get(f"/v1/bank_statements/{shown['id']}", key=bank.key)
        assert again.json() == shown
    event = Event.objects.filter(type="bank_statement.imported").latest("pk")
    assert (event.participant_id, event.data["account"]) == (bank.id, account.pk)


def test_every_sample_on_one_account_is_its_own_statement(api, tenants):
    bank = tenants["bank"]
    mirror(bank.participant)
    for name in SAMPLES:
        assert upload(api, bank, sample(name), f"{name}.xml").status_code == 201
    # The samples share statement ids but not contents: each is stored once, seven in all.
    assert BankStatement.objects.count() == 7
    assert StatementLine.objects.count() == 7
    listed = api.get("/v1/bank_statements", key=bank.key, params={"limit": 100}).json()
    assert len(listed["data"]) == 7
    # The amounts are exact minor units: 8.850 EUR in the five-decimal sample is 885.
    five = BankStatement.objects.get(filename="camt053.v2.five.decimals.xml")
    assert list(five.lines.values_list("amount_minor", "rounded")) == [(885, False)]


def test_the_same_statement_twice_changes_nothing(api, tenants):
    bank = tenants["bank"]
    mirror(bank.participant)
    first = upload(api, bank, sample("camt053.v2.multi.statement"), "a.xml").json()
    before = stored()

    again = upload(api, bank, sample("camt053.v2.multi.statement"), "a-resent.xml")

    assert again.status_code == 200
    body = again.json()
    assert (body["created"], body["existing"]) == (0, 2)
    assert [s["id"] for s in body["statements"]] == [s["id"] for s in first["statements"]]
    assert body["statements"][0]["filename"] == "a.xml"  # the first import, unchanged
    assert stored() == before


def test_a_duplicate_copy_in_another_message_is_the_same_statement(api, tenants):
    bank = tenants["bank"]
    mirror(bank.participant)
    first = upload(api, bank, sample("camt053.v8"), "v8.xml").json()
    before = stored()
    copy = (
        sample("camt053.v8")
        .replace(b"<MsgId>CAMT053RIB000000000001<", b"<MsgId>RESENT-42<")
        .replace(b"<CpyDplctInd>CODU<", b"<CpyDplctInd>DUPL<")
    )

    response = upload(api, bank, copy, "v8-copy.xml")

    assert response.status_code == 200
    assert response.json()["statements"][0]["id"] == first["statements"][0]["id"]
    assert stored() == before


def test_an_idempotency_key_replays_the_upload(api, tenants):
    bank = tenants["bank"]
    mirror(bank.participant)
    first = upload(api, bank, sample("camt053.v3"), "v3.xml", idempotency_key="stmt-1")
    before = stored()

    retry = upload(api, bank, sample("camt053.v3"), "v3.xml", idempotency_key="stmt-1")

    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert stored() == before


def test_the_malformed_sample_is_refused_and_nothing_is_stored(api, tenants):
    bank = tenants["bank"]
    mirror(bank.participant)
    before = stored()

    response = upload(api, bank, sample("camt053.v2.wrong"), "camt053.v2.wrong.xml")

    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("statement_invalid", "file")
    assert error["message"] == (
        "camt053.v2.wrong.xml: line 3, BkToCstmrStmt: "
        "the document holds no statement (no Stmt element)"
    )
    assert stored() == before


def test_a_file_in_an_encoding_that_does_not_exist_is_refused(api, tenants):
    bank = tenants["bank"]
    mirror(bank.participant)
    before = stored()
    data = sample("camt053.v3").replace(b'encoding="UTF-8"', b'encoding="UTF-3"', 1)

    response = upload(api, bank, data, "v3.xml")

    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("statement_invalid", "file")
    assert error["message"] == "v3.xml: the XML's encoding cannot be read: unknown encoding: UTF-3"
    assert stored() == before


CSV = (
    b"Buchungstag;Betrag;S/H;Referenz;Empfaenger;Verwendungszweck\n"
    b"02.11.2026;1.500,00;H;E2E-1;Weihai Trading;Order 17\n"
    b"03.11.2026;250,50;S;PO-2;Busan Logistics;Freight, November\n"
)
CSV_MAPPING = {
    "booking_date": "Buchungstag",
    "amount": "Betrag",
    "credit_debit": "S/H",
    "credit_values": ["H"],
    "debit_values": ["S"],
    "fixed_currency": "CNY",
    "end_to_end_id": "Referenz",
    "counterparty": "Empfaenger",
    "description": "Verwendungszweck",
    "delimiter": ";",
    "decimal_separator": ",",
    "thousands_separator": ".",
    "date_format": "%d.%m.%Y",
    "account": "6222 0210 0000 1234",
    "opening_balance": "100.00",
    "closing_balance": "1349.50",
}


def test_a_mapped_csv_is_imported_on_the_account_it_names(api, tenants):
    bank = tenants["bank"]
    account = mirror(bank.participant, currency="CNY", reference="622202100000 1234")

    response = upload(
        api,
        bank,
        CSV,
        "movements.csv",
        csv_mapping=json.dumps(CSV_MAPPING),
        metadata=json.dumps({"batch": "2026-11"}),
    )

    assert response.status_code == 201, response.content
    [statement] = response.json()["statements"]
    assert statement["format"] == "csv"
    assert statement["account"] == account.pk
    assert statement["metadata"] == {"batch": "2026-11"}
    assert statement["opening_balance"] == {
        "amount": "100.00",
        "currency": "CNY",
        "date": "2026-11-02",
    }
    assert statement["closing_balance"] == {
        "amount": "1349.50",
        "currency": "CNY",
        "date": "2026-11-03",
    }
    assert (statement["period_start"], statement["period_end"]) == ("2026-11-02", "2026-11-03")
    lines = lines_of(api, bank, statement["id"])
    assert [
        (
            line["amount"],
            line["credit_debit"],
            line["booking_date"],
            line["reference"],
            line["counterparty"]["name"],
            line["remittance_information"]["unstructured"],
        )
        for line in lines
    ] == [
        ({"amount": "1500.00", "currency": "CNY"}, "CRDT", "2026-11-02", "E2E-1",
         "Weihai Trading", ["Order 17"]),
        ({"amount": "250.50", "currency": "CNY"}, "DBIT", "2026-11-03", "PO-2",
         "Busan Logistics", ["Freight, November"]),
    ]  # fmt: skip


def test_the_operator_imports_for_a_bank_and_only_that_bank_sees_it(api, tenants):
    bank, operator = tenants["bank"], tenants["operator"]
    account = mirror(bank.participant)

    response = upload(api, operator, sample("camt053.v4"), "v4.xml")

    assert response.status_code == 201
    [statement] = response.json()["statements"]
    assert (statement["bank"], statement["uploaded_by"]) == (bank.id, operator.id)
    assert statement["account"] == account.pk
    mine = api.get("/v1/bank_statements", key=bank.key).json()["data"]
    assert [s["id"] for s in mine] == [statement["id"]]
    other = tenants["other_bank"]
    assert api.get("/v1/bank_statements", key=other.key).json()["data"] == []
    hidden = api.get(f"/v1/bank_statements/{statement['id']}", key=other.key)
    assert (hidden.status_code, error_of(hidden)["code"]) == (404, "resource_missing")
    hidden = api.get(f"/v1/bank_statements/{statement['id']}/lines", key=other.key)
    assert hidden.status_code == 404


def _own_mirror(tenants: dict[str, Tenant]) -> dict[str, Any]:
    mirror(tenants["bank"].participant)
    return {}


def _other_banks_mirror(tenants: dict[str, Tenant]) -> dict[str, Any]:
    mirror(tenants["other_bank"].participant)
    return {}


def _other_banks_account(tenants: dict[str, Tenant]) -> dict[str, Any]:
    return {"account": mirror(tenants["other_bank"].participant).pk}


def _two_mirrors(tenants: dict[str, Tenant]) -> dict[str, Any]:
    mirror(tenants["bank"].participant)
    mirror(tenants["other_bank"].participant)
    return {}


def _merchant_account(tenants: dict[str, Tenant]) -> dict[str, Any]:
    account = Account.objects.create(
        livemode=False,
        owner=tenants["merchant"].participant,
        currency="EUR",
        kind="merchant_settlement",
    )
    return {"account": account.pk}


@pytest.mark.parametrize(
    ("caller", "setup", "fields", "status", "code", "param"),
    [
        # A bank cannot reach another bank's account, by id or by IBAN; others may not upload.
        ("bank", _other_banks_account, {}, 404, "resource_missing", "account"),
        ("bank", _other_banks_mirror, {}, 400,
         "account_unresolved", "account"),
        ("regulator", _own_mirror, {}, 403, "role_forbidden",
         None),
        ("merchant", _own_mirror, {}, 403, "role_forbidden",
         None),
        ("bank", lambda t: {"bank": t["other_bank"].id}, {}, 403, "bank_forbidden", "bank"),
        ("operator", _merchant_account, {}, 400, "account_kind_invalid", "account"),
        ("operator", lambda t: {"account": mirror(t["bank"].participant, "CNY").pk}, {}, 400,
         "currency_mismatch", "account"),
        ("operator", lambda t: {"account": mirror(t["bank"].participant, reference="X1").pk}, {},
         400, "account_mismatch", "account"),
        ("operator", _two_mirrors, {}, 400, "account_ambiguous", "account"),
        ("operator", lambda t: {**_own_mirror(t), "bank": t["other_bank"].id},
         {}, 400, "bank_mismatch", "bank"),
        ("operator", lambda t: {"bank": t["merchant"].id}, {}, 400, "bank_invalid", "bank"),
        ("operator", lambda t: {"bank": "par_nobody"}, {}, 404, "resource_missing", "bank"),
        ("bank", lambda t: {}, {}, 400, "account_unresolved", "account"),
        ("bank", _own_mirror, {"note": "x"}, 400,
         "parameter_unknown", "note"),
        ("bank", _own_mirror,
         {"metadata": '{"k": 1}'}, 400, "metadata_invalid", "metadata.k"),
        ("bank", _own_mirror,
         {"metadata": "{"}, 400, "parameter_invalid", "metadata"),
        ("bank", _own_mirror,
         {"csv_mapping": "[]"}, 400, "csv_mapping_invalid", "csv_mapping"),
    ],
    ids=[
        "bank-other-banks-account",
        "bank-other-banks-iban",
        "regulator",
        "merchant",
        "bank-names-another-bank",
        "not-bank-cash",
        "other-currency",
        "other-reference",
        "two-mirrors",
        "bank-not-the-holder",
        "bank-not-a-bank",
        "bank-unknown",
        "no-mirror",
        "unknown-field",
        "metadata-not-strings",
        "metadata-not-json",
        "mapping-not-an-object",
    ],
)  # fmt: skip
def test_uploads_that_are_refused_store_nothing(
    api, tenants, caller, setup, fields, status, code, param
):
    form = {**setup(tenants), **fields}
    before = stored()

    response = upload(api, tenants[caller], sample("camt053.v3"), "v3.xml", **form)

    assert response.status_code == status, response.content
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param)
    assert stored() == before


CSV_REFUSALS = [
    # (file, mapping, code, param, message part)
    (CSV, None, "statement_invalid", "file", "needs a CSV mapping"),
    (CSV, {**CSV_MAPPING, "colour": "x"}, "csv_mapping_invalid", "csv_mapping", "unknown key"),
    (CSV, {**CSV_MAPPING, "fixed_currency": "XYZ"}, "csv_mapping_invalid", "csv_mapping", "XYZ"),
    (CSV.replace(b"250,50", b"250,5x"), CSV_MAPPING, "statement_invalid", "file", "row 3"),
    (CSV.replace(b"PO-2", b"PO-\x002"), CSV_MAPPING, "statement_invalid", "file", "NUL"),
    (CSV.replace(b"03.11.2026", b"03.11.1066"), CSV_MAPPING, "statement_invalid", "file",
     "1066-11-03"),
    (b"", CSV_MAPPING, "statement_invalid", "file", "the file is empty"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "mapping", "code", "param", "part"), CSV_REFUSALS)
def test_csv_files_and_mappings_that_cannot_be_read(api, tenants, data, mapping, code, param, part):
    bank = tenants["bank"]
    mirror(bank.participant, currency="CNY", reference="622202100000 1234")
    fields = {} if mapping is None else {"csv_mapping": json.dumps(mapping)}
    before = stored()

    response = upload(api, bank, data, "movements.csv", **fields)

    assert response.status_code == 400, response.content
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param)
    assert part in error["message"]
    assert stored() == before


def test_bodies_that_are_not_one_file_are_refused(api, tenants):
    bank = tenants["bank"]
    mirror(bank.participant)
    headers = {"Authorization": f"Bearer {bank.key}"}
    url = "/v1/bank_statements"
    before = stored()

    as_json = api.post(url, {"file": "x"}, key=bank.key)
    nothing = api.client.post(url, {}, headers=headers)
    two = api.client.post(
        url,
        {"file": [SimpleUploadedFile("a.xml", b"<a/>"), SimpleUploadedFile("b.xml", b"<b/>")]},
        headers=headers,
    )
    as_text = api.client.post(url, {"file": "not a file"}, headers=headers)
    no_boundary = api.post(url, raw=b"--x\r\n", content_type="multipart/form-data", key=bank.key)
    too_big = upload(api, bank, b"<" + b" " * (1024 * 1024), "big.xml")
    crowded = api.client.post(
        url,
        {f"f{n}": "x" for n in range(1001)} | {"file": SimpleUploadedFile("a.xml", b"<a/>")},
        headers=headers,
    )
    many_files = api.client.post(
        url,
        {"file": [SimpleUploadedFile(f"{n}.xml", b"<a/>") for n in range(101)]},
        headers=headers,
    )

    assert (as_json.status_code, error_of(as_json)["code"]) == (415, "unsupported_media_type")
    assert "multipart/form-data" in error_of(as_json)["message"]
    assert (nothing.status_code, error_of(nothing)["code"], error_of(nothing)["param"]) == (
        400,
        "parameter_missing",
        "file",
    )
    assert (two.status_code, error_of(two)["param"]) == (400, "file")
    assert (as_text.status_code, error_of(as_text)["param"]) == (400, "file")
    assert (no_boundary.status_code, error_of(no_boundary)["code"]) == (400, "multipart_invalid")
    assert (too_big.status_code, error_of(too_big)["code"]) == (413, "payload_too_large")
    assert (crowded.status_code, error_of(crowded)["code"]) == (400, "multipart_invalid")
    assert (many_files.status_code, error_of(many_files)["code"]) == (400, "multipart_invalid")
    assert stored() == before


# --- reconciliation ------------------------------------------------------------------------------


def camt053(
    entries: Sequence[tuple[str, str, str, str, str | None]],
    *,
    statement_id: str = "STMT-2026-11-A",
    period: tuple[str, str] = ("2026-11-02", "2026-11-06"),
) -> bytes:
    """A camt.053.001.08 statement of the sample IBAN in CNY: entries are (amount, CRDT/DBIT,
    status, booking date, end-to-end id)."""
    ntry: list[str] = []
    for amount, credit_debit, status, day, end_to_end in entries:
        details = (
            f"<NtryDtls><TxDtls><Refs><EndToEndId>{end_to_end}</EndToEndId></Refs>"
            "</TxDtls></NtryDtls>"
            if end_to_end
            else ""
        )
        ntry.append(
            f'<Ntry><Amt Ccy="CNY">{amount}</Amt><CdtDbtInd>{credit_debit}</CdtDbtInd>'
            f"<Sts><Cd>{status}</Cd></Sts><BookgDt><Dt>{day}</Dt></BookgDt>"
            f"<ValDt><Dt>{day}</Dt></ValDt><AcctSvcrRef>BANK-{len(ntry)}</AcctSvcrRef>"
            f"{details}</Ntry>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
        "<GrpHdr><MsgId>MSG-1</MsgId><CreDtTm>2026-11-07T08:00:00+08:00</CreDtTm></GrpHdr>"
        f"<Stmt><Id>{statement_id}</Id><CreDtTm>2026-11-07T08:00:00+08:00</CreDtTm>"
        f"<FrToDt><FrDtTm>{period[0]}T00:00:00+08:00</FrDtTm>"
        f"<ToDtTm>{period[1]}T23:59:59+08:00</ToDtTm></FrToDt>"
        f"<Acct><Id><IBAN>{IBAN}</IBAN></Id><Ccy>CNY</Ccy></Acct>"
        f"{''.join(ntry)}</Stmt></BkToCstmrStmt></Document>"
    ).encode()


LINES = [
    ("1500.00", "CRDT", "BOOK", "2026-11-02", "PAYIN-1"),  # 0: 1:1 (reference case differs)
    ("800.00", "DBIT", "BOOK", "2026-11-03", "PO-7"),  # 1: 1:1 within the tolerance
    ("3000.00", "CRDT", "BOOK", "2026-11-04", "BATCH-9"),  # 2: one line, two transfers
    ("400.00", "DBIT", "BOOK", "2026-11-05", "PO-8"),  # 3: two lines, one transfer
    ("600.00", "DBIT", "BOOK", "2026-11-05", "PO-8"),  # 4
    ("250.00", "CRDT", "BOOK", "2026-11-05", "PAYIN-2"),  # 5: amount outside the tolerance
    ("12.34", "DBIT", "BOOK", "2026-11-06", None),  # 6: a bank fee the ledger never booked
    ("99.00", "CRDT", "PDNG", "2026-11-06", "PAYIN-5"),  # 7: pending: not money yet
    ("480.00", "CRDT", "BOOK", "2026-11-03", "PAYIN-4"),  # 8: a hold posted in part
]


@contextmanager
def clock(day: str, hour: int = 4) -> Iterator[None]:
    moment = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    with mock.patch.object(timezone, "now", return_value=moment.replace(hour=hour)):
        yield


class Books:
    """The hub's mirror of the bank account and an equity account to move money against."""

    def __init__(self, bank: Participant) -> None:
        operator = Participant.objects.filter(role="operator").first()
        assert operator is not None
        self.mirror = mirror(bank, currency="CNY")
        self.equity = Account.objects.create(
            livemode=False, owner=operator, currency="CNY", kind="equity"
        )

    def arrives(self, transfer_id: str, amount: int, day: str, reference: str = "") -> None:
        """Money arriving at the bank: the mirror is debited."""
        with clock(day):
            transfer_create(
                livemode=False,
                spec=TransferSpec(
                    id=transfer_id,
                    debit_account_id=self.mirror.pk,
                    credit_account_id=self.equity.pk,
                    amount=amount,
                    currency="CNY",
                    reference=reference,
                ),
            )

    def leaves(self, transfer_id: str, amount: int, day: str, reference: str = "") -> None:
        with clock(day):
            transfer_create(
                livemode=False,
                spec=TransferSpec(
                    id=transfer_id,
                    debit_account_id=self.equity.pk,
                    credit_account_id=self.mirror.pk,
                    amount=amount,
                    currency="CNY",
                    reference=reference,
                ),
            )


@pytest.fixture
def books(tenants: dict[str, Tenant]) -> Books:
    books = Books(tenants["bank"].participant)
    books.arrives("T1", 1500_00, "2026-11-02", "payin-1")
    books.leaves("T2", 799_50, "2026-11-03", "PO-7")
    books.arrives("T3", 1000_00, "2026-11-03", "BATCH-9")
    books.arrives("T4", 2000_00, "2026-11-04", "BATCH-9")
    books.leaves("T5", 1000_00, "2026-11-05", "PO-8")
    books.arrives("T6", 260_00, "2026-11-05", "PAYIN-2")
    books.arrives("T7", 70_00, "2026-11-04", "PAYIN-3")  # the bank has not booked it
    books.leaves("T8", 55_00, "2026-11-08", "PO-9")  # the next statement's
    books.arrives("T9", 1_00, "2026-11-20", "PAYIN-6")  # outside the window
    # A hold on the mirror counts only once posted, for what was posted.
    with clock("2026-11-02"):
        hold, _ = transfer_create(
            livemode=False,
            spec=TransferSpec(
                id="T10-hold",
                debit_account_id=books.mirror.pk,
                credit_account_id=books.equity.pk,
                amount=500_00,
                currency="CNY",
                pending=True,
                reference="PAYIN-4",
            ),
        )
    with clock("2026-11-03"):
        transfer_post(
            livemode=False, pending_id=hold.id, amount=480_00, id="T10", reference="PAYIN-4"
        )
    # Money elsewhere in the ledger on the same days is no candidate.
    other = Account.objects.create(
        livemode=False, owner=books.equity.owner, currency="CNY", kind="fees"
    )
    with clock("2026-11-03"):
        transfer_create(
            livemode=False,
            spec=TransferSpec(
                id="T11",
                debit_account_id=books.equity.pk,
                credit_account_id=other.pk,
                amount=1500_00,
                currency="CNY",
                reference="PAYIN-1",
            ),
        )
    return books


def imported(api: Api, tenant: Tenant, data: bytes) -> dict[str, Any]:
    response = upload(api, tenant, data, "november.xml")
    assert response.status_code == 201, response.content
    return dict(response.json()["statements"][0])


def reconciled(api: Api, tenants: dict[str, Tenant], statement_id: str, **rules: Any) -> Any:
    response = api.post(
        f"/v1/bank_statements/{statement_id}/reconcile", rules, key=tenants["operator"].key
    )
    assert response.status_code == 201, response.content
    return response.json()


def queue(api: Api, tenants: dict[str, Tenant], **params: Any) -> list[dict[str, Any]]:
    response = api.get(
        "/v1/reconciliation_exceptions",
        key=tenants["operator"].key,
        params={"limit": 100, **params},
    )
    assert response.status_code == 200, response.content
    return list(response.json()["data"])


TOLERANCE = {"amount_tolerance": {"amount": "1.00", "currency": "CNY"}}


def test_reconciliation_end_to_end(api, tenants, books):
    statement = imported(api, tenants["bank"], camt053(LINES))
    line_ids = [line["id"] for line in lines_of(api, tenants["bank"], statement["id"])]

    run = reconciled(api, tenants, statement["id"], **TOLERANCE)

    assert run["object"] == "reconciliation_run"
    assert run["rules"] == {
        "amount_tolerance": {"amount": "1.00", "currency": "CNY"},
        "amount_tolerance_bps": 0,
        "date_window_days": 2,
        "one_to_many": True,
        "many_to_one": True,
        "match_without_reference": True,
    }
    assert run["transfer_window"] == {"start": "2026-10-31", "end": "2026-11-08"}
    assert run["counts"] == {
        "lines": 9,
        "lines_excluded": 1,
        "transfers": 9,
        "transfers_matched_elsewhere": 0,
        "matched": {
            "groups": 5,
            "lines": 6,
            "transfers": 6,
            "groups_by_rule": {
                "one_to_one": 3,
                "one_to_many": 1,
                "many_to_one": 1,
                "unreferenced": 0,
            },
        },
        "mismatched": {
            "groups": 1,
            "lines": 1,
            "transfers": 1,
            "groups_by_reason": {
                "amount_outside_tolerance": 1,
                "date_outside_window": 0,
                "currency_differs": 0,
                "direction_differs": 0,
                "grouping_not_supported": 0,
            },
        },
        "unmatched": {
            "lines": 1,
            "transfers": 1,
            "transfers_outside_period": 1,
            "lines_by_reason": {
                "no_candidate": 1,
                "ambiguous": 0,
                "reference_already_matched": 0,
                "no_date": 0,
            },
        },
    }
    assert run["exceptions"] == {
        "opened": 3,
        "still_open": 0,
        "superseded": 0,
        "already_resolved": 0,
    }
    groups = {(g["rule"], tuple(g["lines"]), tuple(g["transfers"])) for g in run["matched"]["data"]}
    assert groups == {
        ("one_to_one", (line_ids[0],), ("T1",)),
        ("one_to_one", (line_ids[1],), ("T2",)),
        ("one_to_one", (line_ids[8],), ("T10",)),
        ("one_to_many", (line_ids[2],), ("T3", "T4")),
        ("many_to_one", (line_ids[3], line_ids[4]), ("T5",)),
    }
    fee_match = next(g for g in run["matched"]["data"] if g["transfers"] == ["T2"])
    assert (fee_match["line_amount"], fee_match["transfer_amount"]) == (
        {"amount": "800.00", "currency": "CNY"},
        {"amount": "799.50", "currency": "CNY"},
    )
    assert fee_match["amount_difference"] == {"amount": "0.50", "currency": "CNY"}
    assert run["matched"]["has_more"] is False

    [mismatch] = run["mismatched"]["data"]
    assert {k: mismatch[k] for k in ("reasons", "lines", "transfers", "amount_difference")} == {
        "reasons": ["amount_outside_tolerance"],
        "lines": [line_ids[5]],
        "transfers": ["T6"],
        "amount_difference": {"amount": "-10.00", "currency": "CNY"},
    }
    [fee] = run["unmatched_lines"]["data"]
    assert (fee["lines"], fee["reasons"], fee["line_amount"]) == (
        [line_ids[6]],
        ["no_candidate"],
        {"amount": "12.34", "currency": "CNY"},
    )
    [missing] = run["unmatched_transfers"]["data"]
    assert (missing["transfers"], missing["details"]) == (
        ["T7"],
        {"direction": "credit", "date": "2026-11-04"},
    )

    # The queue holds one exception per finding, and each finding names its exception.
    open_items = queue(api, tenants, status="open", bank_statement=statement["id"])
    assert sorted((e["kind"], tuple(e["lines"]), tuple(e["transfers"])) for e in open_items) == [
        ("mismatched", (line_ids[5],), ("T6",)),
        ("unmatched_line", (line_ids[6],), ()),
        ("unmatched_transfer", (), ("T7",)),
    ]
    assert {e["id"] for e in open_items} == {
        mismatch["exception"],
        fee["exception"],
        missing["exception"],
    }
    shown = next(e for e in open_items if e["kind"] == "mismatched")
    assert {k: shown[k] for k in ("line_amount", "transfer_amount", "tolerance", "run")} == {
        "line_amount": {"amount": "250.00", "currency": "CNY"},
        "transfer_amount": {"amount": "260.00", "currency": "CNY"},
        "tolerance": {"amount": "1.00", "currency": "CNY"},
        "run": run["id"],
    }
    assert [e["id"] for e in queue(api, tenants, kind="unmatched_transfer")] == [
        missing["exception"]
    ]

    # Every line carries the run's verdict; the pending one stays out.
    lines = lines_of(api, tenants["bank"], statement["id"])
    assert [line["reconciliation"]["status"] for line in lines] == [
        "matched",
        "matched",
        "matched",
        "matched",
        "matched",
        "mismatched",
        "unmatched",
        "excluded",
        "matched",
    ]
    assert lines[2]["reconciliation"] == {
        "status": "matched",
        "rule": "one_to_many",
        "reasons": [],
        "transfers": ["T3", "T4"],
        "run": run["id"],
    }
    matched_only = lines_of(api, tenants["bank"], statement["id"], status="matched")
    assert len(matched_only) == 6
    assert api.get(f"/v1/reconciliation_runs/{run['id']}", key=tenants["operator"].key).json() == (
        run
    )
    detail = api.get(f"/v1/bank_statements/{statement['id']}", key=tenants["bank"].key).json()
    assert detail["reconciliation_run"] == run["id"]


def test_rerunning_keeps_one_open_exception_per_finding(api, tenants, books):
    statement = imported(api, tenants["bank"], camt053(LINES))
    first = reconciled(api, tenants, statement["id"], **TOLERANCE)
    opened = {e["id"] for e in queue(api, tenants, status="open")}
    before = stored()

    second = reconciled(api, tenants, statement["id"], **TOLERANCE)

    assert second["counts"] == first["counts"]
    assert second["exceptions"] == {
        "opened": 0,
        "still_open": 3,
        "superseded": 0,
        "already_resolved": 0,
    }
    assert {e["id"] for e in queue(api, tenants, status="open")} == opened
    assert all(e["last_run"] == second["id"] for e in queue(api, tenants, status="open"))
    after = stored()
    assert after.pop("ReconciliationRun") == before.pop("ReconciliationRun") + 1
    assert after.pop("Event") == before.pop("Event") + 1  # reconciliation_run.completed
    assert after == before
    runs = ReconciliationRun.objects.filter(statement_id=statement["id"])
    assert dict(runs.values_list("id", "status")) == {
        first["id"]: "superseded",
        second["id"]: "current",
    }


def test_resolving_and_what_later_runs_do_with_the_queue(api, tenants, books):
    operator = tenants["operator"]
    statement = imported(api, tenants["bank"], camt053(LINES))
    reconciled(api, tenants, statement["id"], **TOLERANCE)
    by_kind = {e["kind"]: e for e in queue(api, tenants, status="open")}

    # The operator confirms the transfer the bank has not booked yet.
    missing = by_kind["unmatched_transfer"]
    response = api.post(
        f"/v1/reconciliation_exceptions/{missing['id']}/resolve",
        {"note": "booked by the bank on 9 November"},
        key=operator.key,
    )
    assert response.status_code == 200, response.content
    resolved = response.json()
    assert {k: resolved[k] for k in ("id", "status", "note", "resolved_by")} == {
        "id": missing["id"],
        "status": "resolved",
        "note": "booked by the bank on 9 November",
        "resolved_by": operator.id,
    }
    assert resolved["resolved_at"] is not None
    assert Event.objects.filter(type="reconciliation_exception.resolved").count() == 1

    # The hub books the bank's fee, and the operator allows ten yuan of difference.
    books.leaves("T12", 12_34, "2026-11-06")
    run = reconciled(
        api, tenants, statement["id"], amount_tolerance={"amount": "10.00", "currency": "CNY"}
    )

    assert run["counts"]["matched"]["groups_by_rule"] == {
        "one_to_one": 4,
        "one_to_many": 1,
        "many_to_one": 1,
        "unreferenced": 1,
    }
    assert run["exceptions"] == {
        "opened": 0,
        "still_open": 0,
        "superseded": 2,
        "already_resolved": 1,
    }
    assert queue(api, tenants, status="open") == []
    assert sorted(e["kind"] for e in queue(api, tenants, status="superseded")) == [
        "mismatched",
        "unmatched_line",
    ]
    assert all(e["superseded_by"] == run["id"] for e in queue(api, tenants, status="superseded"))
    [still_resolved] = queue(api, tenants, status="resolved")
    assert still_resolved["id"] == missing["id"]
    assert run["unmatched_transfers"]["data"][0]["exception"] == missing["id"]

    # Neither a resolved nor a superseded exception can be resolved again.
    before = stored()
    again = api.post(
        f"/v1/reconciliation_exceptions/{missing['id']}/resolve", {"note": "x"}, key=operator.key
    )
    superseded = api.post(
        f"/v1/reconciliation_exceptions/{by_kind['mismatched']['id']}/resolve",
        {"note": "x"},
        key=operator.key,
    )
    assert (again.status_code, error_of(again)["code"]) == (
        409,
        "reconciliation_exception_resolved",
    )
    assert (superseded.status_code, error_of(superseded)["code"]) == (
        409,
        "reconciliation_exception_superseded",
    )
    assert stored() == before


def test_a_transfer_matched_by_one_statement_is_no_candidate_for_the_next(api, tenants, books):
    bank = tenants["bank"]
    november_a = imported(api, bank, camt053(LINES))
    reconciled(api, tenants, november_a["id"], **TOLERANCE)
    november_b = imported(
        api,
        bank,
        camt053(
            [("55.00", "DBIT", "BOOK", "2026-11-08", "PO-9")],
            statement_id="STMT-2026-11-B",
            period=("2026-11-07", "2026-11-09"),
        ),
    )

    run = reconciled(api, tenants, november_b["id"])

    # T8 is the next statement's; T5 and T6 (5 November) lie in its window, T5 already matched.
    assert run["transfer_window"] == {"start": "2026-11-05", "end": "2026-11-11"}
    assert run["counts"]["transfers_matched_elsewhere"] == 1
    assert [g["transfers"] for g in run["matched"]["data"]] == [["T8"]]
    assert run["counts"]["unmatched"]["transfers"] == 0
    assert run["counts"]["unmatched"]["transfers_outside_period"] == 1  # T6, 5 November


@pytest.mark.parametrize(
    ("caller", "body", "status", "code", "param"),
    [
        ("operator", {"amount_tolerance": {"amount": "1", "currency": "KRW"}}, 400,
         "currency_mismatch", "amount_tolerance.currency"),
        ("operator", {"amount_tolerance": {"amount": "-1.00", "currency": "CNY"}}, 400,
         "amount_negative", "amount_tolerance.amount"),
        ("operator", {"date_window_days": 367}, 400, "parameter_invalid", "date_window_days"),
        ("operator", {"amount_tolerance_bps": 10_001}, 400, "parameter_invalid",
         "amount_tolerance_bps"),
        ("operator", {"one_to_many": "yes"}, 400, "parameter_invalid", "one_to_many"),
        ("operator", {"window": 2}, 400, "parameter_unknown", "window"),
        ("bank", {}, 403, "role_forbidden", None),
        ("regulator", {}, 403, "role_forbidden", None),
    ],
)  # fmt: skip
def test_reconcile_requests_that_are_refused_change_nothing(
    api, tenants, books, caller, body, status, code, param
):
    statement = imported(api, tenants["bank"], camt053(LINES))
    before = stored()

    response = api.post(
        f"/v1/bank_statements/{statement['id']}/reconcile", body, key=tenants[caller].key
    )

    assert response.status_code == status, response.content
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param)
    assert stored() == before


def test_unknown_objects_are_404_and_a_note_is_required(api, tenants, books):
    operator = tenants["operator"]
    statement = imported(api, tenants["bank"], camt053(LINES))
    reconciled(api, tenants, statement["id"])
    exception = queue(api, tenants)[0]
    before = stored()

    missing = "bst_" + "0" * 26
    responses = [
        api.post(f"/v1/bank_statements/{missing}/reconcile", {}, key=operator.key),
        api.get(f"/v1/bank_statements/{missing}", key=operator.key),
        api.get(f"/v1/reconciliation_runs/rcr_{'0' * 26}", key=operator.key),
        api.post(f"/v1/reconciliation_exceptions/rex_{'0' * 26}/resolve", {"note": "x"},
                 key=operator.key),
    ]  # fmt: skip
    no_note = api.post(
        f"/v1/reconciliation_exceptions/{exception['id']}/resolve", {}, key=operator.key
    )
    blank = api.post(
        f"/v1/reconciliation_exceptions/{exception['id']}/resolve", {"note": ""}, key=operator.key
    )

    assert [(r.status_code, error_of(r)["code"]) for r in responses] == [
        (404, "resource_missing")
    ] * 4
    assert (no_note.status_code, error_of(no_note)["code"], error_of(no_note)["param"]) == (
        400,
        "parameter_missing",
        "note",
    )
    assert (blank.status_code, error_of(blank)["param"]) == (400, "note")
    bad_filter = api.get(
        "/v1/reconciliation_exceptions", key=operator.key, params={"status": "closed"}
    )
    assert (bad_filter.status_code, error_of(bad_filter)["param"]) == (400, "status")
    assert stored() == before


def test_lines_page_in_the_statements_order(api, tenants):
    bank = tenants["bank"]
    mirror(bank.participant, currency="CNY")
    many = [(f"{n}.00", "CRDT", "BOOK", "2026-11-02", f"R-{n}") for n in range(1, 26)]
    statement = imported(api, bank, camt053(many))
    url = f"/v1/bank_statements/{statement['id']}/lines"

    first = api.get(url, key=bank.key, params={"limit": 10}).json()
    second = api.get(
        url, key=bank.key, params={"limit": 10, "starting_after": first["data"][-1]["id"]}
    ).json()
    back = api.get(
        url, key=bank.key, params={"limit": 10, "ending_before": second["data"][0]["id"]}
    ).json()

    assert [line["index"] for line in first["data"]] == list(range(10))
    assert [line["index"] for line in second["data"]] == list(range(10, 20))
    assert back["data"] == first["data"]
    assert (first["has_more"], second["has_more"]) == (True, True)
    bad = api.get(url, key=bank.key, params={"starting_after": "../x"})
    assert (bad.status_code, error_of(bad)["param"]) == (400, "starting_after")
