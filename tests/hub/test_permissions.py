"""The access matrix: every endpoint and method, called by every role, without a key, with a
malformed header, with a revoked key, and on another tenant's object.

``TABLE`` has one row per (method, URL name) of hub.urls; ``test_every_endpoint_has_a_row`` walks
the URL patterns so that a new endpoint or method without a row fails. The expected outcome of
each call follows from its row:

- a role in ``allowed`` gets ``ok``; any other role gets 403 ``role_forbidden``;
- no key is 401 ``api_key_missing``, a malformed header 401 ``invalid_authorization_header``,
  a revoked key 401 ``invalid_api_key`` (``public`` endpoints ignore the header altogether,
  ``open`` ones need no key but refuse one that does not authenticate);
- another tenant's object (``tenants["other_merchant"]``'s) is 404 ``resource_missing`` for every
  allowed role but the operator, who sees all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.urls import URLPattern, get_resolver, reverse
from django.utils import timezone

from fx.models import FxConversion, FxQuote
from hub.api.base import HubAPIView
from hub.crypto import encrypt
from hub.models import (
    AdapterConnection,
    AdapterOperation,
    Event,
    OperatorTask,
    Participant,
    WebhookDelivery,
)
from hub.sandbox import make_uscc
from hub.services.events import event_emit
from hub.services.webhooks import event_dispatch, webhook_endpoint_create
from settlement.ledger import TransferSpec, transfer_create
from settlement.models import Account
from settlement.models_payins import Payin, Refund, SettlementRun
from settlement.models_payouts import Payout, PayoutBankAccount
from settlement.runs import last_closed_day
from tests.access import (
    ALL,
    KEY,
    OPEN,
    OPERATOR,
    PUBLIC,
    ROLES,
    WRITERS,
    Row,
)
from tests.conftest import Tenant, api_key_of, error_of, row_counts
from tests.factories import issue_key, make_participant, principal_for
from tests.fx import access_audit as audit_access
from tests.fx import access_verification as verification_access
from tests.trade import access as trade_access

ONBOARD = {
    "role": "merchant",
    "legal_name": "Rizhao Matrix Trading Co., Ltd.",
    "country": "CN",
    "registration_id": make_uscc("371100", "MA8X0001"),
}
UPDATE = {"metadata": {"k": "v"}}
HOOK_URL = "https://receiver.example/hooks"
HOOK = {"url": HOOK_URL, "enabled_events": ["*"]}
DESCRIBE = {"description": "x"}
NOTHING: dict[str, Any] = {}
SANDBOX_BANK = {"base_url": "http://127.0.0.1:9/", "client_id": "weihai-hub"}


def enable_bank(tenants: dict[str, Tenant]) -> dict[str, Any]:
    return {
        "participant": tenants["bank"].id,
        "adapter": "bank",
        "config": SANDBOX_BANK,
        "credentials": {"signing_key": "k" * 32},
        "sandbox": True,
    }


ACCOUNTANTS = frozenset({"operator", "merchant"})


def open_account(tenants: dict[str, Tenant]) -> dict[str, Any]:
    # The merchant opens its own; the operator opens one for the merchant.
    return {"currency": "CNY", "kind": "merchant_settlement", "owner": tenants["merchant"].id}


def _transfer_body(tenants: dict[str, Tenant]) -> dict[str, Any]:
    return {
        "debit_account": _account_of(tenants["operator"]),
        "credit_account": _account_of(tenants["merchant"]),
        "amount": {"amount": "1.00", "currency": "CNY"},
    }


def one_transfer(tenants: dict[str, Tenant]) -> dict[str, Any]:
    return _transfer_body(tenants)


def a_batch(tenants: dict[str, Tenant]) -> dict[str, Any]:
    return {"transfers": [_transfer_body(tenants)] * 2, "atomic": True}


DISABLE = {"status": "disabled"}
RESOLVE = {"note": "checked with the bank by phone"}

# payouts

MERCHANT = frozenset({"merchant"})
PAYOUT_READERS = frozenset({"merchant", "operator"})
PAYEE = {
    "account_number": "6217000010001234567",
    "account_name": "Rizhao Matrix Trading Co., Ltd.",
    "bank_code": "CCBCCNBJ",
    "country": "CN",
    "currency": "CNY",
}


def _payee(owner: Participant) -> PayoutBankAccount:
    return PayoutBankAccount.objects.create(
        livemode=False,
        owner=owner,
        account_number_encrypted=encrypt(PAYEE["account_number"]),
        account_number_last4="4567",
        account_number_hash=f"hash-{owner.pk}",
        account_name=PAYEE["account_name"],
        bank_code=PAYEE["bank_code"],
        country="CN",
        currency="CNY",
    )


def _funded(owner: Participant) -> str:
    account = Account.objects.create(
        livemode=False, owner=owner, currency="CNY", kind="merchant_settlement"
    )
    equity = Account.objects.create(
        livemode=False, owner=_operator(), currency="CNY", kind="equity"
    )
    transfer_create(
        livemode=False,
        spec=TransferSpec(
            debit_account_id=equity.pk, credit_account_id=account.pk, amount=100_00, currency="CNY"
        ),
    )
    return account.pk


def a_payout(tenants: dict[str, Tenant]) -> dict[str, Any]:
    merchant = tenants["merchant"].participant
    _connection(tenants["bank"])  # a bank that pays out CNY
    return {
        "source_account": _funded(merchant),
        "bank_account": _payee(merchant).pk,
        "amount": {"amount": "10.00", "currency": "CNY"},
        "reference": "matrix-payout",
    }


def _payout(tenant: Tenant) -> str:
    owner = tenant.participant
    payout = Payout.objects.create(
        livemode=False,
        merchant=owner,
        source_account_id=_funded(owner),
        bank_account=_payee(owner),
        amount=10_00,
        currency="CNY",
        reference=f"matrix-{owner.pk[-8:]}",
        connection_id=_connection(tenant),
    )
    return payout.pk


# payins, refunds, fees and settlement runs

PAYIN_READERS = frozenset({"merchant", "payment_institution", "operator"})
RUN_READERS = frozenset({"payment_institution", "operator"})
A_FEE = {"percent_bps": 120, "fixed": {"amount": "0.50", "currency": "CNY"}}


def _collector(tenant: Tenant) -> Participant:
    """The institution that collects the tenant's payins: itself if it is one, else a new one."""
    owner = tenant.participant
    return (
        owner
        if owner.role == "payment_institution"
        else make_participant(role="payment_institution")
    )


