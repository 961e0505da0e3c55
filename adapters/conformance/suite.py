"""The conformance checks. Each runs once per chosen adapter (``--adapter NAME``, see ``plugin``)
against the sandbox its ``conformance_sandbox()`` hook starts, through the hub's real
``HubHttpClient`` (a memory circuit breaker, attempts kept in a list, loopback allowed, only the
sandbox's host allowed), exactly as the hub would build the adapter for a participant.

Run it with ``hub adapters conformance NAME`` (or ``--all``); docs/adapters.md explains it.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

import httpx
import pytest

from adapters.builtin import minor_to_decimal
from adapters.capabilities import (
    Adapter,
    BankAdapter,
    PaymentInstitutionAdapter,
    RateSourceAdapter,
    WebhookRejected,
)
from adapters.conformance.hook import (
    CALL_READ_TIMEOUT,
    CREATE_FAULTS,
    FAULT_READ_TIMEOUT,
    HOOK,
    STALE_SECONDS,
    BankDriver,
    FaultDriver,
    Notification,
    PaymentDriver,
    RateSourceDriver,
    SandboxHandle,
)
from adapters.errors import AdapterError, OperationNotFound, UnknownOutcome
from adapters.http import AttemptRecord, ClientPolicy, HubHttpClient, MemoryBreakerStore
from adapters.interface import (
    Amount,
    BankAccount,
    InboundWebhook,
    Outcome,
    PayinRequest,
    PayinResult,
    PayoutRequest,
    PayoutResult,
    RefundRequest,
    StatementRequest,
)
from adapters.manifest import Capability, Manifest
from adapters.registry import InstalledAdapter, get_adapter

PAYMENTS = pytest.mark.capability(Capability.PAYMENT_INSTITUTION)
PAYOUTS = pytest.mark.capability(Capability.BANK_PAYOUTS)
STATEMENTS = pytest.mark.capability(Capability.BANK_STATEMENTS)
DEALING = pytest.mark.capability(Capability.DEALING_RATES)
RATES = pytest.mark.capability(Capability.RATE_SOURCE)

# The interface each capability is implemented through.
INTERFACES: dict[Capability, type[Adapter]] = {
    Capability.PAYMENT_INSTITUTION: PaymentInstitutionAdapter,
    Capability.BANK_PAYOUTS: BankAdapter,
    Capability.BANK_STATEMENTS: BankAdapter,
    Capability.DEALING_RATES: BankAdapter,
    Capability.RATE_SOURCE: RateSourceAdapter,
}
ASKED_MINOR = 12_345
BENEFICIARY = BankAccount("6217000011112222", "Conformance Trading Co.", "ICBKCNBJSDG", "CN")
CAMT053 = re.compile(r"\{(urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.\d\d)\}Document")


@functools.cache
def _tls() -> ssl.SSLContext:
    # One context for every client of the run (building one costs tens of milliseconds).
    return ssl.create_default_context()


class Kit:
    """One check's view of the adapter: a fresh client, breaker and attempt list each time."""

    def __init__(self, installed: InstalledAdapter, handle: SandboxHandle) -> None:
        self.name = installed.name
        self.adapter_class = installed.adapter_class
        self.manifest: Manifest = installed.adapter_class.manifest
        self.handle = handle
        self.records: list[AttemptRecord] = []
        self.breaker = MemoryBreakerStore()
        self.clients: list[HubHttpClient] = []
        self.adapter = self.build(read_timeout=CALL_READ_TIMEOUT)

    def build(self, *, read_timeout: float) -> Adapter:
        """The adapter as the hub builds it for a sandbox participant: the hub's client, only the
        sandbox's host allowed, loopback allowed, every credential a secret to redact."""
        host = urlsplit(self.handle.base_url).hostname if self.handle.base_url else None
        client = HubHttpClient(
            participant_id="par_conformance",
            adapter=self.name,
            policy=ClientPolicy(
                allowed_hosts=frozenset({host} if host else ()),
                allow_private=True,
                connect_timeout=1.0,
                read_timeout=read_timeout,
            ),
            breaker=self.breaker,
            recorder=self.records.append,
            secrets=tuple(self.handle.credentials.values()),
            transport=httpx.HTTPTransport(verify=_tls()),
        )
        self.clients.append(client)
        return self.adapter_class(
            client=client, config=dict(self.handle.config), secrets=dict(self.handle.credentials)
        )

    def close(self) -> None:
        for client in self.clients:
            client.close()

    @property
    def payments(self) -> PaymentInstitutionAdapter:
        assert isinstance(self.adapter, PaymentInstitutionAdapter), self.adapter
        return self.adapter

    @property
    def bank(self) -> BankAdapter:
        assert isinstance(self.adapter, BankAdapter), self.adapter
        return self.adapter

    @property
    def rates(self) -> RateSourceAdapter:
        assert isinstance(self.adapter, RateSourceAdapter), self.adapter
        return self.adapter

    def _driver(self, protocol: Any) -> Any:
        driver = self.handle.driver
        assert isinstance(driver, protocol), (
            f"the sandbox driver of {self.name} ({type(driver).__name__}) does not implement "
            f"{protocol.__name__} (adapters.conformance.hook)"
        )
        return driver

    @property
    def payment_driver(self) -> PaymentDriver:
        return self._driver(PaymentDriver)

    @property
    def bank_driver(self) -> BankDriver:
        return self._driver(BankDriver)

    @property
    def rate_driver(self) -> RateSourceDriver:
        return self._driver(RateSourceDriver)

    def operations(self, since: int = 0) -> list[str]:
        return [r.operation for r in self.records[since:]]

    def assert_idempotent(self, since: int, what: str) -> None:
        """The calls made since ``since`` are declared idempotent, so the hub retries them."""
        for operation in dict.fromkeys(self.operations(since)):
            assert self.manifest.is_idempotent(operation), (
                f"{what} calls {operation!r}, which the manifest does not list in "
                "idempotent_operations: the hub would not retry this read"
            )


