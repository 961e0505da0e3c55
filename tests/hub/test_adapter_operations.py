"""The hub's side of adapters, end to end over real loopback sockets against the sandbox bank:
connections made by the operator, payouts submitted and synced, every fault on the wire, the
circuit breaker kept in the database, the bounded sync schedule and the operator's queue, amount
checks, the repair task on a real Celery worker, and the attempt log an operator reads."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

import hub.tasks_adapters
from adapters.interface import Amount, Outcome
from adapters.sandbox.bank import BankSandbox
from hub import errors
from hub.crypto import decrypt
from hub.models import (
    AdapterConnection,
    AdapterOperation,
    CircuitState,
    Event,
    OperatorTask,
    OutboundAttempt,
)
from hub.services.adapters.connections import adapter_connection_enable, connection_payload
from hub.services.adapters.operations import (
    Observation,
    operation_observe,
    operation_payload,
    operation_submit,
    operation_sync,
    operations_claim_due,
    operations_due,
)
from hub.tasks_adapters import adapter_repair_task
from tests.conftest import Api, Tenant, error_of, needs_postgres, row_counts
from tests.factories import issue_key, principal_for
from tests.support.adapters import (
    BANK_CLIENT_ID,
    BANK_SIGNING_KEY,
    CLIENT_READ_TIMEOUT,
    PSP_SECRET_KEY,
    Control,
    adapter_counts,
    attempts,
    bank_payout_directly,
    connect,
    events,
    fast_adapters,
    payout,
    reload,
    rows_holding,
)
from tests.support.worker import wait_until

State = AdapterOperation.State


@pytest.fixture
def conn(tenants: dict[str, Tenant], bank: BankSandbox, settings: Any) -> AdapterConnection:
    fast_adapters(settings)
    return connect(
        operator=tenants["operator"].participant,
        participant=tenants["bank"].participant,
        adapter="bank",
        base_url=bank.base_url,
    )


def submit(conn: AdapterConnection, reference: str, **kwargs: Any) -> AdapterOperation:
    return operation_submit(connection_id=conn.pk, request=payout(reference, **kwargs))


def sync(operation: AdapterOperation) -> AdapterOperation:
    return operation_sync(operation_id=operation.pk)


class SentSyncs:
    """Stands in for the sync task: the operations a sweep sends, in order."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def apply_async(self, kwargs: dict[str, str], **options: Any) -> None:
        self.sent.append(kwargs["operation_id"])


# --- 1. connections, through the API, as the operator ----------------------------------------


def bank_connection_body(
    tenants: dict[str, Tenant], base_url: str, **changes: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "participant": tenants["bank"].id,
        "adapter": "bank",
        "config": {"base_url": base_url, "client_id": BANK_CLIENT_ID},
        "credentials": {"signing_key": BANK_SIGNING_KEY},
        "sandbox": True,
    }
    body.update(changes)
    return body


def test_the_operator_connects_the_bank_sandbox_with_its_credentials_encrypted_at_rest(
    api: Api, tenants: dict[str, Tenant], bank: BankSandbox
):
    operator = tenants["operator"]
    body = bank_connection_body(tenants, bank.base_url)

    response = api.post("/v1/adapter_connections", body, key=operator.key, idempotency_key="c-1")

    assert response.status_code == 201, response.content
    created = response.json()
    connection = AdapterConnection.objects.get()
    assert created == {
        "id": connection.pk,
        "object": "adapter_connection",
        "participant": tenants["bank"].id,
        "adapter": "bank",
        "livemode": False,
        "sandbox": True,
        "config": {"base_url": bank.base_url, "client_id": BANK_CLIENT_ID},
        "has_credentials": True,
        "status": "enabled",
        "created_at": created["created_at"],
        "updated_at": created["updated_at"],
    }
    assert connection.id.startswith("adc_")
    # Encrypted at rest: the row holds a Fernet token that decrypts to the credentials, and the
    # secret appears in no row of any table, nor in any answer.
    assert json.loads(decrypt(connection.credentials_encrypted)) == {
        "signing_key": BANK_SIGNING_KEY
    }
    assert rows_holding(BANK_SIGNING_KEY) == []
    replay = api.post("/v1/adapter_connections", body, key=operator.key, idempotency_key="c-1")
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == created
    listing = api.get("/v1/adapter_connections", key=operator.key)
    detail = api.get(f"/v1/adapter_connections/{connection.pk}", key=tenants["bank"].key)
    assert [c["id"] for c in listing.json()["data"]] == [connection.pk]
    assert detail.json() == created
    for answer in (response, replay, listing, detail):
        assert BANK_SIGNING_KEY.encode() not in answer.content
    [event] = Event.objects.filter(type__startswith="adapter_connection.")
    assert (event.type, event.participant_id, event.data) == (
        "adapter_connection.enabled",
        tenants["bank"].id,
        connection_payload(connection),
    )
    # The hub reaches the sandbox with those credentials: a payout goes through.
    operation = operation_submit(connection_id=connection.pk, request=payout("po_api_1"))
    assert operation.state == State.PENDING


def _live(tenants: dict[str, Tenant]) -> str:
    return issue_key(tenants["operator"].participant, livemode=True)