def _payin(
    tenant: Tenant, *, status: str = "succeeded", institution: Participant | None = None
) -> Payin:
    owner = tenant.participant
    merchant = owner if owner.role == "merchant" else make_participant(role="merchant")
    institution = institution or _collector(tenant)
    connection = AdapterConnection.objects.filter(
        participant=institution
    ).first() or AdapterConnection.objects.get(
        pk=_connection(Tenant(institution, ""), "stripe_like")
    )
    account = Account.objects.create(
        livemode=False, owner=merchant, currency="CNY", kind="merchant_settlement"
    )
    return Payin.objects.create(
        livemode=False,
        merchant=merchant,
        account=account,
        connection=connection,
        amount=100_00,
        currency="CNY",
        reference=f"matrix-{account.pk[-12:]}",
        status=status,
    )


def a_payin(tenants: dict[str, Tenant]) -> dict[str, Any]:
    _connection(tenants["payment_institution"], "stripe_like")  # collects CNY
    return {
        "account": _account_of(tenants["merchant"]),
        "amount": {"amount": "10.00", "currency": "CNY"},
        "reference": "matrix-payin",
    }


def a_refund(tenants: dict[str, Tenant]) -> dict[str, Any]:
    payin = _payin(
        tenants["merchant"],
        status="settled",
        institution=tenants["payment_institution"].participant,
    )
    # Settled: the refund holds the merchant's money, which the account has.
    transfer_create(
        livemode=False,
        spec=TransferSpec(
            debit_account_id=Account.objects.create(
                livemode=False, owner=_operator(), currency="CNY", kind="equity"
            ).pk,
            credit_account_id=payin.account_id,
            amount=100_00,
            currency="CNY",
        ),
    )
    return {
        "payin": payin.pk,
        "amount": {"amount": "1.00", "currency": "CNY"},
        "reference": "matrix-refund",
    }