def reference() -> str:
    # Letters and digits, at most 35 characters: every bank takes it as an EndToEndId.
    return "cf" + uuid.uuid4().hex[:20]


@pytest.fixture(scope="session")
def installed(adapter_name: str) -> InstalledAdapter:
    return get_adapter(adapter_name)


@pytest.fixture(scope="session")
def handle(installed: InstalledAdapter) -> Iterator[SandboxHandle]:
    hook: Callable[[], SandboxHandle] | None = getattr(installed.adapter_class, HOOK, None)
    if hook is None:
        pytest.fail(
            f"{installed.adapter_class.__qualname__} has no {HOOK}() classmethod: the kit does "
            "not know how to start its sandbox (docs/adapters.md, 'The sandbox hook')"
        )
    started = hook()
    assert isinstance(started, SandboxHandle), f"{HOOK}() returned {type(started).__name__}"
    yield started
    started.stop()


@pytest.fixture
def kit(installed: InstalledAdapter, handle: SandboxHandle) -> Iterator[Kit]:
    checked = Kit(installed, handle)
    yield checked
    checked.close()


# -- the manifest


def test_manifest_names_the_entry_point(adapter_name: str, installed: InstalledAdapter) -> None:
    manifest = installed.adapter_class.manifest
    assert isinstance(manifest, Manifest)
    assert manifest.name == adapter_name == installed.name
    assert re.fullmatch(r"[a-z][a-z0-9_]{0,63}", manifest.name), "a lower-case identifier"
    assert manifest.version
    assert manifest.display_name
    assert manifest.capabilities, "the manifest lists no capability"
    assert all(re.fullmatch(r"[A-Z]{3}", c) for c in manifest.currencies)


def test_manifest_capabilities_are_implemented(installed: InstalledAdapter) -> None:
    cls = installed.adapter_class
    assert not inspect.isabstract(cls), f"{cls.__qualname__} leaves abstract methods"
    for capability in sorted(cls.manifest.capabilities):
        interface = INTERFACES.get(capability)
        assert interface is not None, f"the SDK has no interface for {capability} yet"
        assert issubclass(cls, interface), f"{capability} is implemented by {interface.__name__}"


def test_manifest_names_idempotent_operations(installed: InstalledAdapter) -> None:
    operations = installed.adapter_class.manifest.idempotent_operations
    assert isinstance(operations, frozenset)
    assert all(isinstance(o, str) and re.fullmatch(r"[a-z][a-z0-9_.]*", o) for o in operations), (
        "operation names are the names the adapter passes to client.send()"
    )