# (what is wrong, the body's changes, live key?, code, param)
INVALID_CONNECTIONS: list[tuple[str, dict[str, Any], bool, str, str]] = [
    ("unknown adapter", {"adapter": "swift_gpi"}, False, "adapter_unknown", "adapter"),
    ("wrong role", {"adapter": "stripe_like"}, False, "adapter_role_mismatch", "adapter"),
    (
        "missing config field",
        {"config": {"base_url": "BASE"}},
        False,
        "parameter_missing",
        "config.client_id",
    ),
    (
        "unknown config field",
        {"config": {"base_url": "BASE", "client_id": "x", "region": "cn"}},
        False,
        "parameter_unknown",
        "config.region",
    ),
    (
        "missing credential",
        {"credentials": {}},
        False,
        "parameter_invalid",
        "credentials.signing_key",
    ),
    (
        "unknown credential",
        {"credentials": {"signing_key": "k" * 32, "password": "p"}},
        False,
        "parameter_invalid",
        "credentials.password",
    ),
    (
        "non-https live URL",
        {"config": {"base_url": "http://bank.example.com", "client_id": "x"}, "sandbox": False},
        True,
        "url_invalid",
        "config.base_url",
    ),
    (
        "loopback live URL",
        {"config": {"base_url": "https://127.0.0.1:8443", "client_id": "x"}, "sandbox": False},
        True,
        "url_not_public",
        "config.base_url",
    ),
    ("sandbox in live mode", {}, True, "sandbox_live_mode", "sandbox"),
]


@pytest.mark.parametrize(
    ("changes", "live", "code", "param"),
    [case[1:] for case in INVALID_CONNECTIONS],
    ids=[case[0] for case in INVALID_CONNECTIONS],
)
def test_an_invalid_connection_is_a_400_with_its_code_and_writes_nothing(
    api: Api,
    tenants: dict[str, Tenant],
    bank: BankSandbox,
    changes: dict[str, Any],
    live: bool,
    code: str,
    param: str,
):
    if "config" in changes and changes["config"].get("base_url") == "BASE":
        changes = {**changes, "config": {**changes["config"], "base_url": bank.base_url}}
    key = _live(tenants) if live else tenants["operator"].key
    body = bank_connection_body(tenants, bank.base_url, **changes)
    before = (row_counts(), adapter_counts())

    response = api.post("/v1/adapter_connections", body, key=key, idempotency_key="bad-1")

    assert response.status_code == 400, response.content
    error = error_of(response)
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert (row_counts(), adapter_counts()) == before


def test_a_second_connection_of_the_same_adapter_is_a_409_and_writes_nothing(
    api: Api, tenants: dict[str, Tenant], bank: BankSandbox
):
    body = bank_connection_body(tenants, bank.base_url)
    assert api.post("/v1/adapter_connections", body, key=tenants["operator"].key).status_code == 201
    before = (row_counts(), adapter_counts())

    response = api.post("/v1/adapter_connections", body, key=tenants["operator"].key)

    assert response.status_code == 409
    assert error_of(response)["code"] == "adapter_connection_exists"
    assert (row_counts(), adapter_counts()) == before