def _refund(tenant: Tenant) -> str:
    payin = _payin(tenant)
    refund = Refund.objects.create(
        livemode=False,
        payin=payin,
        merchant=payin.merchant,
        amount=1_00,
        currency="CNY",
        reference=f"matrix-{payin.pk[-12:]}",
        netted=True,
    )
    return refund.pk


def _closed_day() -> date:
    return last_closed_day("Asia/Seoul", timezone.now()) - timedelta(days=1)


def a_run(tenants: dict[str, Tenant]) -> dict[str, Any]:
    return {
        "institution": tenants["payment_institution"].id,
        "currency": "CNY",
        "business_date": _closed_day().isoformat(),
    }


def _run(tenant: Tenant) -> str:
    institution = _collector(tenant)
    run = SettlementRun.objects.create(
        livemode=False,
        institution=institution,
        currency="CNY",
        business_date=_closed_day(),
        time_zone="Asia/Seoul",
        cutoff_at=timezone.now() - timedelta(days=1),
        status="completed",
    )
    return run.pk


# fx

A_QUOTE = {
    "sell": {"currency": "CNY", "amount": "10.00"},
    "buy": {"currency": "KRW"},
    "lock_seconds": 60,
}


def _fx_quote(tenant: Tenant) -> FxQuote:
    owner = tenant.participant
    merchant = owner if owner.role == "merchant" else make_participant(role="merchant")
    return FxQuote.objects.create(
        livemode=False,
        merchant=merchant,
        sell_currency="CNY",
        buy_currency="KRW",
        fixed_side="sell",
        sell_amount=10_00,
        margin_amount=5,
        buy_amount=1900,
        reference_rate="190.5",
        rate_source="ECB",
        rate_date=date(2026, 10, 30),
        margin_bps=50,
        tier="standard",
        expires_at=timezone.now() + timedelta(minutes=5),
    )


def _merchant_accounts(merchant: Participant) -> tuple[str, str]:
    cny, krw = (
        Account.objects.create(
            livemode=False, owner=merchant, currency=currency, kind="merchant_settlement"
        ).pk
        for currency in ("CNY", "KRW")
    )
    return cny, krw


def a_conversion(tenants: dict[str, Tenant]) -> dict[str, Any]:
    quote = _fx_quote(tenants["merchant"])
    cny = _funded(tenants["merchant"].participant)
    krw = Account.objects.create(
        livemode=False, owner=quote.merchant, currency="KRW", kind="merchant_settlement"
    ).pk
    return {"quote": quote.pk, "sell_account": cny, "buy_account": krw, "reference": "matrix"}


def _fx_conversion(tenant: Tenant) -> str:
    quote = _fx_quote(tenant)
    cny, krw = _merchant_accounts(quote.merchant)
    conversion = FxConversion.objects.create(
        livemode=False,
        merchant=quote.merchant,
        quote=quote,
        sell_account_id=cny,
        buy_account_id=krw,
        sell_currency="CNY",
        buy_currency="KRW",
        sell_amount=quote.sell_amount,
        margin_amount=quote.margin_amount,
        buy_amount=quote.buy_amount,
        reference=f"matrix-{quote.pk[-12:]}",
    )
    return conversion.pk


def a_tier(tenants: dict[str, Tenant]) -> dict[str, Any]:
    return {"merchant": tenants["merchant"].id, "tier": "premier"}


def an_auto_conversion(tenants: dict[str, Tenant]) -> dict[str, Any]:
    cny, krw = _merchant_accounts(tenants["merchant"].participant)
    return {"from_account": krw, "to_account": cny}