def test_sandbox_handle_matches_the_manifest(kit: Kit) -> None:
    """What the hook returns is what an operator would POST to /v1/adapter_connections."""
    assert set(kit.handle.config) == set(kit.manifest.config_fields)
    assert set(kit.handle.credentials) == set(kit.manifest.secret_fields)
    if kit.handle.base_url:
        # The hub allows the hosts of the connection's ``*url`` settings, and only those.
        hosts = {urlsplit(v).hostname for k, v in kit.handle.config.items() if k.endswith("url")}
        assert urlsplit(kit.handle.base_url).hostname in hosts


def test_secrets_are_redacted_from_attempt_records(kit: Kit) -> None:
    _exercise(kit)
    if kit.handle.base_url:
        assert kit.records, "no call went through the hub's client (client.send)"
    for record in kit.records:
        text = json.dumps(
            [
                record.url,
                record.request_headers,
                record.request_body,
                record.response_body,
                record.error,
            ]
        )
        for field_name, secret in kit.handle.credentials.items():
            assert secret not in text, f"{field_name} appears in the record of {record.operation}"


def _exercise(kit: Kit) -> None:
    """A few calls of every capability, successful and not."""
    capabilities = kit.manifest.capabilities
    if Capability.PAYMENT_INSTITUTION in capabilities:
        payments = kit.payments
        currency = kit.payment_driver.currency
        ref = reference()
        created = payments.create_payin(PayinRequest(ref, Amount(ASKED_MINOR, currency)))
        payments.get_payin(reference=ref, provider_id=created.provider_id)
        with pytest.raises(OperationNotFound):
            payments.get_payin(reference=reference(), provider_id=None)
    if Capability.BANK_PAYOUTS in capabilities:
        bank = kit.bank
        driver = kit.bank_driver
        ref = reference()
        sent = bank.create_payout(_payout(ref, driver))
        bank.get_payout(reference=ref, provider_id=sent.provider_id)
        with pytest.raises(OperationNotFound):
            bank.get_payout(reference=reference(), provider_id=None)
    if Capability.DEALING_RATES in capabilities:
        base, quote = kit.bank_driver.quote_pair
        kit.bank.dealing_quote(base=base, quote=quote)
    if Capability.RATE_SOURCE in capabilities:
        rates = kit.rate_driver
        base, quote = rates.pair
        kit.rates.rate_for_date(base=base, quote=quote, on=rates.business_day)


# -- payment institutions


def _payin(kit: Kit) -> tuple[str, Amount, PayinResult]:
    asked = Amount(ASKED_MINOR, kit.payment_driver.currency)
    ref = reference()
    request = PayinRequest(ref, asked, description="conformance", metadata={"kit": "1"})
    return ref, asked, kit.payments.create_payin(request)


def _paid(kit: Kit) -> tuple[str, Amount, PayinResult]:
    ref, asked, created = _payin(kit)
    kit.payment_driver.pay(provider_id=created.provider_id)
    return ref, asked, created


@PAYMENTS
def test_create_payin_returns_what_was_asked(kit: Kit) -> None:
    ref, asked, created = _payin(kit)
    assert (created.reference, created.amount) == (ref, asked)
    assert created.provider_id
    assert created.outcome == Outcome.PENDING, "nobody has paid yet"


@PAYMENTS
def test_get_payin_finds_it_by_provider_id_and_by_reference(kit: Kit) -> None:
    ref, asked, created = _payin(kit)
    since = len(kit.records)
    payments = kit.payments
    for provider_id in (created.provider_id, None):  # None: the create's outcome was unknown
        found = payments.get_payin(reference=ref, provider_id=provider_id)
        assert (found.reference, found.provider_id, found.amount, found.outcome) == (
            ref,
            created.provider_id,
            asked,
            Outcome.PENDING,
        )
    kit.assert_idempotent(since, "get_payin")


@PAYMENTS
def test_get_payin_of_an_unknown_reference_raises_operation_not_found(kit: Kit) -> None:
    with pytest.raises(OperationNotFound):
        kit.payments.get_payin(reference=reference(), provider_id=None)


@PAYMENTS
def test_payin_succeeds_once_the_buyer_pays(kit: Kit) -> None:
    ref, asked, created = _paid(kit)
    found = kit.payments.get_payin(reference=ref, provider_id=created.provider_id)
    assert (found.outcome, found.amount, found.failure_code) == (Outcome.SUCCEEDED, asked, None)