def test_a_disabled_connection_refuses_operations_without_calling_out(
    api: Api, tenants: dict[str, Tenant], conn: AdapterConnection, ctl: Control
):
    response = api.post(
        f"/v1/adapter_connections/{conn.pk}",
        {"status": "disabled"},
        key=tenants["operator"].key,
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "disabled"
    assert Event.objects.filter(type="adapter_connection.disabled").count() == 1
    before = adapter_counts()

    with pytest.raises(errors.Conflict) as refused:
        submit(conn, "po_disabled_1")

    assert refused.value.code == "adapter_connection_disabled"
    assert adapter_counts() == before
    assert ctl.log() == []


def test_the_operator_lists_installed_adapters_with_their_manifests(
    api: Api, tenants: dict[str, Tenant]
):
    response = api.get("/v1/adapters", key=tenants["operator"].key)

    assert response.status_code == 200
    body = response.json()
    by_name = {a["name"]: a for a in body["data"]}
    names = [a["name"] for a in body["data"]]
    # The built-ins, and whatever else is installed in this environment (sorted by name).
    assert {"bank", "ecb", "stripe_like"} <= set(names)
    assert names == sorted(names)
    assert by_name["bank"] == {
        "name": "bank",
        "object": "adapter",
        "display_name": "Bank (payouts, camt.053 statements, dealing rates)",
        "version": "1.0.0",
        "distribution": "settlement-hub",
        "capabilities": ["bank_payouts", "bank_statements", "dealing_rates"],
        "currencies": ["CNY", "KRW"],
        "corridors": [["CN", "CN"], ["CN", "KR"], ["KR", "CN"], ["KR", "KR"]],
        "auth_scheme": "hmac",
        "idempotent_operations": ["payout_status", "quote", "statement"],
        "config_fields": ["base_url", "client_id"],
        "secret_fields": ["signing_key"],
    }
    assert by_name["stripe_like"]["capabilities"] == ["payment_institution"]
    assert by_name["stripe_like"]["secret_fields"] == ["secret_key", "webhook_secret"]
    assert by_name["ecb"]["capabilities"] == ["rate_source"]
    assert api.get("/v1/adapters", key=tenants["bank"].key).status_code == 403


# --- 2. payouts: accepted, completed, rejected, resubmitted ----------------------------------


def test_an_accepted_payout_is_pending_until_a_sync_finds_it_completed(
    conn: AdapterConnection, ctl: Control
):
    before = timezone.now()

    operation = submit(conn, "po_ok_1")

    [at_bank] = ctl.payouts()
    assert (at_bank["end_to_end_id"], at_bank["amount"], at_bank["currency"]) == (
        "po_ok_1",
        "123.45",
        "CNY",
    )
    assert at_bank["status"] == "accepted"
    operation = reload(operation)
    assert operation.id.startswith("aop_")
    assert (operation.kind, operation.state, operation.provider_id) == (
        "payout",
        State.PENDING,
        at_bank["id"],
    )
    assert (operation.amount_minor, operation.currency) == (123_45, "CNY")
    assert (operation.failure_code, operation.sync_count, operation.escalated_at) == ("", 0, None)
    assert operation.next_sync_at is not None
    assert before + timedelta(seconds=10) <= operation.next_sync_at
    assert operation.next_sync_at <= timezone.now() + timedelta(seconds=10)
    assert attempts(operation) == [("payout_create", 1, "ok", 201)]
    assert events(operation) == []

    ctl.post(f"/payouts/{at_bank['id']}/complete")
    operation = sync(operation)

    assert (operation.state, operation.failure_code, operation.next_sync_at) == (
        State.SUCCEEDED,
        "",
        None,
    )
    assert (operation.sync_count, operation.last_synced_at is not None) == (1, True)
    assert attempts(operation) == [
        ("payout_create", 1, "ok", 201),
        ("payout_status", 1, "ok", 200),
    ]
    status_call = OutboundAttempt.objects.filter(operation=operation, name="payout_status").get()
    assert status_call.url == f"{ctl.sandbox.base_url}/payouts/{at_bank['id']}"
    [event] = Event.objects.filter(type="adapter_operation.succeeded")
    assert (event.participant_id, event.livemode) == (conn.participant_id, False)
    assert event.data == operation_payload(operation)
    assert [p["status"] for p in ctl.payouts()] == ["completed"]
    assert len(ctl.processed("payout_create")) == 1
    # A terminal operation is not synced again: no call goes out.
    assert sync(operation).state == State.SUCCEEDED
    assert len(ctl.log("payout_status")) == 1


@pytest.mark.parametrize(
    ("reason_code", "hub_code", "reason"),
    [
        ("AC04", "beneficiary_account_closed", "AC04 ClosedAccountNumber"),
        ("BE06", "beneficiary_unknown", "BE06 UnknownEndCustomer"),
        ("AM04", "insufficient_funds", "AM04 InsufficientFunds"),
        ("ZZ01", "counterparty_declined", "ZZ01"),
    ],
)
def test_a_payout_the_bank_rejects_fails_with_the_error_tables_code(
    conn: AdapterConnection, ctl: Control, reason_code: str, hub_code: str, reason: str
):
    operation = submit(conn, "po_rej_1")
    ctl.post(f"/payouts/{operation.provider_id}/reject", {"reason_code": reason_code})

    operation = sync(operation)

    assert (operation.state, operation.failure_code, operation.failure_reason) == (
        State.FAILED,
        hub_code,
        reason,
    )
    assert operation.next_sync_at is None
    assert events(operation) == ["adapter_operation.failed"]
    assert [p["status"] for p in ctl.payouts()] == ["rejected"]


def test_a_closed_creditor_account_fails_the_payout_when_the_bank_settles_it(
    conn: AdapterConnection, ctl: Control
):
    ctl.post("/creditors", {"account_number": "6217000010001234567", "status": "closed"})
    operation = submit(conn, "po_closed_1")
    ctl.post(f"/payouts/{operation.provider_id}/complete")

    operation = sync(operation)

    assert (operation.state, operation.failure_code) == (State.FAILED, "beneficiary_account_closed")


def test_a_payout_refused_at_submission_fails_at_once(conn: AdapterConnection, ctl: Control):
    operation = submit(conn, "po_usd_1", currency="USD")

    assert (operation.state, operation.failure_code) == (State.FAILED, "currency_not_supported")
    assert operation.failure_reason.startswith("AM03 NotAllowedCurrency")
    assert operation.next_sync_at is None
    assert attempts(operation) == [("payout_create", 1, "ok", 400)]
    assert events(operation) == ["adapter_operation.failed"]
    assert ctl.payouts() == []


def test_the_same_reference_again_is_the_same_operation_and_no_second_call(
    conn: AdapterConnection, ctl: Control
):
    first = submit(conn, "po_twice_1")

    again = submit(conn, "po_twice_1")

    assert again.pk == first.pk
    assert (again.state, again.provider_id) == (State.PENDING, first.provider_id)
    assert len(ctl.log("payout_create")) == 1
    assert len(ctl.payouts("po_twice_1")) == 1
    assert OutboundAttempt.objects.count() == 1


@pytest.mark.parametrize("changes", [{"minor": 999_99}, {"currency": "KRW", "minor": 12345}])
def test_the_same_reference_for_another_payout_is_a_409_and_changes_nothing(
    conn: AdapterConnection, ctl: Control, changes: dict[str, Any]
):
    first = submit(conn, "po_reuse_1")
    before = (adapter_counts(), ctl.log())

    with pytest.raises(errors.Conflict) as refused:
        submit(conn, "po_reuse_1", **changes)

    assert (refused.value.code, refused.value.param) == ("operation_reference_reused", "reference")
    assert (adapter_counts(), ctl.log()) == before
    assert reload(first).state == State.PENDING


# --- 3. faults on the wire --------------------------------------------------------------------

# Faults after which the bank has processed the payout: (fault, the attempt's result, HTTP
# status, the hub's code for why it is unknown, the sandbox's log outcome).
LANDED = [
    ("timeout_after", "timeout", None, "counterparty_timeout", "timeout"),
    ("reset_after", "protocol_error", None, "counterparty_outcome_unknown", "reset"),
    ("http_503_after", "http_error", 503, "counterparty_outcome_unknown", "answered"),
    ("malformed_json", "ok", 200, "counterparty_malformed_response", "malformed"),
]


@pytest.mark.parametrize(
    ("fault", "result", "status", "code", "outcome"), LANDED, ids=[f[0] for f in LANDED]
)
def test_a_payout_that_landed_behind_a_fault_is_unknown_then_synced_never_doubled(
    conn: AdapterConnection,
    ctl: Control,
    fault: str,
    result: str,
    status: int | None,
    code: str,
    outcome: str,
):
    ctl.fault("payout_create", fault)

    operation = submit(conn, "po_landed_1")

    assert (operation.state, operation.provider_id, operation.failure_code) == (
        State.UNKNOWN,
        "",
        code,
    )
    assert operation.next_sync_at is not None
    # Not idempotent at the bank: one attempt, never resent by the client.
    assert attempts(operation) == [("payout_create", 1, result, status)]
    [request] = ctl.log("payout_create")
    assert (request["processed"], request["outcome"]) == (True, outcome)
    [at_bank] = ctl.payouts("po_landed_1")
    assert events(operation) == ["adapter_operation.unknown"]

    operation = sync(operation)

    assert (operation.state, operation.provider_id, operation.failure_code) == (
        State.PENDING,
        at_bank["id"],
        "",
    )
    ctl.post(f"/payouts/{at_bank['id']}/complete")
    operation = sync(operation)
    assert operation.state == State.SUCCEEDED
    assert events(operation) == [
        "adapter_operation.unknown",
        "adapter_operation.pending",
        "adapter_operation.succeeded",
    ]
    assert len(ctl.payouts("po_landed_1")) == 1
    assert len(ctl.log("payout_create")) == 1


NOT_LANDED = [
    ("timeout_before", "timeout", None, "counterparty_timeout"),
    ("reset_before", "protocol_error", None, "counterparty_outcome_unknown"),
    ("http_503", "http_error", 503, "counterparty_outcome_unknown"),
]


@pytest.mark.parametrize(
    ("fault", "result", "status", "code"), NOT_LANDED, ids=[f[0] for f in NOT_LANDED]
)
def test_a_payout_that_never_landed_is_unknown_then_failed_after_the_grace_period(
    conn: AdapterConnection,
    ctl: Control,
    settings: Any,
    fault: str,
    result: str,
    status: int | None,
    code: str,
):
    ctl.fault("payout_create", fault)

    operation = submit(conn, "po_lost_1")

    assert (operation.state, operation.failure_code) == (State.UNKNOWN, code)
    assert attempts(operation) == [("payout_create", 1, result, status)]
    [request] = ctl.log("payout_create")
    assert request["processed"] is False
    assert ctl.payouts() == []

    # Inside the grace period, "not found" may mean "not yet": still unknown.
    operation = sync(operation)
    assert (operation.state, operation.sync_count) == (State.UNKNOWN, 1)
    assert operation.next_sync_at is not None

    fast_adapters(settings, ADAPTER_NOT_FOUND_GRACE_SECONDS=0)
    operation = sync(operation)

    assert (operation.state, operation.failure_code, operation.sync_count) == (
        State.FAILED,
        "counterparty_never_received",
        2,
    )
    assert operation.next_sync_at is None
    assert events(operation) == ["adapter_operation.unknown", "adapter_operation.failed"]
    assert ctl.payouts() == []
    assert [a[0] for a in attempts(operation)] == [
        "payout_create",
        "payout_status",
        "payout_status",
    ]


def test_a_bank_that_refuses_connections_fails_the_payout_as_unavailable(
    conn: AdapterConnection, bank: BankSandbox
):
    bank.stop()

    operation = submit(conn, "po_refused_1")

    assert (operation.state, operation.failure_code) == (State.FAILED, "counterparty_unavailable")
    assert operation.next_sync_at is None
    # Nothing was sent, so even a non-idempotent create is tried again.
    assert attempts(operation) == [
        ("payout_create", 1, "connection_error", None),
        ("payout_create", 2, "connection_error", None),
        ("payout_create", 3, "connection_error", None),
    ]
    assert events(operation) == ["adapter_operation.failed"]
    assert bank.payouts == {}


def test_a_bank_that_refuses_our_signature_fails_the_payout_as_misconfigured(
    tenants: dict[str, Tenant], bank: BankSandbox, ctl: Control, settings: Any
):
    fast_adapters(settings)
    conn = adapter_connection_enable(
        actor=principal_for(tenants["operator"].participant),
        participant_id=tenants["bank"].id,
        adapter="bank",
        config={"base_url": bank.base_url, "client_id": BANK_CLIENT_ID},
        credentials={"signing_key": "not-the-key-the-bank-knows"},
        sandbox=True,
    )

    operation = submit(conn, "po_badkey_1")

    # The bank refused the request before acting on it: nothing happened there.
    assert (operation.state, operation.failure_code) == (State.FAILED, "adapter_misconfigured")
    assert operation.failure_reason == "the bank refused our signature (HTTP 401)"
    assert attempts(operation) == [("payout_create", 1, "ok", 401)]
    assert ctl.payouts() == []


@pytest.mark.parametrize(
    ("fault", "result", "status"),
    [
        ("http_503", "http_error", 503),
        ("http_500_after", "http_error", 500),
        ("timeout_after", "timeout", None),
        ("reset_before", "protocol_error", None),
    ],
)
def test_faults_on_the_status_call_are_retried_by_the_client(
    conn: AdapterConnection, ctl: Control, fault: str, result: str, status: int | None
):
    operation = submit(conn, "po_status_1")
    ctl.post(f"/payouts/{operation.provider_id}/complete")
    ctl.fault("payout_status", fault, count=2)

    operation = sync(operation)

    assert operation.state == State.SUCCEEDED
    assert attempts(operation) == [
        ("payout_create", 1, "ok", 201),
        ("payout_status", 1, result, status),
        ("payout_status", 2, result, status),
        ("payout_status", 3, "ok", 200),
    ]
    assert len(ctl.log("payout_status")) == 3


def test_an_unreadable_status_answer_leaves_the_operation_as_it_was(
    conn: AdapterConnection, ctl: Control
):
    operation = submit(conn, "po_status_2")
    ctl.fault("payout_status", "malformed_json")

    operation = sync(operation)

    assert (operation.state, operation.sync_count) == (State.PENDING, 1)
    assert operation.failure_code == "counterparty_malformed_response"
    assert events(operation) == []


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_submits_of_one_reference_make_one_operation_and_one_payout(
    tenants: dict[str, Tenant], bank: BankSandbox, ctl: Control, settings: Any
):
    fast_adapters(settings)
    conn = connect(
        operator=tenants["operator"].participant,
        participant=tenants["bank"].participant,
        adapter="bank",
        base_url=bank.base_url,
    )
    barrier = threading.Barrier(6)

    def submit_together() -> str:
        barrier.wait()
        try:
            return submit(conn, "po_race_1").pk
        finally:
            connection.close()

    with ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(lambda _: submit_together(), range(6)))

    [operation] = AdapterOperation.objects.all()
    assert ids == [operation.pk] * 6
    assert reload(operation).state == State.PENDING
    assert len(ctl.log("payout_create")) == 1
    assert len(ctl.payouts("po_race_1")) == 1