# fmt: off
TABLE = [
    #   method  URL name                   allowed   ok   object in the URL   body
    Row("GET",  "health",                  ALL, auth=PUBLIC),
    Row("GET",  "openapi",                 ALL, auth=OPEN),
    Row("GET",  "docs",                    ALL, auth=OPEN),
    Row("GET",  "me",                      ALL),
    Row("GET",  "participants",            ALL),
    Row("POST", "participants",            OPERATOR, 201, None,               ONBOARD),
    Row("GET",  "participant",             ALL,      200, "participant",      echo=True),
    Row("POST", "participant",             OPERATOR, 200, "participant",      UPDATE, echo=True),
    Row("GET",  "api_keys",                ALL,      200, "participant"),
    Row("POST", "api_keys",                OPERATOR, 201, "participant",      NOTHING),
    Row("POST", "api_key_revoke",          ALL,      200, "api_key",          NOTHING, echo=True),
    Row("POST", "api_key_rotate",          ALL,      201, "api_key",          NOTHING),
    Row("GET",  "events",                  ALL),
    Row("GET",  "event",                   ALL,      200, "event",            echo=True),
    Row("GET",  "webhook_endpoints",       ALL),
    Row("POST", "webhook_endpoints",       WRITERS,  201, None,               HOOK),
    Row("GET",  "webhook_endpoint",        ALL,      200, "webhook_endpoint", echo=True),
    Row("POST", "webhook_endpoint",        WRITERS,  200, "webhook_endpoint", DESCRIBE, echo=True),
    Row("POST", "webhook_endpoint_rotate", WRITERS,  200, "webhook_endpoint", NOTHING, echo=True),
    Row("GET",  "webhook_deliveries",      ALL,      200, "webhook_endpoint"),
    Row("GET",  "webhook_delivery",        ALL,      200, "webhook_delivery", echo=True),
    Row("POST", "webhook_delivery_replay", WRITERS,  201, "webhook_delivery", NOTHING),
    Row("GET",  "audit_entries",           ALL),
    Row("GET",  "adapters",                OPERATOR),
    Row("GET",  "adapter_connections",     ALL),
    Row("POST", "adapter_connections",     OPERATOR, 201, None,               enable_bank),
    Row("GET",  "adapter_connection",      ALL,      200, "adapter_connection", echo=True),
    Row("POST", "adapter_connection",      OPERATOR, 200, "adapter_connection", DISABLE, echo=True),
    Row("GET",  "adapter_operations",      ALL),
    Row("GET",  "adapter_operation",       ALL,      200, "adapter_operation", echo=True),
    Row("POST", "adapter_operation_sync",  OPERATOR, 202, "adapter_operation", NOTHING, echo=True),
    Row("GET",  "operator_tasks",          OPERATOR),
    Row("POST", "operator_task_resolve",   OPERATOR, 200, "operator_task",    RESOLVE, echo=True),
    Row("GET",  "accounts",                WRITERS),
    Row("POST", "accounts",                ACCOUNTANTS, 201, None,            open_account),
    Row("GET",  "account",                 WRITERS,  200, "account",          echo=True),
    Row("GET",  "account_balance",         WRITERS,  200, "account"),
    Row("GET",  "transfers",               WRITERS),
    Row("POST", "transfers",               OPERATOR, 201, None,               one_transfer),
    Row("POST", "transfers_batch",         OPERATOR, 201, None,               a_batch),
    Row("GET",  "transfer",                WRITERS,  200, "transfer",         echo=True),
    Row("POST", "transfer_post",           OPERATOR, 201, "pending_transfer", NOTHING),
    Row("POST", "transfer_void",           OPERATOR, 201, "pending_transfer", NOTHING),
    # -- bank statements and reconciliation (rows below) --
    # The upload is multipart/form-data: the JSON body sent here is 415 once access is granted.
    Row("POST", "bank_statements",         frozenset({"bank", "operator"}), 415, None, NOTHING),
    Row("GET",  "bank_statements",         frozenset({"bank", "operator"})),
    Row("GET",  "bank_statement",          frozenset({"bank", "operator"}), 200, "bank_statement",
        echo=True),
    Row("GET",  "bank_statement_lines",    frozenset({"bank", "operator"}), 200, "bank_statement"),
    Row("POST", "bank_statement_reconcile", OPERATOR, 201, "bank_statement",  NOTHING),
    Row("GET",  "reconciliation_run",      OPERATOR, 200, "reconciliation_run", echo=True),
    Row("GET",  "reconciliation_exceptions", OPERATOR),
    Row("POST", "reconciliation_exception_resolve", OPERATOR, 200, "reconciliation_exception",
        RESOLVE, echo=True),
    # -- end of bank statements and reconciliation --
    # -- account statements (rows below) --
    Row("GET",  "account_statement",       WRITERS,  200, "account"),
    # -- end of account statements --
    Row("GET",  "payout_bank_accounts",    PAYOUT_READERS),
    Row("POST", "payout_bank_accounts",    MERCHANT, 201, None,               PAYEE),
    Row("GET",  "payout_bank_account",     PAYOUT_READERS, 200, "payout_bank_account", echo=True),
    Row("GET",  "payouts",                 PAYOUT_READERS),
    Row("POST", "payouts",                 MERCHANT, 201, None,               a_payout),
    Row("GET",  "payout",                  PAYOUT_READERS, 200, "payout",    echo=True),
    # -- payins, refunds, fees and settlement runs (rows below) --
    Row("GET",  "payins",                  PAYIN_READERS),
    Row("POST", "payins",                  MERCHANT, 201, None,               a_payin),
    Row("GET",  "payin",                   PAYIN_READERS, 200, "payin",      echo=True),
    Row("GET",  "refunds",                 PAYIN_READERS),
    Row("POST", "refunds",                 MERCHANT, 201, None,               a_refund),
    Row("GET",  "refund",                  PAYIN_READERS, 200, "refund",     echo=True),
    Row("GET",  "fee_rules",               OPERATOR),
    Row("POST", "fee_rules",               OPERATOR, 201, None,               A_FEE),
    Row("GET",  "settlement_runs",         RUN_READERS),
    Row("POST", "settlement_runs",         OPERATOR, 202, None,               a_run),
    Row("GET",  "settlement_run",          RUN_READERS, 200, "settlement_run", echo=True),
    Row("GET",  "settlement_run_report",   RUN_READERS, 200, "settlement_run"),
    # -- end of payins, refunds, fees and settlement runs --
    # -- fx (rows below) --
    # Rates need their parameters: 400 once access is granted.
    Row("GET",  "fx_rates",                ALL,      400),
    Row("GET",  "fx_rates_history",        ALL,      400),
    Row("POST", "fx_quotes",               MERCHANT, 201, None,               A_QUOTE),
    Row("GET",  "fx_quote",                ACCOUNTANTS, 200, "fx_quote",     echo=True),
    Row("GET",  "fx_conversions",          ACCOUNTANTS),
    Row("POST", "fx_conversions",          MERCHANT, 201, None,               a_conversion),
    Row("GET",  "fx_conversion",           ACCOUNTANTS, 200, "fx_conversion", echo=True),
    Row("POST", "fx_tiers",                OPERATOR, 200, None,               a_tier),
    Row("GET",  "fx_auto_conversions",     ACCOUNTANTS),
    Row("POST", "fx_auto_conversions",     MERCHANT, 201, None,               an_auto_conversion),
    Row("GET",  "fx_report_daily",         OPERATOR, 400),
    # -- end of fx --
    # Institutions authenticate notifications by signature, not API key: unsigned is 401 for all.
    Row("POST", "inbound_webhook",         ALL,      401, "inbound_connection", auth=PUBLIC),
]
# fmt: on
# Each later area keeps its rows, and the makers of the objects they name, beside its tests.
AREAS = (trade_access, verification_access, audit_access)
for _area in AREAS:
    TABLE += _area.ROWS