@PAYMENTS
def test_refund_of_a_paid_payin(kit: Kit) -> None:
    _, asked, created = _paid(kit)
    payments = kit.payments
    ref = reference()
    refund = payments.create_refund(RefundRequest(ref, created.provider_id, asked, "requested"))
    assert (refund.reference, refund.amount) == (ref, asked)
    assert refund.outcome in (Outcome.PENDING, Outcome.SUCCEEDED), refund
    since = len(kit.records)
    for provider_id in (refund.provider_id, None):
        found = payments.get_refund(reference=ref, provider_id=provider_id)
        assert (found.provider_id, found.amount, found.outcome) == (
            refund.provider_id,
            asked,
            refund.outcome,
        )
    kit.assert_idempotent(since, "get_refund")


def _notification(kit: Kit) -> tuple[str, Amount, PayinResult, Notification]:
    ref, asked, created = _paid(kit)
    notification = kit.payment_driver.notification(provider_id=created.provider_id)
    return ref, asked, created, notification


@PAYMENTS
def test_webhook_verifies_on_its_raw_bytes_and_parses(kit: Kit) -> None:
    ref, asked, created, notification = _notification(kit)
    payments = kit.payments
    payments.verify_webhook(headers=notification.headers, body=notification.body)
    # Header names may reach the hub in any case.
    lower = {k.lower(): v for k, v in notification.headers.items()}
    payments.verify_webhook(headers=lower, body=notification.body)
    parsed = payments.parse_webhook(body=notification.body)
    assert isinstance(parsed, InboundWebhook)
    assert parsed.provider_event_id
    assert parsed.event_type
    assert (parsed.object_type, parsed.provider_id, parsed.outcome) == (
        "payin",
        created.provider_id,
        Outcome.SUCCEEDED,
    )
    assert parsed.reference in (ref, None)
    assert parsed.amount in (asked, None)
    assert parsed.occurred_at.tzinfo is not None


@PAYMENTS
def test_webhook_rejects_a_tampered_body(kit: Kit) -> None:
    _, _, _, notification = _notification(kit)
    payments = kit.payments
    body = notification.body
    middle = len(body) // 2
    for tampered in (
        body + b" ",
        body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :],
    ):
        with pytest.raises(WebhookRejected):
            payments.verify_webhook(headers=notification.headers, body=tampered)


@PAYMENTS
def test_webhook_rejects_an_unsigned_notification(kit: Kit) -> None:
    _, _, _, notification = _notification(kit)
    plain = {
        k: v
        for k, v in notification.headers.items()
        if k.lower() in ("content-type", "content-length", "user-agent", "host")
    }
    with pytest.raises(WebhookRejected):
        kit.payments.verify_webhook(headers=plain, body=notification.body)


@PAYMENTS
def test_webhook_rejects_a_stale_notification(kit: Kit) -> None:
    _, _, created, fresh = _notification(kit)
    stale = kit.payment_driver.notification(
        provider_id=created.provider_id, age_seconds=STALE_SECONDS
    )
    payments = kit.payments
    with pytest.raises(WebhookRejected):
        payments.verify_webhook(headers=stale.headers, body=stale.body)
    # A redelivery names the same event, so that the hub can drop the duplicate.
    assert (
        payments.parse_webhook(body=stale.body).provider_event_id
        == payments.parse_webhook(body=fresh.body).provider_event_id
    )


@PAYMENTS
@pytest.mark.parametrize("fault", CREATE_FAULTS)
def test_create_payin_whose_answer_is_lost(kit: Kit, fault: str) -> None:
    payments = kit.payments
    asked = Amount(ASKED_MINOR, kit.payment_driver.currency)
    ref = reference()
    _answer_lost(
        kit,
        fault,
        "create_payin",
        ref,
        asked,
        create=lambda adapter: adapter.create_payin(PayinRequest(ref, asked)),
        sync=lambda: payments.get_payin(reference=ref, provider_id=None),
    )


# -- banks


def _payout(ref: str, driver: BankDriver) -> PayoutRequest:
    beneficiary = getattr(driver, "beneficiary", BENEFICIARY)
    return PayoutRequest(ref, Amount(ASKED_MINOR, driver.currency), beneficiary, "conformance")


def _sent(kit: Kit) -> tuple[str, PayoutResult]:
    ref = reference()
    return ref, kit.bank.create_payout(_payout(ref, kit.bank_driver))