def test_the_operator_forces_a_sync(
    api: Api,
    tenants: dict[str, Tenant],
    conn: AdapterConnection,
    ctl: Control,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
):
    operation = submit(conn, "po_force_1")
    syncs = SentSyncs()
    monkeypatch.setattr(hub.tasks_adapters, "adapter_operation_sync_task", syncs)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/v1/adapter_operations/{operation.pk}/sync", {}, key=tenants["operator"].key
        )

    assert response.status_code == 202, response.content
    assert response.json()["state"] == "pending"
    assert syncs.sent == [operation.pk]
    due = reload(operation).next_sync_at
    assert due is not None
    assert due <= timezone.now()
    assert operations_due() == [operation.pk]


# --- 4. the circuit breaker, in the database --------------------------------------------------


def test_a_failing_status_call_opens_the_circuit_and_later_syncs_wait_for_the_cooldown(
    conn: AdapterConnection, ctl: Control, settings: Any
):
    fast_adapters(settings, ADAPTER_BREAKER_THRESHOLD=2, ADAPTER_BREAKER_COOLDOWN=30)
    ctl.fault("payout_create", "http_503_after")
    operation = submit(conn, "po_breaker_1")
    assert operation.state == State.UNKNOWN
    key = f"{conn.participant_id}:bank:payout_status"
    ctl.fault("payout_status", "http_503", count=3)

    # Two 503s open the circuit; the third attempt of the same sync is not made.
    operation = sync(operation)

    assert operation.state == State.UNKNOWN
    circuit = CircuitState.objects.get(pk=key)
    assert (circuit.failures, circuit.opened_at is not None, circuit.probing) == (2, True, False)
    assert len(ctl.log("payout_status")) == 2
    assert attempts(operation)[1:] == [
        ("payout_status", 1, "http_error", 503),
        ("payout_status", 2, "http_error", 503),
        ("payout_status", 3, "circuit_open", None),
    ]

    # While open: no request at all, an attempt recorded as circuit_open, still unknown.
    operation = sync(operation)

    assert (operation.state, operation.sync_count) == (State.UNKNOWN, 2)
    assert len(ctl.log("payout_status")) == 2
    assert attempts(operation)[4:] == [("payout_status", 1, "circuit_open", None)]
    assert OutboundAttempt.objects.get(
        operation=operation, name="payout_status", result="circuit_open", attempt=1
    ).error == ("circuit open")

    # After the cooldown one trial call goes out; it fails, and the circuit opens again.
    CircuitState.objects.filter(pk=key).update(opened_at=F("opened_at") - timedelta(seconds=31))
    operation = sync(operation)

    assert operation.state == State.UNKNOWN
    assert len(ctl.log("payout_status")) == 3
    assert attempts(operation)[5:] == [
        ("payout_status", 1, "http_error", 503),
        ("payout_status", 2, "circuit_open", None),
    ]
    circuit = CircuitState.objects.get(pk=key)
    assert circuit.opened_at is not None
    assert timezone.now() - circuit.opened_at < timedelta(seconds=5)

    # The next trial succeeds: the circuit closes and the sync learns the state.
    CircuitState.objects.filter(pk=key).update(opened_at=F("opened_at") - timedelta(seconds=31))
    operation = sync(operation)

    assert operation.state == State.PENDING
    assert len(ctl.log("payout_status")) == 4
    circuit = CircuitState.objects.get(pk=key)
    assert (circuit.failures, circuit.opened_at, circuit.probing) == (0, None, False)
    assert "adapter_operation.failed" not in events(operation)