def routes() -> dict[str, URLPattern]:
    result = {}
    for pattern in get_resolver().url_patterns:
        assert isinstance(pattern, URLPattern), f"{pattern} is an include(): walk it too"
        assert pattern.name, f"{pattern} has no name"
        result[pattern.name] = pattern
    return result


def offered_methods(pattern: URLPattern) -> set[str]:
    view = pattern.callback.view_class  # type: ignore[attr-defined]
    if issubclass(view, HubAPIView):
        return set(view.access)
    return {"GET"}  # the schema and docs views of drf-spectacular


def test_every_endpoint_has_a_row():
    offered = {
        (method, name) for name, pattern in routes().items() for method in offered_methods(pattern)
    }
    tabled = [(row.method, row.name) for row in TABLE]
    assert len(tabled) == len(set(tabled)), "a (method, name) appears twice in TABLE"
    assert offered - set(tabled) == set(), "endpoints without a row in TABLE"
    assert set(tabled) - offered == set(), "rows in TABLE for endpoints that do not exist"


def test_the_regulator_writes_only_its_own_keys():
    regulator_writes = {
        row.name
        for row in TABLE
        if row.method != "GET" and "regulator" in row.allowed and row.auth == KEY
    }
    assert regulator_writes == {"api_key_revoke", "api_key_rotate"}


# Objects each caller acts on