@PAYOUTS
def test_create_payout_returns_what_was_asked(kit: Kit) -> None:
    ref, sent = _sent(kit)
    assert (sent.reference, sent.amount) == (ref, Amount(ASKED_MINOR, kit.bank_driver.currency))
    assert sent.outcome in (Outcome.PENDING, Outcome.SUCCEEDED), sent


@PAYOUTS
def test_payout_followed_to_completed(kit: Kit) -> None:
    ref, sent = _sent(kit)
    kit.bank_driver.complete_payout(reference=ref, provider_id=sent.provider_id)
    since = len(kit.records)
    bank = kit.bank
    for provider_id in dict.fromkeys((sent.provider_id, None)):
        found = bank.get_payout(reference=ref, provider_id=provider_id)
        assert (found.reference, found.amount, found.outcome, found.failure_code) == (
            ref,
            sent.amount,
            Outcome.SUCCEEDED,
            None,
        )
    kit.assert_idempotent(since, "get_payout")


@PAYOUTS
def test_payout_followed_to_rejected(kit: Kit) -> None:
    ref, sent = _sent(kit)
    kit.bank_driver.reject_payout(reference=ref, provider_id=sent.provider_id)
    found = kit.bank.get_payout(reference=ref, provider_id=sent.provider_id)
    assert (found.reference, found.amount, found.outcome) == (ref, sent.amount, Outcome.FAILED)
    assert found.failure_code, "a rejection carries the hub's code from the error table"


@PAYOUTS
def test_get_payout_of_an_unknown_reference_raises_operation_not_found(kit: Kit) -> None:
    with pytest.raises(OperationNotFound):
        kit.bank.get_payout(reference=reference(), provider_id=None)


@PAYOUTS
@pytest.mark.parametrize("fault", CREATE_FAULTS)
def test_create_payout_whose_answer_is_lost(kit: Kit, fault: str) -> None:
    bank = kit.bank
    driver = kit.bank_driver
    ref = reference()
    _answer_lost(
        kit,
        fault,
        "create_payout",
        ref,
        Amount(ASKED_MINOR, driver.currency),
        create=lambda adapter: adapter.create_payout(_payout(ref, driver)),
        sync=lambda: bank.get_payout(reference=ref, provider_id=None),
    )


@dataclass(frozen=True)
class _Entry:
    end_to_end_ids: tuple[str, ...]
    amount: str
    currency: str | None
    direction: str | None


def _camt053(content: bytes) -> tuple[set[str], list[_Entry]]:
    """The accounts and entries of a camt.053 document."""
    assert b"<!DOCTYPE" not in content, "a statement carries no DTD"
    assert b"<!ENTITY" not in content, "a statement carries no entity"
    root = ET.fromstring(content)  # noqa: S314 (DTDs refused above)
    found = CAMT053.fullmatch(root.tag)
    assert found, f"not a camt.053.001 document: {root.tag}"
    ns = {"c": found.group(1)}
    accounts = {
        (e.text or "").strip()
        for path in ("c:Acct/c:Id/c:IBAN", "c:Acct/c:Id/c:Othr/c:Id")
        for e in root.iterfind(f"c:BkToCstmrStmt/c:Stmt/{path}", ns)
    }
    entries = []
    for entry in root.iterfind("c:BkToCstmrStmt/c:Stmt/c:Ntry", ns):
        amount = entry.find("c:Amt", ns)
        refs = entry.iterfind("c:NtryDtls/c:TxDtls/c:Refs/c:EndToEndId", ns)
        entries.append(
            _Entry(
                end_to_end_ids=tuple((e.text or "").strip() for e in refs),
                amount=(amount.text or "").strip() if amount is not None else "",
                currency=amount.get("Ccy") if amount is not None else None,
                direction=entry.findtext("c:CdtDbtInd", namespaces=ns),
            )
        )
    return accounts, entries


@STATEMENTS
def test_statement_is_camt053_listing_the_completed_payout(kit: Kit) -> None:
    driver = kit.bank_driver
    ref, sent = _sent(kit)
    driver.complete_payout(reference=ref, provider_id=sent.provider_id)
    today = datetime.now(UTC).date()
    statement = kit.bank.fetch_statement(
        StatementRequest(driver.statement_account, today - timedelta(days=1), today + timedelta(1))
    )
    assert "xml" in statement.media_type
    accounts, entries = _camt053(statement.content)
    assert accounts == {driver.statement_account}
    mine = [e for e in entries if ref in e.end_to_end_ids]
    assert len(mine) == 1, f"{len(mine)} entries with EndToEndId {ref}"
    assert Decimal(mine[0].amount) == minor_to_decimal(ASKED_MINOR, driver.currency)
    assert (mine[0].currency, mine[0].direction) == (driver.currency, "DBIT")