def test_an_open_status_circuit_does_not_stop_new_payouts(
    conn: AdapterConnection, ctl: Control, settings: Any
):
    fast_adapters(settings, ADAPTER_BREAKER_THRESHOLD=1)
    first = submit(conn, "po_breaker_2")
    ctl.fault("payout_status", "http_503", count=3)
    assert sync(first).state == State.PENDING

    second = submit(conn, "po_breaker_3")

    assert second.state == State.PENDING
    assert len(ctl.payouts()) == 2


# --- 5. the bounded sync schedule and the operator's queue -----------------------------------


def test_an_operation_nobody_can_resolve_goes_to_the_operator_after_its_schedule(
    api: Api, tenants: dict[str, Tenant], conn: AdapterConnection, ctl: Control, settings: Any
):
    fast_adapters(settings, ADAPTER_SYNC_SCHEDULE=[0, 0, 0], ADAPTER_BREAKER_THRESHOLD=1000)
    ctl.fault("payout_create", "http_503_after")
    ctl.fault("payout_status", "http_503", count=1000)
    operation = submit(conn, "po_stuck_1")
    assert operation.state == State.UNKNOWN

    # The repair sweep finds it due after every sync, until the schedule is spent.
    rounds = 0
    while due := operations_due():
        assert due == [operation.pk]
        sync(operation)
        rounds += 1
        assert rounds <= 3

    operation = reload(operation)
    assert rounds == 3
    assert (operation.state, operation.sync_count, operation.next_sync_at) == (
        State.UNKNOWN,
        3,
        None,
    )
    assert operation.escalated_at is not None
    assert len(ctl.log("payout_status")) == 9
    [task] = OperatorTask.objects.all()
    assert (task.kind, task.status, task.operation_id, task.participant_id, task.livemode) == (
        "operation_unresolved",
        "open",
        operation.pk,
        conn.participant_id,
        False,
    )
    assert task.summary == "payout po_stuck_1 is still unknown after 3 status syncs"
    assert task.details == {
        "last_failure_code": "counterparty_outcome_unknown",
        "last_failure_reason": "payout_status answered HTTP 503",
        "provider_id": "",
    }
    assert events(operation) == ["adapter_operation.unknown", "adapter_operation.escalated"]
    [escalated] = Event.objects.filter(type="adapter_operation.escalated")
    assert escalated.data == operation_payload(operation)

    operator = tenants["operator"].key
    listing = api.get("/v1/operator_tasks", key=operator, params={"status": "open"})
    assert listing.status_code == 200
    [shown] = listing.json()["data"]
    assert shown == {
        "id": task.pk,
        "object": "operator_task",
        "kind": "operation_unresolved",
        "status": "open",
        "participant": conn.participant_id,
        "operation": operation.pk,
        "summary": task.summary,
        "details": task.details,
        "note": "",
        "resolved_by": "",
        "created_at": shown["created_at"],
        "resolved_at": None,
    }

    resolved = api.post(
        f"/v1/operator_tasks/{task.pk}/resolve",
        {"note": "paid, per the bank's phone desk"},
        key=operator,
    )
    assert resolved.status_code == 200, resolved.content
    body = resolved.json()
    assert (body["status"], body["note"], body["resolved_by"]) == (
        "resolved",
        "paid, per the bank's phone desk",
        tenants["operator"].id,
    )
    assert body["resolved_at"] is not None
    before = OperatorTask.objects.values().get()

    again = api.post(f"/v1/operator_tasks/{task.pk}/resolve", {"note": "twice"}, key=operator)

    assert again.status_code == 409
    assert error_of(again)["code"] == "operator_task_resolved"
    assert OperatorTask.objects.values().get() == before
    assert (
        api.get("/v1/operator_tasks", key=operator, params={"status": "open"}).json()["data"] == []
    )