def _event(tenant: Tenant) -> str:
    with transaction.atomic():
        return event_emit(
            type="participant.updated", owner=tenant.participant, livemode=False, data={}
        ).pk


def _endpoint(tenant: Tenant) -> str:
    endpoint, _ = webhook_endpoint_create(
        actor=principal_for(tenant.participant), url=HOOK_URL, enabled_events=["*"]
    )
    return endpoint.pk


def _delivery(tenant: Tenant) -> str:
    endpoint_id = _endpoint(tenant)
    # Creating the endpoint emitted webhook_endpoint.created for its owner: fan it out.
    event = Event.objects.filter(participant=tenant.participant).latest("pk")
    assert event_dispatch(event_id=event.pk) == 1
    return WebhookDelivery.objects.get(endpoint_id=endpoint_id).pk


def _connection(tenant: Tenant, adapter: str = "bank") -> str:
    credentials = (
        {"signing_key": "k" * 32}
        if adapter == "bank"
        else {"secret_key": "sk_test_x", "webhook_secret": "whsec_x"}
    )
    connection = AdapterConnection.objects.create(
        participant=tenant.participant,
        adapter=adapter,
        livemode=False,
        sandbox=True,
        config=SANDBOX_BANK if adapter == "bank" else {"base_url": "http://127.0.0.1:9/"},
        credentials_encrypted=encrypt(json.dumps(credentials)),
    )
    return connection.pk


def _operation(tenant: Tenant) -> str:
    operation = AdapterOperation.objects.create(
        connection_id=_connection(tenant),
        kind="payout",
        reference=f"po_{tenant.id[-12:]}",
        request={},
        amount_minor=100_00,
        currency="CNY",
        state="unknown",
    )
    return operation.pk


def _task(tenant: Tenant) -> str:
    operation = AdapterOperation.objects.get(pk=_operation(tenant))
    task = OperatorTask.objects.create(
        kind="operation_unresolved",
        participant=tenant.participant,
        livemode=False,
        operation=operation,
        summary="still unknown",
    )
    return task.pk


# The kind of account each role holds (the regulator holds none: its URLs name the operator's).
KIND_OF = {
    "merchant": "merchant_settlement",
    "payment_institution": "institution_receivable",
    "bank": "bank_cash",
    "insurer": "insurance_premium",
    "operator": "equity",
}


def _account_of(tenant: Tenant) -> str:
    role = tenant.participant.role
    owner = tenant.participant if role in KIND_OF else _operator()
    account = Account.objects.create(
        livemode=False, owner=owner, currency="CNY", kind=KIND_OF[owner.role]
    )
    return account.pk


def _operator() -> Participant:
    found = Participant.objects.filter(role="operator").order_by("pk").first()
    return found or make_participant(role="operator")


def _transfer(tenant: Tenant, *, pending: bool = False) -> str:
    equity = Account.objects.create(
        livemode=False, owner=_operator(), currency="CNY", kind="equity"
    )
    transfer, _ = transfer_create(
        livemode=False,
        spec=TransferSpec(
            debit_account_id=equity.pk,
            credit_account_id=_account_of(tenant),
            amount=1_00,
            currency="CNY",
            pending=pending,
        ),
    )
    return transfer.id


# bank statements and reconciliation

STATEMENT_CSV = b"booking_date,amount,reference\n2026-11-02,100.00,R-1\n"
STATEMENT_MAPPING = {
    "booking_date": "booking_date",
    "amount": "amount",
    "reference": "reference",
    "fixed_currency": "CNY",
}


def _bank_statement(tenant: Tenant) -> str:
    """A statement the tenant reported if it is a bank, else one of a bank of its own."""
    from settlement.statements_service import bank_statement_import

    owner = tenant.participant
    bank = owner if owner.role == "bank" else make_participant(role="bank")
    account = Account.objects.create(livemode=False, owner=bank, currency="CNY", kind="bank_cash")
    imported = bank_statement_import(
        actor=principal_for(bank),
        data=STATEMENT_CSV,
        filename="statement.csv",
        account_id=account.pk,
        csv_mapping=STATEMENT_MAPPING,
    )
    return imported.statements[0].statement.pk


