"""The two steps of an institution's notification with the real parts: a live hub acknowledges
it, and a real Celery worker applies it, asked by the API process itself (no beat)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from adapters.sandbox.stripe_like import StripeLikeSandbox
from hub.models import AdapterConnection, AdapterOperation, InboundWebhook
from hub.services.adapters import inbound as inbound_module
from hub.services.adapters.connections import adapter_connection_update
from hub.services.adapters.operations import operation_submit
from tests.conftest import Api, Tenant, error_of, needs_postgres
from tests.factories.core import principal_for
from tests.hub.test_inbound_notifications import event_body, inbound, signed
from tests.support.adapters import (
    PSP_SECRET_KEY,
    PSP_WEBHOOK_SECRET,
    SANDBOX_TIMEOUT,
    Control,
    connect,
    events,
    fast_adapters,
    payin,
    reload,
)
from tests.support.worker import wait_until

State = AdapterOperation.State
Status = InboundWebhook.Status
DML = {"SELECT", "INSERT", "UPDATE", "DELETE"}


@pytest.fixture
def psp(live_server: Any, tenants: dict[str, Tenant], settings: Any) -> Iterator[Any]:
    fast_adapters(settings)
    with StripeLikeSandbox(
        timeout_seconds=SANDBOX_TIMEOUT,
        secret_keys=frozenset({PSP_SECRET_KEY}),
        webhook_secret=PSP_WEBHOOK_SECRET,
    ) as sandbox:
        conn = connect(
            operator=tenants["operator"].participant,
            participant=tenants["payment_institution"].participant,
            adapter="stripe_like",
            base_url=sandbox.base_url,
        )
        ctl = Control(sandbox)
        ctl.configure(webhook_url=f"{live_server.url}/v1/inbound/{conn.pk}")
        yield conn, sandbox, ctl
        ctl.close()


@pytest.mark.worker
def test_a_worker_applies_what_the_api_acknowledged(
    psp: Any, celery_worker: Any, monkeypatch: pytest.MonkeyPatch
):
    conn, sandbox, ctl = psp
    # This process may have asked for a task a moment ago, in another test: start afresh.
    monkeypatch.setattr(inbound_module, "_ask_for_apply", inbound_module._Nudge())
    operations = [
        operation_submit(connection_id=conn.pk, request=payin(f"pay_worker_{n}", 10_000 + n))
        for n in range(3)
    ]
    # Three notifications within one nudge interval: one task, which takes all three.
    event_ids = [ctl.post(f"/payment_intents/{op.provider_id}/pay")["event"] for op in operations]
    assert sandbox.dispatcher.wait_idle(timeout=15)
    assert [status for _, status in ((e["type"], e["status"]) for e in ctl.log("webhook"))] == [
        200,
        200,
        200,
    ]

    def applied() -> list[Any] | None:
        rows = inbound()
        return rows if all(status == Status.APPLIED for status, *_ in rows) else None

    rows = wait_until(
        applied, timeout=30, what="three applied notifications", log=celery_worker.log
    )

    assert rows == [
        (Status.APPLIED, "", event_id, op.pk)
        for event_id, op in zip(event_ids, operations, strict=True)
    ]
    for op in operations:
        assert reload(op).state == State.SUCCEEDED
        assert events(op) == ["adapter_operation.succeeded"]
    for row in InboundWebhook.objects.all():
        assert row.applied_at is not None
        assert row.received_at <= row.applied_at <= timezone.now()
        assert (row.apply_after, row.attempts) == (None, 0)


def test_a_known_connection_verifies_without_reading_it_again(
    api: Api, tenants: dict[str, Tenant], psp: Any, settings: Any
):
    conn, _, _ = psp
    settings.HUB = {**settings.HUB, "INBOUND_CONNECTION_CACHE_SECONDS": 60.0}
    inbound_module.endpoints.clear()
    url = f"/v1/inbound/{conn.pk}"
    first = event_body("pi_cache_1", "pay_cache_1")
    assert api.post(url, raw=first, **signed(first)).status_code == 200

    second = event_body("pi_cache_2", "pay_cache_2")
    with CaptureQueriesContext(connection) as queries:
        response = api.post(url, raw=second, **signed(second))

    assert response.status_code == 200, response.content
    # The notification's own row, and nothing else (no connection, no operation lookup).
    statements = [q["sql"].split() for q in queries.captured_queries]
    tables = [words[2].strip('"') for words in statements if words[0] in DML]
    assert tables == ["hub_inboundwebhook"]
    assert [words[0] for words in statements if words[0] in DML] == ["INSERT"]
    assert [status for status, *_ in inbound()] == [Status.RECEIVED, Status.RECEIVED]


def test_a_disabled_connection_refuses_notifications_at_once(
    api: Api, tenants: dict[str, Tenant], psp: Any, settings: Any
):
    conn, _, _ = psp
    settings.HUB = {**settings.HUB, "INBOUND_CONNECTION_CACHE_SECONDS": 60.0}
    url = f"/v1/inbound/{conn.pk}"
    body = event_body("pi_disabled_1", "pay_disabled_1")
    assert api.post(url, raw=body, **signed(body)).status_code == 200  # cached now

    adapter_connection_update(
        actor=principal_for(tenants["operator"].participant),
        connection_id=conn.pk,
        status=AdapterConnection.Status.DISABLED,
    )
    later = event_body("pi_disabled_2", "pay_disabled_2")
    refused = api.post(url, raw=later, **signed(later))

    assert refused.status_code == 404
    assert error_of(refused)["code"] == "resource_missing"
    assert InboundWebhook.objects.count() == 1


def test_a_rolled_webhook_secret_is_used_at_once(
    api: Api, tenants: dict[str, Tenant], psp: Any, settings: Any
):
    conn, _, _ = psp
    settings.HUB = {**settings.HUB, "INBOUND_CONNECTION_CACHE_SECONDS": 60.0}
    url = f"/v1/inbound/{conn.pk}"
    body = event_body("pi_roll_1", "pay_roll_1")
    assert api.post(url, raw=body, **signed(body)).status_code == 200  # cached now

    adapter_connection_update(
        actor=principal_for(tenants["operator"].participant),
        connection_id=conn.pk,
        credentials={"secret_key": PSP_SECRET_KEY, "webhook_secret": "whsec_rolled"},
    )
    old = event_body("pi_roll_2", "pay_roll_2")
    assert api.post(url, raw=old, **signed(old)).status_code == 401
    new = event_body("pi_roll_3", "pay_roll_3")
    assert api.post(url, raw=new, **signed(new, secret="whsec_rolled")).status_code == 200


def _receive_for(conn: AdapterConnection, operations: list[AdapterOperation]) -> list[str]:
    """Each operation's succeeded notification, received by the API's service."""
    event_ids = []
    for op in operations:
        body = event_body(op.provider_id, op.reference, amount=op.amount_minor)
        receipt = inbound_module.inbound_webhook_receive(
            connection_id=conn.pk, headers=signed(body), body=body
        )
        assert receipt.status == Status.RECEIVED
        event_ids.append(json.loads(body)["id"])
    return event_ids


def _pending_payins(conn: AdapterConnection, count: int, prefix: str) -> list[AdapterOperation]:
    return [
        operation_submit(connection_id=conn.pk, request=payin(f"{prefix}_{n}", 20_000 + n))
        for n in range(count)
    ]


def test_one_failing_notification_does_not_hold_back_the_rest_of_its_batch(
    psp: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
):
    conn, _, _ = psp
    settings.HUB = {**settings.HUB, "INBOUND_RETRY_SCHEDULE": [60.0]}
    operations = _pending_payins(conn, 5, "pay_batch")
    event_ids = _receive_for(conn, operations)
    broken = operations[2]
    real = inbound_module.operation_observe_within

    def failing_for_one(**kwargs: Any) -> tuple[str, AdapterOperation]:
        if kwargs["operation_id"] == broken.pk:
            raise RuntimeError("the database went away")
        return real(**kwargs)

    monkeypatch.setattr(inbound_module, "operation_observe_within", failing_for_one)

    assert inbound_module.inbound_apply_due(batch=10) == 4

    assert [reload(op).state for op in operations] == [
        State.SUCCEEDED,
        State.SUCCEEDED,
        State.PENDING,
        State.SUCCEEDED,
        State.SUCCEEDED,
    ]
    assert events(broken) == []
    rows = inbound()
    assert [status for status, *_ in rows] == [
        Status.APPLIED,
        Status.APPLIED,
        Status.RECEIVED,
        Status.APPLIED,
        Status.APPLIED,
    ]
    assert rows[2] == (
        Status.RECEIVED,
        "attempt 1 failed (RuntimeError); tried again",
        event_ids[2],
        broken.pk,
    )


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_appliers_running_at_once_apply_each_notification_once(psp: Any):
    conn, _, _ = psp
    operations = _pending_payins(conn, 40, "pay_race")
    _receive_for(conn, operations)
    # A second notification for every tenth operation.
    _receive_for_again(conn, operations[::10])
    barrier = threading.Barrier(4)

    def applier() -> int:
        barrier.wait()
        try:
            return inbound_module.inbound_apply_due(batch=7)
        finally:
            db_connection.close()

    with ThreadPoolExecutor(4) as pool:
        settled = sum(pool.map(lambda _: applier(), range(4)))

    assert settled == 44
    rows = list(InboundWebhook.objects.values_list("operation_id", "status", "reason"))
    assert len(rows) == 44
    # Per operation: one notification applied; the other one (where two came) found it
    # succeeded already, whichever applier got there first.
    outcomes: dict[str, list[tuple[str, str]]] = {}
    for operation_id, status, reason in rows:
        outcomes.setdefault(operation_id, []).append((status, reason))
    twice = {op.pk for op in operations[::10]}
    assert set(outcomes) == {op.pk for op in operations}
    for operation_id, seen in outcomes.items():
        expected = [(Status.APPLIED, "")]
        if operation_id in twice:
            expected.append((Status.IGNORED, "operation is succeeded"))
        assert sorted(seen) == sorted(expected)
    for op in operations:
        assert reload(op).state == State.SUCCEEDED
        assert events(op) == ["adapter_operation.succeeded"]


def _receive_for_again(conn: AdapterConnection, operations: list[AdapterOperation]) -> set[str]:
    """A later notification (another event id) saying the same for each operation."""
    event_ids = set()
    for op in operations:
        body = event_body(op.provider_id, op.reference, amount=op.amount_minor)
        body = body.replace(b"evt_test_", b"evt_again_")
        receipt = inbound_module.inbound_webhook_receive(
            connection_id=conn.pk, headers=signed(body), body=body
        )
        assert receipt.status == Status.RECEIVED
        event_ids.add(json.loads(body)["id"])
    return event_ids