# --- 6. integrity: the institution reports another amount or currency ------------------------


@pytest.mark.parametrize(
    "reported", [Amount(123_46, "CNY"), Amount(123_45, "KRW")], ids=["amount", "currency"]
)
def test_another_amount_reported_holds_the_operation_for_the_operator_for_good(
    conn: AdapterConnection, ctl: Control, reported: Amount
):
    operation = submit(conn, "po_mismatch_1")

    held = operation_observe(
        operation_id=operation.pk,
        observed=Observation(Outcome.SUCCEEDED, provider_id=operation.provider_id, amount=reported),
        source="sync",
    )

    assert (held.state, held.next_sync_at) == (State.HELD, None)
    assert (held.reported_amount_minor, held.reported_currency) == (
        reported.minor,
        reported.currency,
    )
    [task] = OperatorTask.objects.all()
    assert (task.kind, task.status, task.operation_id) == ("integrity_mismatch", "open", held.pk)
    assert task.details == {
        "asked": {"minor": 123_45, "currency": "CNY"},
        "reported": {"minor": reported.minor, "currency": reported.currency},
        "provider_id": operation.provider_id,
        "reason": (
            f"asked 12345 CNY, the institution reported {reported.minor} {reported.currency}"
        ),
    }
    assert task.summary == f"payout po_mismatch_1: {task.details['reason']}"
    assert events(held) == ["adapter_operation.held"]
    assert operations_due() == []

    # Later news, even "succeeded" with the right amount, never books a held operation.
    operation_observe(
        operation_id=held.pk,
        observed=Observation(Outcome.SUCCEEDED, amount=Amount(123_45, "CNY")),
        source="webhook",
    )
    ctl.post(f"/payouts/{operation.provider_id}/complete")
    assert sync(held).state == State.HELD
    assert reload(held).state == State.HELD
    assert len(ctl.log("payout_status")) == 0
    assert events(held) == ["adapter_operation.held"]