def _reconciliation_run(tenant: Tenant) -> str:
    from settlement.reconcile import MatchRules
    from settlement.statements_service import reconciliation_run

    run = reconciliation_run(
        actor=principal_for(_operator()), statement_id=_bank_statement(tenant), rules=MatchRules()
    )
    return run.pk


def _reconciliation_exception(tenant: Tenant) -> str:
    from settlement.models import ReconciliationException

    # The statement's one line has no transfer to match: one open exception.
    return ReconciliationException.objects.get(run_id=_reconciliation_run(tenant)).pk


MAKERS: dict[str, Callable[[Tenant], str]] = {
    "payout_bank_account": lambda tenant: _payee(tenant.participant).pk,
    "payout": _payout,
    "payin": lambda tenant: _payin(tenant).pk,
    "refund": _refund,
    "settlement_run": _run,
    "fx_quote": lambda tenant: _fx_quote(tenant).pk,
    "fx_conversion": _fx_conversion,
    "account": _account_of,
    "transfer": _transfer,
    "pending_transfer": lambda tenant: _transfer(tenant, pending=True),
    "adapter_connection": _connection,
    "inbound_connection": lambda tenant: _connection(tenant, "stripe_like"),
    "adapter_operation": _operation,
    "operator_task": _task,
    "participant": lambda tenant: tenant.id,
    "api_key": lambda tenant: api_key_of(issue_key(tenant.participant)).pk,
    "event": _event,
    "webhook_endpoint": _endpoint,
    "webhook_delivery": _delivery,
    "bank_statement": _bank_statement,
    "reconciliation_run": _reconciliation_run,
    "reconciliation_exception": _reconciliation_exception,
}
for _area in AREAS:
    MAKERS.update(_area.MAKERS)


def url_for(row: Row, object_id: str | None) -> str:
    pattern = routes()[row.name]
    kwargs = {}
    if row.target is not None:
        [kwarg] = pattern.pattern.regex.groupindex
        kwargs[kwarg] = object_id
    return reverse(row.name, kwargs=kwargs)


# Who calls, and what each should get

CALLERS = (*ROLES, "no key", "malformed header", "revoked key")


def expected(row: Row, caller: str, foreign: bool) -> tuple[int, str | None]:
    if caller == "no key":
        return (401, "api_key_missing") if row.auth == KEY else (row.ok, None)
    if caller == "malformed header":
        return (row.ok, None) if row.auth == PUBLIC else (401, "invalid_authorization_header")
    if caller == "revoked key":
        return (row.ok, None) if row.auth == PUBLIC else (401, "invalid_api_key")
    if row.auth != KEY:
        return row.ok, None
    if caller not in row.allowed:
        return 403, "role_forbidden"
    if foreign and caller not in row.sees_all:
        return 404, "resource_missing"
    return row.ok, None


CASES = [
    pytest.param(row, caller, False, id=f"{row} as {caller}") for row in TABLE for caller in CALLERS
] + [
    pytest.param(row, role, True, id=f"{row} on another tenant's object as {role}")
    for row in TABLE
    if row.target is not None
    for role in ROLES
]


def authorization(caller: str, tenants: dict[str, Tenant]) -> dict[str, str]:
    if caller == "no key":
        return {}
    if caller == "malformed header":
        return {"Authorization": f"Token {tenants['operator'].key}"}
    if caller == "revoked key":
        secret = issue_key(tenants["operator"].participant)
        key = api_key_of(secret)
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        return {"Authorization": f"Bearer {secret}"}
    return {"Authorization": f"Bearer {tenants[caller].key}"}


@pytest.mark.parametrize(("row", "caller", "foreign"), CASES)
def test_access(api, tenants, row, caller, foreign):
    owner = tenants["other_merchant"] if foreign else tenants.get(caller, tenants["operator"])
    object_id = MAKERS[row.target](owner) if row.target else None
    url = url_for(row, object_id)
    headers = authorization(caller, tenants)
    before = row_counts()

    if row.method == "GET":
        response = api.client.get(url, headers=headers)
    else:
        body = row.body(tenants) if callable(row.body) else row.body
        response = api.client.post(url, body, content_type="application/json", headers=headers)

    status, code = expected(row, caller, foreign)
    assert response.status_code == status, response.content[:300]
    if code is not None:
        assert error_of(response)["code"] == code
        assert row_counts() == before
    elif row.echo:
        assert response.json()["id"] == object_id
