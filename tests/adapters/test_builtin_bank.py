"""The built-in bank adapter against its sandbox bank, over real loopback sockets, through the
real HubHttpClient: payouts, status syncs, camt.053 statements, dealing quotes, and every fault."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest

from adapters.builtin.bank import CAMT053_NS, GenericBankAdapter
from adapters.errors import (
    AdapterMisconfigured,
    AdapterTimeout,
    IntegrityMismatch,
    MalformedResponse,
    OperationNotFound,
    Rejected,
    UnknownOutcome,
)
from adapters.http import AttemptRecord, ClientPolicy, HubHttpClient, MemoryBreakerStore
from adapters.interface import (
    Amount,
    BankAccount,
    Outcome,
    PayoutRequest,
    StatementRequest,
)
from adapters.manifest import Capability
from adapters.registry import get_adapter
from adapters.sandbox.bank import (
    DEFAULT_ACCOUNTS,
    DEFAULT_CLIENT_ID,
    DEFAULT_SIGNING_KEY,
    BankSandbox,
    sign,
)

TLS = ssl.create_default_context()
READ_TIMEOUT = 0.3  # the client's; the sandbox holds a "timeout" connection longer
SANDBOX_TIMEOUT = 2.0
CNY_ACCOUNT = DEFAULT_ACCOUNTS["CNY"]
KRW_ACCOUNT = DEFAULT_ACCOUNTS["KRW"]
NS = {"c": CAMT053_NS}


@pytest.fixture
def bank() -> Iterator[BankSandbox]:
    with BankSandbox(timeout_seconds=SANDBOX_TIMEOUT, settle_delay_seconds=60) as server:
        yield server


class Harness:
    def __init__(self, bank: BankSandbox, **policy: Any) -> None:
        self.bank = bank
        self.records: list[AttemptRecord] = []
        self.sleeps: list[float] = []
        self.client = HubHttpClient(
            participant_id="par_bank",
            adapter="bank",
            policy=ClientPolicy(
                allowed_hosts=frozenset({"127.0.0.1"}),
                allow_private=True,
                connect_timeout=1.0,
                read_timeout=READ_TIMEOUT,
                **policy,
            ),
            breaker=MemoryBreakerStore(),
            recorder=self.records.append,
            secrets=(DEFAULT_SIGNING_KEY,),
            # httpx's own transport over real sockets, with a TLS context built once per module
            # (building one per client costs ~40 ms; these calls are plain http anyway).
            transport=httpx.HTTPTransport(verify=TLS),
            sleep=self.sleeps.append,  # no real backoff waits in tests
        )
        self.adapter = GenericBankAdapter(
            client=self.client,
            config={"base_url": bank.base_url, "client_id": DEFAULT_CLIENT_ID},
            secrets={"signing_key": DEFAULT_SIGNING_KEY},
        )
        self.http = httpx.Client(trust_env=False, verify=TLS)  # for the control API

    def close(self) -> None:
        self.client.close()
        self.http.close()

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.bank.url("/_sandbox" + path)
        response = self.http.post(url, json=body) if body is not None else self.http.get(url)
        assert response.status_code == 200, response.text
        return response.json()

    def fault(self, operation: str, fault: str, count: int = 1) -> None:
        self.control("/faults", {"operation": operation, "fault": fault, "count": count})

    def log(self, operation: str | None = None) -> list[dict[str, Any]]:
        query = f"?operation={operation}" if operation else ""
        return list(self.http.get(self.bank.url("/_sandbox/log" + query)).json()["data"])

    def payouts(self) -> list[dict[str, Any]]:
        return list(self.control("/state")["payouts"])


@pytest.fixture
def h(bank: BankSandbox) -> Iterator[Harness]:
    harness = Harness(bank)
    yield harness
    harness.close()


def payout(
    reference: str = "po_0001",
    minor: int = 12345,
    currency: str = "CNY",
    account: str = "6217000011112222",
) -> PayoutRequest:
    return PayoutRequest(
        reference=reference,
        amount=Amount(minor, currency),
        beneficiary=BankAccount(account, "Weihai Trading Co.", "ICBKCNBJSDG", "CN"),
        remittance_info="order 2024-001",
    )


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


# -- manifest and discovery


def test_manifest_declares_payout_create_not_idempotent_and_is_discovered():
    manifest = GenericBankAdapter.manifest
    assert manifest.capabilities == {
        Capability.BANK_PAYOUTS,
        Capability.BANK_STATEMENTS,
        Capability.DEALING_RATES,
    }
    assert manifest.currencies == {"CNY", "KRW"}
    assert not manifest.is_idempotent("payout_create")
    assert all(manifest.is_idempotent(op) for op in ("payout_status", "statement", "quote"))
    assert manifest.auth_scheme == "hmac"
    assert manifest.secret_fields == {"signing_key"}
    assert get_adapter("bank").adapter_class is GenericBankAdapter
    for code, hub_code in [
        ("AC04", "beneficiary_account_closed"),
        ("AM04", "insufficient_funds"),
        ("BE06", "beneficiary_unknown"),
    ]:
        assert manifest.errors.lookup(code).hub_code == hub_code
    assert manifest.errors.lookup("AM04").retryable
    assert not manifest.errors.lookup("AC04").retryable


# -- payouts


def test_payout_is_accepted_then_completes_after_the_settlement_delay(h: Harness):
    result = h.adapter.create_payout(payout())
    assert result.outcome == Outcome.PENDING
    assert result.amount == Amount(12345, "CNY")
    assert result.provider_id
    (stored,) = h.payouts()
    assert (stored["amount"], stored["currency"], stored["status"]) == ("123.45", "CNY", "accepted")
    assert stored["end_to_end_id"] == "po_0001"
    assert stored["creditor"]["bank_code"] == "ICBKCNBJSDG"

    assert h.adapter.get_payout(reference="po_0001", provider_id=None).outcome == Outcome.PENDING
    h.control("/clock", {"advance_seconds": 50})
    assert h.adapter.get_payout(reference="po_0001", provider_id=None).outcome == Outcome.PENDING
    h.control("/clock", {"advance_seconds": 11})
    by_reference = h.adapter.get_payout(reference="po_0001", provider_id=None)
    by_id = h.adapter.get_payout(reference="po_0001", provider_id=result.provider_id)
    assert by_reference == by_id
    assert by_id.outcome == Outcome.SUCCEEDED
    assert by_id.amount == Amount(12345, "CNY")
    # The request carried our reference as X-Request-Id and a signature, which is redacted.
    create = h.records[0]
    assert create.request_headers["x-request-id"] == "po_0001"
    assert create.request_headers["x-signature"] == "[redacted]"


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1, "CNY", "0.01"),
        (100, "CNY", "1.00"),
        (123456789, "CNY", "1234567.89"),
        (1, "KRW", "1"),
        (987654321, "KRW", "987654321"),
    ],
)
def test_amounts_cross_as_exact_decimals_with_the_currency_exponent(
    h: Harness, minor: int, currency: str, text: str
):
    result = h.adapter.create_payout(payout(minor=minor, currency=currency))
    assert h.payouts()[0]["amount"] == text
    assert result.amount == Amount(minor, currency)


@pytest.mark.parametrize(
    ("setup", "reason", "hub_code"),
    [
        (
            {"/creditors": {"account_number": "6217000011112222", "status": "closed"}},
            "AC04",
            "beneficiary_account_closed",
        ),
        (
            {"/creditors": {"account_number": "6217000011112222", "status": "unknown"}},
            "BE06",
            "beneficiary_unknown",
        ),
        (
            {"/accounts": {"currency": "CNY", "opening_balance": "100.00"}},
            "AM04",
            "insufficient_funds",
        ),
    ],
)
def test_payout_rejected_asynchronously_with_an_iso_reason_code(
    h: Harness, setup: dict[str, Any], reason: str, hub_code: str
):
    for path, body in setup.items():
        h.control(path, body)
    assert h.adapter.create_payout(payout()).outcome == Outcome.PENDING
    h.control("/clock", {"advance_seconds": 61})
    result = h.adapter.get_payout(reference="po_0001", provider_id=None)
    assert result.outcome == Outcome.FAILED
    assert result.failure_code == hub_code
    assert result.failure_reason is not None
    assert result.failure_reason.startswith(reason)


def test_a_payout_can_be_rejected_or_completed_at_once_through_the_control_api(h: Harness):
    first = h.adapter.create_payout(payout("po_a"))
    second = h.adapter.create_payout(payout("po_b"))
    h.control(f"/payouts/{first.provider_id}/reject", {"reason_code": "BE05"})
    h.control(f"/payouts/{second.provider_id}/complete", {})
    rejected = h.adapter.get_payout(reference="po_a", provider_id=first.provider_id)
    assert (rejected.outcome, rejected.failure_code) == (
        Outcome.FAILED,
        "initiating_party_unrecognised",
    )
    assert rejected.failure_reason == "BE05 UnrecognisedInitiatingParty"
    completed = h.adapter.get_payout(reference="po_b", provider_id=None)
    assert completed.outcome == Outcome.SUCCEEDED


def test_insufficient_funds_are_judged_in_settlement_order(h: Harness):
    h.control("/accounts", {"currency": "KRW", "opening_balance": "1500"})
    h.adapter.create_payout(payout("po_k1", 1000, "KRW"))
    h.control("/clock", {"advance_seconds": 1})
    h.adapter.create_payout(payout("po_k2", 1000, "KRW"))
    h.control("/clock", {"advance_seconds": 120})
    assert h.adapter.get_payout(reference="po_k1", provider_id=None).outcome == Outcome.SUCCEEDED
    second = h.adapter.get_payout(reference="po_k2", provider_id=None)
    assert (second.outcome, second.failure_code) == (Outcome.FAILED, "insufficient_funds")


@pytest.mark.parametrize(
    ("request_", "provider_code", "hub_code"),
    [
        (payout(currency="USD", minor=100), "AM03", "currency_not_supported"),
        (
            PayoutRequest("po_x", Amount(100, "CNY"), BankAccount("", "N", "ICBC", "CN")),
            "AC01",
            "beneficiary_account_invalid",
        ),
        (
            PayoutRequest("po_x", Amount(100, "CNY"), BankAccount("621700", "N", "", "CN")),
            "RC01",
            "beneficiary_bank_invalid",
        ),
    ],
)
def test_invalid_payouts_are_rejected_at_once_through_the_error_table(
    h: Harness, request_: PayoutRequest, provider_code: str, hub_code: str
):
    with pytest.raises(Rejected) as raised:
        h.adapter.create_payout(request_)
    assert (raised.value.provider_code, raised.value.hub_code) == (provider_code, hub_code)
    assert raised.value.retryable is False
    assert h.payouts() == []


def test_a_reference_longer_than_iso_allows_is_refused_before_any_call(h: Harness):
    with pytest.raises(Rejected):
        h.adapter.create_payout(payout("po_" + "x" * 40))
    assert h.records == []


def test_a_repeated_request_id_answers_the_original_payout(h: Harness):
    first = h.adapter.create_payout(payout())
    again = h.adapter.create_payout(payout())
    assert again.provider_id == first.provider_id
    assert len(h.payouts()) == 1
    assert [e["effect"] for e in h.log("payout_create")] == [
        f"created {first.provider_id}",
        f"duplicate of {first.provider_id}",
    ]
    with pytest.raises(Rejected) as raised:
        h.adapter.create_payout(payout(minor=99999))  # same reference, another payout
    assert (raised.value.provider_code, raised.value.hub_code) == ("DUPL", "duplicate_reference")
    assert len(h.payouts()) == 1


def raw_post_payout(
    bank: BankSandbox, body: bytes, request_id: str | None = None
) -> httpx.Response:
    timestamp = str(int(time.time()))
    headers = {
        "X-Client-Id": DEFAULT_CLIENT_ID,
        "X-Timestamp": timestamp,
        "X-Signature": sign(DEFAULT_SIGNING_KEY, timestamp, "POST", "/payouts", body),
        "Content-Type": "application/json",
    }
    if request_id:
        headers["X-Request-Id"] = request_id
    return httpx.post(bank.url("/payouts"), content=body, headers=headers)


def test_without_a_request_id_the_bank_pays_twice_and_the_sync_reports_it(h: Harness):
    body = (
        b'{"end_to_end_id":"po_twice","amount":"5.00","currency":"CNY",'
        b'"creditor":{"account_number":"6217","bank_code":"ICBC","name":"N"}}'
    )
    assert raw_post_payout(h.bank, body).status_code == 201
    assert raw_post_payout(h.bank, body).status_code == 201
    assert len(h.payouts()) == 2
    with pytest.raises(IntegrityMismatch):
        h.adapter.get_payout(reference="po_twice", provider_id=None)


def test_status_sync_of_a_payout_the_bank_never_received(h: Harness):
    with pytest.raises(OperationNotFound):
        h.adapter.get_payout(reference="po_nowhere", provider_id=None)
    with pytest.raises(OperationNotFound):
        h.adapter.get_payout(reference="po_nowhere", provider_id="PO_UNKNOWN")


def test_a_wrong_signing_key_is_a_misconfiguration(h: Harness):
    adapter = GenericBankAdapter(
        client=h.client,
        config={"base_url": h.bank.base_url, "client_id": DEFAULT_CLIENT_ID},
        secrets={"signing_key": "not-the-key"},
    )
    with pytest.raises(AdapterMisconfigured):
        adapter.create_payout(payout())
    assert h.payouts() == []


def test_a_stale_request_timestamp_is_refused(h: Harness):
    adapter = GenericBankAdapter(
        client=h.client,
        config={"base_url": h.bank.base_url, "client_id": DEFAULT_CLIENT_ID},
        secrets={"signing_key": DEFAULT_SIGNING_KEY},
        clock=lambda: time.time() - 3600,
    )
    with pytest.raises(AdapterMisconfigured):
        adapter.get_payout(reference="po_1", provider_id=None)


# -- faults on payout_create (not idempotent: one attempt, the outcome may be unknown)


@pytest.mark.parametrize(
    ("fault", "error", "landed"),
    [
        ("timeout_after", AdapterTimeout, True),
        ("timeout", AdapterTimeout, True),
        ("timeout_before", AdapterTimeout, False),
        ("reset_after", UnknownOutcome, True),
        ("reset", UnknownOutcome, True),
        ("reset_before", UnknownOutcome, False),
        ("http_503", UnknownOutcome, False),
        ("http_500", UnknownOutcome, False),
        ("http_500_after", UnknownOutcome, True),
        ("http_503_after", UnknownOutcome, True),
        ("malformed_json", MalformedResponse, True),
    ],
)
def test_payout_create_faults_are_unknown_outcomes_after_exactly_one_request(
    h: Harness, fault: str, error: type[Exception], landed: bool
):
    h.fault("payout_create", fault)
    with pytest.raises(error):
        h.adapter.create_payout(payout())
    assert len(h.records) == 1  # never resent by the client
    (entry,) = h.log("payout_create")
    assert entry["fault"] == fault
    assert entry["processed"] is landed
    assert len(h.payouts()) == (1 if landed else 0)
    # The status sync settles what the create could not tell.
    if landed:
        found = h.adapter.get_payout(reference="po_0001", provider_id=None)
        assert (found.outcome, found.amount) == (Outcome.PENDING, Amount(12345, "CNY"))
        assert found.provider_id == h.payouts()[0]["id"]
    else:
        with pytest.raises(OperationNotFound):
            h.adapter.get_payout(reference="po_0001", provider_id=None)


def test_latency_within_the_read_timeout_is_just_slow(h: Harness):
    h.fault("payout_create", "latency:100")
    started = time.monotonic()
    assert h.adapter.create_payout(payout()).outcome == Outcome.PENDING
    assert time.monotonic() - started >= 0.1
    assert h.log("payout_create")[0]["fault"] == "latency:100"


def test_latency_beyond_the_read_timeout_lands_after_the_client_gave_up(h: Harness):
    h.fault("payout_create", "latency:600")
    with pytest.raises(AdapterTimeout):
        h.adapter.create_payout(payout())
    assert h.payouts() == []  # not yet
    wait_until(lambda: len(h.payouts()) == 1)
    assert h.adapter.get_payout(reference="po_0001", provider_id=None).outcome == Outcome.PENDING
    assert len([r for r in h.records if r.operation == "payout_create"]) == 1


def test_a_resent_payout_after_an_unknown_outcome_is_deduplicated_by_request_id(h: Harness):
    # What an operator's explicit "send again" does after a timeout: the bank answers the
    # original because our reference is the X-Request-Id.
    h.fault("payout_create", "timeout_after")
    with pytest.raises(AdapterTimeout):
        h.adapter.create_payout(payout())
    again = h.adapter.create_payout(payout())
    assert len(h.payouts()) == 1
    assert again.provider_id == h.payouts()[0]["id"]


# -- faults on idempotent operations: retried by the client


@pytest.mark.parametrize(
    "fault",
    ["http_503", "http_500", "timeout_before", "timeout_after", "reset_before", "reset_after"],
)
def test_payout_status_faults_are_retried(h: Harness, fault: str):
    created = h.adapter.create_payout(payout())
    h.fault("payout_status", fault)
    result = h.adapter.get_payout(reference="po_0001", provider_id=created.provider_id)
    assert result.provider_id == created.provider_id
    status_attempts = [r for r in h.records if r.operation == "payout_status"]
    assert len(status_attempts) == 2
    assert [e["fault"] for e in h.log("payout_status")] == [fault, None]
    assert len(h.sleeps) == 1


def test_payout_status_failing_every_attempt_is_unknown(h: Harness):
    h.adapter.create_payout(payout())
    h.fault("payout_status", "http_503", count=5)
    with pytest.raises(UnknownOutcome):
        h.adapter.get_payout(reference="po_0001", provider_id=None)
    assert len(h.log("payout_status")) == 3  # max_attempts
    assert h.control("/faults")["queued"] == [
        {"operation": "payout_status", "fault": "http_503", "count": 2}
    ]


def test_malformed_status_answer_is_not_retried_and_is_unknown(h: Harness):
    h.adapter.create_payout(payout())
    h.fault("payout_status", "malformed_json")
    with pytest.raises(MalformedResponse):
        h.adapter.get_payout(reference="po_0001", provider_id=None)
    assert len(h.log("payout_status")) == 1


# -- statements


def booked_entries(document: ET.Element) -> list[dict[str, str]]:
    entries = []
    for ntry in document.iterfind("c:BkToCstmrStmt/c:Stmt/c:Ntry", NS):
        amount = ntry.find("c:Amt", NS)
        assert amount is not None
        entries.append(
            {
                "amount": amount.text or "",
                "currency": amount.get("Ccy", ""),
                "direction": ntry.findtext("c:CdtDbtInd", "", NS),
                "status": ntry.findtext("c:Sts/c:Cd", "", NS),
                "booked": ntry.findtext("c:BookgDt/c:Dt", "", NS),
                "end_to_end_id": ntry.findtext("c:NtryDtls/c:TxDtls/c:Refs/c:EndToEndId", "", NS),
                "servicer_ref": ntry.findtext("c:AcctSvcrRef", "", NS),
            }
        )
    return entries


def balances(document: ET.Element) -> dict[str, tuple[str, str]]:
    return {
        bal.findtext("c:Tp/c:CdOrPrtry/c:Cd", "", NS): (
            bal.findtext("c:Amt", "", NS),
            bal.findtext("c:CdtDbtInd", "", NS),
        )
        for bal in document.iterfind("c:BkToCstmrStmt/c:Stmt/c:Bal", NS)
    }


def parse(content: bytes) -> ET.Element:
    return ET.fromstring(content)  # noqa: S314 (our own sandbox's output)


def test_statement_is_camt053_of_what_the_bank_really_booked(h: Harness):
    h.control("/clock", {"now": "2024-03-04T09:00:00+00:00"})  # a Monday
    h.control("/accounts", {"currency": "CNY", "opening_balance": "10000.00"})
    h.control("/creditors", {"account_number": "6217CLOSED", "status": "closed"})
    a = h.adapter.create_payout(payout("po_a", 12345))
    rejected = h.adapter.create_payout(payout("po_r", 500, account="6217CLOSED"))
    h.control("/clock", {"advance_seconds": 86400})
    b = h.adapter.create_payout(payout("po_b", 100000))
    h.control("/clock", {"advance_seconds": 86400})
    c = h.adapter.create_payout(payout("po_c", 1))
    h.control("/clock", {"advance_seconds": 120})
    assert h.adapter.get_payout(reference="po_r", provider_id=None).outcome == Outcome.FAILED

    statement = h.adapter.fetch_statement(
        StatementRequest(CNY_ACCOUNT, date(2024, 3, 4), date(2024, 3, 5))
    )
    assert statement.media_type == "application/xml"
    document = parse(statement.content)
    assert document.tag == f"{{{CAMT053_NS}}}Document"
    assert document.findtext("c:BkToCstmrStmt/c:Stmt/c:Acct/c:Id/c:Othr/c:Id", "", NS) == (
        CNY_ACCOUNT
    )
    assert booked_entries(document) == [
        {
            "amount": "123.45",
            "currency": "CNY",
            "direction": "DBIT",
            "status": "BOOK",
            "booked": "2024-03-04",
            "end_to_end_id": "po_a",
            "servicer_ref": a.provider_id,
        },
        {
            "amount": "1000.00",
            "currency": "CNY",
            "direction": "DBIT",
            "status": "BOOK",
            "booked": "2024-03-05",
            "end_to_end_id": "po_b",
            "servicer_ref": b.provider_id,
        },
    ]
    assert rejected.provider_id
    assert rejected.provider_id not in statement.content.decode()
    assert balances(document) == {"OPBD": ("10000.00", "CRDT"), "CLBD": ("8876.55", "CRDT")}
    assert (
        document.findtext("c:BkToCstmrStmt/c:Stmt/c:TxsSummry/c:TtlNtries/c:NbOfNtries", "", NS)
        == "2"
    )

    later = parse(
        h.adapter.fetch_statement(
            StatementRequest(CNY_ACCOUNT, date(2024, 3, 6), date(2024, 3, 6))
        ).content
    )
    assert [e["end_to_end_id"] for e in booked_entries(later)] == ["po_c"]
    assert [e["servicer_ref"] for e in booked_entries(later)] == [c.provider_id]
    assert balances(later) == {"OPBD": ("8876.55", "CRDT"), "CLBD": ("8876.54", "CRDT")}


def test_krw_statement_amounts_have_no_decimals(h: Harness):
    h.control("/clock", {"now": "2024-06-03T01:00:00+00:00"})
    h.adapter.create_payout(payout("po_krw", 1234567, "KRW"))
    h.control("/clock", {"advance_seconds": 61})
    document = parse(
        h.adapter.fetch_statement(
            StatementRequest(KRW_ACCOUNT, date(2024, 6, 3), date(2024, 6, 3))
        ).content
    )
    (entry,) = booked_entries(document)
    assert (entry["amount"], entry["currency"]) == ("1234567", "KRW")
    assert Decimal(entry["amount"]) == Decimal(1234567)


def test_statement_of_an_account_not_ours_is_rejected(h: Harness):
    with pytest.raises(Rejected) as raised:
        h.adapter.fetch_statement(StatementRequest("999", date(2024, 1, 1), date(2024, 1, 2)))
    assert raised.value.provider_code == "NOT_FOUND"


def test_statement_fault_is_retried(h: Harness):
    h.fault("statement", "http_500")
    statement = h.adapter.fetch_statement(
        StatementRequest(CNY_ACCOUNT, date(2024, 1, 1), date(2024, 1, 2))
    )
    assert parse(statement.content).tag.endswith("Document")
    assert len(h.log("statement")) == 2


def test_a_statement_that_is_not_xml_is_malformed(h: Harness):
    h.fault("statement", "malformed_json")
    with pytest.raises(MalformedResponse):
        h.adapter.fetch_statement(StatementRequest(CNY_ACCOUNT, date(2024, 1, 1), date(2024, 1, 2)))


# -- dealing quotes


def test_dealing_quote_is_a_decimal_rate_with_an_expiry(h: Harness):
    quote = h.adapter.dealing_quote(base="CNY", quote="KRW")
    assert quote.rate == Decimal("191.2500")
    assert isinstance(quote.rate, Decimal)
    assert (quote.base, quote.quote, quote.source) == ("CNY", "KRW", "bank")
    assert quote.valid_until is not None
    assert (quote.valid_until - quote.as_of).total_seconds() == pytest.approx(60, abs=0.01)
    assert quote.as_of.tzinfo is not None
    h.control("/config", {"rates": {"CNY/KRW": "190.123456789"}, "quote_ttl_seconds": 5})
    changed = h.adapter.dealing_quote(base="CNY", quote="KRW")
    assert changed.rate == Decimal("190.123456789")
    assert h.adapter.dealing_quote(base="KRW", quote="CNY").rate == Decimal("0.005227")


def test_a_pair_the_bank_does_not_deal_is_rejected(h: Harness):
    with pytest.raises(Rejected) as raised:
        h.adapter.dealing_quote(base="CNY", quote="USD")
    assert raised.value.provider_code == "AM03"


@pytest.mark.parametrize("fault", ["timeout_before", "reset_before", "http_503"])
def test_quote_faults_are_retried(h: Harness, fault: str):
    h.fault("quote", fault)
    assert h.adapter.dealing_quote(base="CNY", quote="KRW").rate == Decimal("191.2500")
    assert len(h.log("quote")) == 2


# -- the sandbox itself


def test_fault_control_validates_and_counts(h: Harness):
    for body in (
        {"operation": "payout_create", "fault": "explode"},
        {"operation": "no_such_route", "fault": "http_500"},
        {"operation": "payout_create", "fault": "duplicate"},  # a webhook fault
        {"operation": "payout_create", "fault": "latency:soon"},
        {"operation": "payout_create", "fault": "http_500", "count": 0},
    ):
        response = h.http.post(h.bank.url("/_sandbox/faults"), json=body)
        assert response.status_code == 400, body
    h.fault("payout_status", "http_503", count=2)
    h.fault("payout_status", "latency:10")
    assert h.control("/faults")["queued"] == [
        {"operation": "payout_status", "fault": "http_503", "count": 2},
        {"operation": "payout_status", "fault": "latency:10", "count": 1},
    ]
    with pytest.raises(OperationNotFound):
        h.adapter.get_payout(reference="po_1", provider_id=None)
    assert [e["fault"] for e in h.log("payout_status")] == ["http_503", "http_503", "latency:10"]
    assert h.control("/faults")["queued"] == []


def test_reset_forgets_everything_and_interrupts_waiting_requests(h: Harness):
    h.adapter.create_payout(payout())
    h.control("/config", {"settle_delay_seconds": 1})
    h.fault("payout_create", "latency:3000")
    errors: list[Exception] = []

    def send() -> None:
        try:
            h.adapter.create_payout(payout("po_late"))
        except Exception as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: len(h.log("payout_create")) == 2)
    h.control("/reset", {})
    sender.join(5)
    assert len(errors) == 1
    assert isinstance(errors[0], UnknownOutcome)  # a timeout, or the connection dropped
    time.sleep(0.1)
    assert h.payouts() == []  # the interrupted request was not processed after the reset
    assert h.log() == []
    assert h.control("/config")["settle_delay_seconds"] == 60


def test_stop_does_not_wait_for_a_held_timeout():
    server = BankSandbox(timeout_seconds=30).start()
    harness = Harness(server)
    harness.fault("payout_create", "timeout_after")
    with pytest.raises(AdapterTimeout):
        harness.adapter.create_payout(payout())
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    assert not server.running
    harness.close()


def test_the_sandbox_log_records_each_request(h: Harness):
    h.adapter.create_payout(payout())
    h.adapter.get_payout(reference="po_0001", provider_id=None)
    entries = h.log()
    assert [(e["operation"], e["method"], e["status"], e["processed"]) for e in entries] == [
        ("payout_create", "POST", 201, True),
        ("payout_status", "GET", 200, True),
    ]
    assert entries[1]["path"] == "/payouts?reference=po_0001"
    assert datetime.fromisoformat(entries[0]["at"]).tzinfo == UTC