@pytest.mark.parametrize(
    ("amount", "currency", "reported_minor"),
    [("999.00", "CNY", 999_00), ("12345", "KRW", 12345)],
    ids=["amount", "currency"],
)
def test_a_sync_that_finds_another_amount_at_the_bank_holds_the_operation(
    conn: AdapterConnection,
    ctl: Control,
    bank: BankSandbox,
    amount: str,
    currency: str,
    reported_minor: int,
):
    # Someone else paid out under the hub's reference, and the hub's own request never landed.
    other = bank_payout_directly(bank, reference="po_other_1", amount=amount, currency=currency)
    ctl.fault("payout_create", "timeout_before")
    operation = submit(conn, "po_other_1")
    assert operation.state == State.UNKNOWN
    ctl.post(f"/payouts/{other['id']}/complete")

    operation = sync(operation)

    assert operation.state == State.HELD
    assert (operation.reported_amount_minor, operation.reported_currency) == (
        reported_minor,
        currency,
    )
    [task] = OperatorTask.objects.all()
    assert task.kind == "integrity_mismatch"
    assert task.details["asked"] == {"minor": 123_45, "currency": "CNY"}
    assert task.details["reported"] == {"minor": reported_minor, "currency": currency}
    assert events(operation) == ["adapter_operation.unknown", "adapter_operation.held"]
    assert sync(operation).state == State.HELD


def test_two_payouts_at_the_bank_for_one_reference_hold_the_operation(
    conn: AdapterConnection, ctl: Control, bank: BankSandbox
):
    bank_payout_directly(bank, reference="po_double_1", amount="123.45")
    ctl.fault("payout_create", "timeout_after")
    operation = submit(conn, "po_double_1")
    assert operation.state == State.UNKNOWN
    assert len(ctl.payouts("po_double_1")) == 2

    operation = sync(operation)

    assert (operation.state, operation.next_sync_at) == (State.HELD, None)
    [task] = OperatorTask.objects.all()
    assert (task.kind, task.operation_id) == ("integrity_mismatch", operation.pk)
    assert "several payouts for po_double_1" in task.summary
    assert task.details["asked"] == {"minor": 123_45, "currency": "CNY"}
    assert task.details["reported"] is None
    assert events(operation) == ["adapter_operation.unknown", "adapter_operation.held"]
    assert operations_due() == []


def test_a_repair_sweep_claims_each_due_operation_once_until_its_sync_is_done(
    conn: AdapterConnection, ctl: Control, settings: Any, monkeypatch: pytest.MonkeyPatch
):
    fast_adapters(settings, ADAPTER_SYNC_SCHEDULE=[0, 0, 0])
    ctl.fault("payout_create", "http_503_after")
    operation = submit(conn, "po_claim_1")
    assert operations_due() == [operation.pk]
    syncs = SentSyncs()
    monkeypatch.setattr(hub.tasks_adapters, "adapter_operation_sync_task", syncs)

    assert adapter_repair_task() == 1
    # Another sweep while that sync waits in the queue (or runs) sends nothing.
    assert adapter_repair_task() == 0

    assert syncs.sent == [operation.pk]
    leased = reload(operation).next_sync_at
    assert leased is not None
    assert leased > timezone.now() + timedelta(seconds=50)
    assert operations_due() == []

    # The sync sets the next time (at once, on this schedule): the next sweep sends it again.
    sync(operation)
    assert adapter_repair_task() == 1
    assert syncs.sent == [operation.pk, operation.pk]


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_repair_sweeps_never_claim_an_operation_twice(
    tenants: dict[str, Tenant], bank: BankSandbox, settings: Any
):
    fast_adapters(settings)
    conn = connect(
        operator=tenants["operator"].participant,
        participant=tenants["bank"].participant,
        adapter="bank",
        base_url=bank.base_url,
    )
    AdapterOperation.objects.bulk_create(
        AdapterOperation(
            connection=conn,
            kind="payout",
            reference=f"po_race_{n}",
            request={},
            amount_minor=100,
            currency="CNY",
            state="unknown",
            next_sync_at=timezone.now() - timedelta(seconds=n),
        )
        for n in range(40)
    )
    barrier = threading.Barrier(4)

    def sweep() -> list[str]:
        barrier.wait()
        try:
            return operations_claim_due()
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: sweep(), range(4)))

    claimed = [pk for result in results for pk in result]
    assert len(claimed) == len(set(claimed)) == 40


# --- 7. the repair task, on a real Celery worker ----------------------------------------------