@DEALING
def test_dealing_quote_is_a_positive_decimal(kit: Kit) -> None:
    base, quote = kit.bank_driver.quote_pair
    rate = kit.bank.dealing_quote(base=base, quote=quote)
    assert (rate.base, rate.quote) == (base, quote)
    assert isinstance(rate.rate, Decimal)
    assert rate.rate.is_finite()
    assert rate.rate > 0
    assert rate.as_of.tzinfo is not None
    assert rate.source
    assert rate.valid_until is None or rate.valid_until > rate.as_of


# -- rate sources


@RATES
def test_rate_for_a_business_day(kit: Kit) -> None:
    driver = kit.rate_driver
    base, quote = driver.pair
    day = driver.business_day
    assert day.weekday() < 5, "the driver's business_day is a weekday"
    rate = kit.rates.rate_for_date(base=base, quote=quote, on=day)
    assert (rate.base, rate.quote, rate.date) == (base, quote, day)
    assert isinstance(rate.rate, Decimal)
    assert rate.rate.is_finite()
    assert rate.rate > 0
    assert rate.source


@RATES
def test_rate_for_a_weekend_falls_back_to_the_last_business_day(kit: Kit) -> None:
    driver = kit.rate_driver
    base, quote = driver.pair
    day = driver.business_day
    saturday = day + timedelta(days=5 - day.weekday())
    rates = kit.rates
    for on in (saturday, saturday + timedelta(days=1)):
        rate = rates.rate_for_date(base=base, quote=quote, on=on)
        assert isinstance(rate.date, date)
        assert rate.date.weekday() < 5
        assert day <= rate.date < saturday, f"{on} fell back to {rate.date}"
        assert rate.rate == rates.rate_for_date(base=base, quote=quote, on=rate.date).rate


# -- lost answers


def _answer_lost(
    kit: Kit,
    fault: str,
    operation: str,
    ref: str,
    asked: Amount,
    *,
    create: Callable[[Any], Any],
    sync: Callable[[], Any],
) -> None:
    """The institution processes the create, then its answer is lost (``fault``). The adapter
    must say ``unknown`` (``UnknownOutcome`` / ``AdapterTimeout``), never success or failure,
    unless the manifest declares the create idempotent and the hub's retry got the original
    answer back; either way the institution holds exactly one object, and a status sync by
    reference finds it."""
    driver = kit.handle.driver
    if not isinstance(driver, FaultDriver):
        pytest.skip("the sandbox injects no faults (no FaultDriver)")
    # A client that gives up soon after the request was sent, as the hub's would, only sooner.
    impatient = kit.build(read_timeout=FAULT_READ_TIMEOUT)
    driver.inject_fault(operation=operation, fault=fault)
    result: Any = None
    try:
        result = create(impatient)
    except UnknownOutcome:
        pass
    except AdapterError as exc:
        pytest.fail(
            f"false failure: {operation} raised {type(exc).__name__} ({exc}) although the "
            "institution processed it; a lost answer is an UnknownOutcome"
        )
    sent = kit.operations()
    assert sent, f"{operation} made no call through the hub's client"
    idempotent = kit.manifest.is_idempotent(sent[0])
    if not idempotent:
        assert result is None, (
            f"false {result.outcome.value}: {operation} ({sent[0]!r} is not idempotent) "
            f"returned {result} although the answer was lost; it must raise UnknownOutcome"
        )
        assert len(sent) == 1, f"a non-idempotent {sent[0]!r} was sent {len(sent)} times"
    elif result is not None:
        assert result.amount == asked, result
        assert result.outcome != Outcome.FAILED, result
    held = driver.count(reference=ref)
    retried = f" after {len(sent)} attempts: is {sent[0]!r} idempotent there?" if held > 1 else ""
    assert held == 1, f"the institution holds {held} objects for {ref}{retried}"
    found = sync()
    assert (found.reference, found.amount) == (ref, asked)
    if result is not None and result.provider_id:
        assert found.provider_id == result.provider_id