@pytest.mark.worker
def test_the_repair_task_on_a_worker_drives_an_unknown_payout_to_terminal(
    conn: AdapterConnection, ctl: Control, settings: Any, celery_worker_factory: Any
):
    fast_adapters(settings, ADAPTER_SYNC_SCHEDULE=[0, 0, 0])
    worker = celery_worker_factory(
        HUB_ADAPTER_SYNC_SCHEDULE="0,0,0", HUB_ADAPTER_READ_TIMEOUT=str(CLIENT_READ_TIMEOUT)
    )
    ctl.fault("payout_create", "timeout_after")
    operation = submit(conn, "po_worker_1")
    assert operation.state == State.UNKNOWN
    [at_bank] = ctl.payouts("po_worker_1")
    ctl.post(f"/payouts/{at_bank['id']}/complete")
    # The first status sync fails through all its attempts: it takes a second sweep.
    ctl.fault("payout_status", "http_503", count=3)
    polls = iter(range(10**6))

    def terminal() -> AdapterOperation | None:
        if next(polls) % 3 == 0:  # a sweep every 0.3 s, as beat would send them (more often)
            adapter_repair_task.delay()
        current = reload(operation)
        return current if current.state in AdapterOperation.TERMINAL else None

    operation = wait_until(terminal, timeout=60, what="a terminal payout", log=worker.log)

    assert (operation.state, operation.sync_count, operation.provider_id) == (
        State.SUCCEEDED,
        2,
        at_bank["id"],
    )
    assert attempts(operation) == [
        ("payout_create", 1, "timeout", None),
        ("payout_status", 1, "http_error", 503),
        ("payout_status", 2, "http_error", 503),
        ("payout_status", 3, "http_error", 503),
        ("payout_status", 1, "ok", 200),
    ]
    assert len(ctl.payouts("po_worker_1")) == 1
    assert len(ctl.log("payout_create")) == 1
    assert len(ctl.log("payout_status")) == 4
    assert events(operation) == ["adapter_operation.unknown", "adapter_operation.succeeded"]


# --- 9. the attempt log, as the operator reads it ---------------------------------------------


def test_the_operator_reads_the_attempt_log_with_secrets_redacted(
    api: Api, tenants: dict[str, Tenant], conn: AdapterConnection, ctl: Control
):
    ctl.fault("payout_create", "http_503_after")
    operation = submit(conn, "po_log_1")
    operation = sync(operation)

    response = api.get(f"/v1/adapter_operations/{operation.pk}", key=tenants["operator"].key)

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["object"], body["state"], body["reference"]) == (
        operation.pk,
        "adapter_operation",
        "pending",
        "po_log_1",
    )
    assert body["amount"] == {"amount": "123.45", "currency": "CNY"}
    create, status = body["attempts"]
    assert (create["name"], create["status_code"], create["result"]) == (
        "payout_create",
        503,
        "http_error",
    )
    assert create["method"] == "POST"
    assert create["url"] == f"{ctl.sandbox.base_url}/payouts"
    headers = create["request_headers"]
    assert headers["x-signature"] == "[redacted]"
    assert headers["x-client-id"] == BANK_CLIENT_ID
    assert headers["x-request-id"] == "po_log_1"
    assert json.loads(create["request_body"])["end_to_end_id"] == "po_log_1"
    assert (status["name"], status["method"], status["status_code"]) == (
        "payout_status",
        "GET",
        200,
    )
    assert status["url"] == f"{ctl.sandbox.base_url}/payouts?reference=po_log_1"
    assert status["request_headers"]["x-signature"] == "[redacted]"
    assert BANK_SIGNING_KEY.encode() not in response.content
    assert rows_holding(BANK_SIGNING_KEY) == []
    # The bank sees its own operation; another bank does not.
    assert api.get(
        f"/v1/adapter_operations/{operation.pk}", key=tenants["bank"].key
    ).status_code == (200)
    other = api.get(f"/v1/adapter_operations/{operation.pk}", key=tenants["other_bank"].key)
    assert other.status_code == 404


def test_bearer_credentials_are_redacted_in_the_attempt_log(
    api: Api, tenants: dict[str, Tenant], settings: Any
):
    from adapters.sandbox.stripe_like import StripeLikeSandbox
    from tests.support.adapters import payin

    fast_adapters(settings)
    with StripeLikeSandbox(secret_keys=frozenset({PSP_SECRET_KEY})) as psp:
        conn = connect(
            operator=tenants["operator"].participant,
            participant=tenants["payment_institution"].participant,
            adapter="stripe_like",
            base_url=psp.base_url,
        )
        operation = operation_submit(connection_id=conn.pk, request=payin("pay_log_1"))

    response = api.get(f"/v1/adapter_operations/{operation.pk}", key=tenants["operator"].key)

    [create] = response.json()["attempts"]
    assert create["request_headers"]["authorization"] == "[redacted]"
    assert create["request_headers"]["idempotency-key"] == "pay_log_1"
    assert PSP_SECRET_KEY.encode() not in response.content
    assert rows_holding(PSP_SECRET_KEY) == []


@pytest.mark.parametrize(
    ("path", "param"),
    [("/v1/adapter_operations?state=lost", "state"), ("/v1/operator_tasks?status=x", "status")],
)
def test_list_filters_refuse_unknown_values(api, tenants, path, param):
    response = api.get(path, key=tenants["operator"].key)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("parameter_invalid", param)
