"""Notifications from the Stripe-like sandbox to the hub, over real sockets: the sandbox posts
signed events to a live hub server, which verifies them on the raw body, deduplicates them by
event id and acknowledges them; the apply step (a worker's task, called directly here; see
test_inbound_worker.py for the real worker) applies them in whatever order they came. A
notification the hub cannot verify is never trusted: it asks the institution instead."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from adapters.builtin.stripe_like import sign_payload
from adapters.interface import Amount, RefundRequest
from adapters.sandbox.stripe_like import StripeLikeSandbox
from hub.models import AdapterConnection, AdapterOperation, InboundWebhook
from hub.services.adapters import inbound as inbound_module
from hub.services.adapters.inbound import inbound_apply_due
from hub.services.adapters.operations import operation_submit, operation_sync
from tests.conftest import Api, Tenant, error_of
from tests.support.adapters import (
    PSP_SECRET_KEY,
    PSP_WEBHOOK_SECRET,
    SANDBOX_TIMEOUT,
    Control,
    attempts,
    connect,
    events,
    fast_adapters,
    payin,
    reload,
    rows_holding,
)

State = AdapterOperation.State
Status = InboundWebhook.Status


@dataclass
class Hub:
    """A live hub server, the sandbox institution posting to it, and the connection between."""

    url: str
    conn: AdapterConnection
    psp: StripeLikeSandbox
    ctl: Control

    @property
    def inbound_url(self) -> str:
        return f"/v1/inbound/{self.conn.pk}"

    def delivered(self) -> None:
        """Wait until the sandbox has sent every event due (each one waits for the hub's answer),
        then apply what the hub received, as its worker would."""
        assert self.psp.dispatcher.wait_idle(timeout=15)
        inbound_apply_due()

    def pay(self, operation: AdapterOperation, decline_code: str | None = None) -> str:
        body = {"decline_code": decline_code} if decline_code else {}
        event_id: str = self.ctl.post(f"/payment_intents/{operation.provider_id}/pay", body)[
            "event"
        ]
        return event_id

    def deliveries(self) -> list[tuple[str, int | None]]:
        """(event type, the hub's HTTP status) of every notification the sandbox sent."""
        return [(e["type"], e["status"]) for e in self.ctl.log("webhook")]


def inbound() -> list[tuple[str, str, str | None, str | None]]:
    """(status, reason, provider event id, operation id) of every notification kept, in order."""
    return list(
        InboundWebhook.objects.order_by("id").values_list(
            "status", "reason", "provider_event_id", "operation_id"
        )
    )


@pytest.fixture
def hub(live_server: Any, tenants: dict[str, Tenant], settings: Any) -> Iterator[Hub]:
    fast_adapters(settings)
    with StripeLikeSandbox(
        timeout_seconds=SANDBOX_TIMEOUT,
        secret_keys=frozenset({PSP_SECRET_KEY}),
        webhook_secret="whsec_not_yet_configured",
    ) as psp:
        conn = connect(
            operator=tenants["operator"].participant,
            participant=tenants["payment_institution"].participant,
            adapter="stripe_like",
            base_url=psp.base_url,
        )
        ctl = Control(psp)
        ctl.configure(
            webhook_url=f"{live_server.url}/v1/inbound/{conn.pk}",
            webhook_secret=PSP_WEBHOOK_SECRET,
        )
        yield Hub(live_server.url, conn, psp, ctl)
        ctl.close()


def submit_payin(hub: Hub, reference: str, minor: int = 150_000) -> AdapterOperation:
    operation = operation_submit(connection_id=hub.conn.pk, request=payin(reference, minor))
    assert (operation.state, operation.provider_id[:3]) == (State.PENDING, "pi_")
    return operation


# --- payins --------------------------------------------------------------------------------


def test_a_payin_succeeds_from_the_notification_alone(hub: Hub):
    operation = submit_payin(hub, "pay_ok_1")

    event_id = hub.pay(operation)
    hub.delivered()

    operation = reload(operation)
    assert (operation.state, operation.sync_count, operation.next_sync_at) == (
        State.SUCCEEDED,
        0,
        None,
    )
    # Nothing was asked of the institution after the create: the notification said it.
    assert attempts(operation) == [("create_payin", 1, "ok", 200)]
    assert inbound() == [(Status.APPLIED, "", event_id, operation.pk)]
    row = InboundWebhook.objects.get()
    assert row.headers["Stripe-Signature"] == "[redacted]"
    assert json.loads(row.body)["id"] == event_id
    assert hub.deliveries() == [("payment_intent.succeeded", 200)]
    assert events(operation) == ["adapter_operation.succeeded"]
    assert rows_holding(PSP_WEBHOOK_SECRET) == []
    assert rows_holding(PSP_SECRET_KEY) == []


def test_a_declined_payin_is_failed_by_the_sync_the_notification_asks_for(hub: Hub):
    operation = submit_payin(hub, "pay_declined_1")
    before = timezone.now()

    event_id = hub.pay(operation, decline_code="card_declined")
    hub.delivered()

    # The notification says "failed" but not why: the hub asks the institution.
    operation = reload(operation)
    assert operation.state == State.PENDING
    assert operation.next_sync_at is not None
    assert operation.next_sync_at <= timezone.now()
    assert operation.next_sync_at >= before
    assert inbound() == [
        (
            Status.APPLIED,
            "failure notified: a status sync fetches its reason",
            event_id,
            operation.pk,
        )
    ]

    operation = operation_sync(operation_id=operation.pk)

    assert (operation.state, operation.failure_code, operation.failure_reason) == (
        State.FAILED,
        "payment_declined",
        "card_declined: Your card was declined.",
    )
    assert events(operation) == ["adapter_operation.failed"]


def test_a_duplicated_notification_is_applied_once(hub: Hub):
    operation = submit_payin(hub, "pay_dup_1")
    hub.ctl.fault("webhook", "duplicate")

    event_id = hub.pay(operation)
    hub.delivered()

    assert reload(operation).state == State.SUCCEEDED
    assert inbound() == [
        (Status.APPLIED, "", event_id, operation.pk),
        # Kept as it came; the first one's row says what it did.
        (Status.DUPLICATE, "already received", event_id, None),
    ]
    assert hub.deliveries() == [
        ("payment_intent.succeeded", 200),
        ("payment_intent.succeeded", 200),
    ]
    assert events(operation) == ["adapter_operation.succeeded"]


def test_reordered_payin_notifications_end_in_the_right_states(hub: Hub):
    first = submit_payin(hub, "pay_order_1")
    second = submit_payin(hub, "pay_order_2", minor=99_000)
    hub.ctl.fault("webhook", "reorder")

    first_event = hub.pay(first)  # held back by the sandbox...
    second_event = hub.pay(second)  # ...and sent after this one
    hub.delivered()

    assert (reload(first).state, reload(second).state) == (State.SUCCEEDED, State.SUCCEEDED)
    assert inbound() == [
        (Status.APPLIED, "", second_event, second.pk),
        (Status.APPLIED, "", first_event, first.pk),
    ]


@pytest.mark.parametrize("how", ["bad_signature", "stale_timestamp"])
def test_an_unverifiable_notification_is_refused_and_a_sync_brings_the_truth(hub: Hub, how: str):
    operation = submit_payin(hub, "pay_forged_1")
    untouched = reload(operation)
    if how == "bad_signature":
        hub.ctl.fault("webhook", "bad_signature")
        reason = "the signature does not match the body"
    else:
        # The sandbox signs with its own clock: ten minutes ahead is outside the tolerance.
        hub.ctl.post("/clock", {"advance_seconds": 600})
        reason = "the signature's timestamp is {} s away from now (tolerance 300 s)"

    hub.pay(operation)
    hub.delivered()

    assert hub.deliveries() == [("payment_intent.succeeded", 401)]
    [(status, stored_reason, event_id, operation_id)] = inbound()
    assert (status, event_id, operation_id) == (Status.REJECTED, None, None)
    # Whole seconds either side of the 600 s shift, as the clocks tick between them.
    assert stored_reason in {reason.format(skew) for skew in (599, 600, 601)}
    operation = reload(operation)
    # The payload changed nothing, but the operation it names is due for a sync now.
    assert (operation.state, operation.provider_id, operation.sync_count) == (
        untouched.state,
        untouched.provider_id,
        0,
    )
    assert operation.updated_at == untouched.updated_at
    assert operation.next_sync_at is not None
    assert operation.next_sync_at <= timezone.now()
    assert events(operation) == []

    operation = operation_sync(operation_id=operation.pk)

    assert operation.state == State.SUCCEEDED
    assert [a[0] for a in attempts(operation)] == ["create_payin", "get_payin"]
    assert events(operation) == ["adapter_operation.succeeded"]


def event_body(
    intent_id: str, reference: str, *, status: str = "succeeded", amount: int = 150_000
) -> bytes:
    return json.dumps(
        {
            "id": f"evt_test_{intent_id}",
            "object": "event",
            "created": int(time.time()),
            "type": f"payment_intent.{status}",
            "data": {
                "object": {
                    "id": intent_id,
                    "object": "payment_intent",
                    "amount": amount,
                    "currency": "krw",
                    "status": status,
                    "reference": reference,
                    "metadata": {"reference": reference},
                }
            },
        }
    ).encode()


def signed(body: bytes, secret: str = PSP_WEBHOOK_SECRET) -> dict[str, str]:
    timestamp = int(time.time())
    return {"Stripe-Signature": f"t={timestamp},v1={sign_payload(secret, timestamp, body)}"}


def test_an_unsigned_notification_is_401_and_only_makes_its_operation_due(api: Api, hub: Hub):
    operation = submit_payin(hub, "pay_unsigned_1")
    untouched = reload(operation)

    response = api.post(hub.inbound_url, raw=event_body(operation.provider_id, "pay_unsigned_1"))

    assert response.status_code == 401
    error = error_of(response)
    assert (error["type"], error["code"]) == ("authentication_error", "webhook_signature_invalid")
    assert inbound() == [(Status.REJECTED, "the notification is not signed", None, None)]
    operation = reload(operation)
    assert (operation.state, operation.updated_at) == (untouched.state, untouched.updated_at)
    assert operation.next_sync_at is not None
    assert operation.next_sync_at <= timezone.now()
    assert events(operation) == []


@pytest.mark.parametrize(
    "body",
    [b'{"id": "evt_1", "type": "payment_intent.succ', b"[]", b'{"id": "evt_1", "data": {}}'],
    ids=["truncated", "not an object", "no object"],
)
def test_a_signed_notification_that_cannot_be_read_is_400_and_changes_nothing(
    api: Api, hub: Hub, body: bytes
):
    submit_payin(hub, "pay_garbled_1")
    untouched = AdapterOperation.objects.values().get()

    response = api.post(hub.inbound_url, raw=body, **signed(body))

    assert response.status_code == 400
    assert error_of(response)["code"] == "webhook_malformed"
    [(status, reason, event_id, operation_id)] = inbound()
    assert (status, event_id, operation_id) == (Status.REJECTED, None, None)
    assert reason.startswith("unreadable: ")
    assert AdapterOperation.objects.values().get() == untouched


def test_a_notification_for_an_unknown_reference_is_acknowledged_and_ignored(api: Api, hub: Hub):
    operation = submit_payin(hub, "pay_known_1")
    body = event_body("pi_not_ours", "pay_not_ours")

    response = api.post(hub.inbound_url, raw=body, **signed(body))

    assert response.status_code == 200
    [row] = InboundWebhook.objects.all()
    assert response.json() == {"received": True, "status": "received", "id": row.pk}
    assert inbound() == [(Status.RECEIVED, "", "evt_test_pi_not_ours", None)]
    assert inbound_apply_due() == 1
    assert inbound() == [(Status.IGNORED, "no such operation", "evt_test_pi_not_ours", None)]
    assert reload(operation).state == State.PENDING


def test_a_notification_with_an_idempotency_key_header_is_still_just_a_notification(
    api: Api, hub: Hub
):
    operation = submit_payin(hub, "pay_idem_1")
    body = event_body(operation.provider_id, "pay_idem_1")

    response = api.post(hub.inbound_url, raw=body, **signed(body), **{"Idempotency-Key": "k1"})

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "received"
    inbound_apply_due()
    assert reload(operation).state == State.SUCCEEDED


def test_a_notification_with_another_amount_holds_the_operation(api: Api, hub: Hub):
    operation = submit_payin(hub, "pay_amount_1")
    body = event_body(operation.provider_id, "pay_amount_1", amount=1_500_000)

    response = api.post(hub.inbound_url, raw=body, **signed(body))

    assert response.json()["status"] == "received"
    inbound_apply_due()
    operation = reload(operation)
    assert (operation.state, operation.reported_amount_minor) == (State.HELD, 1_500_000)
    assert operation.tasks.get().kind == "integrity_mismatch"
    # Later news, verified and with the right amount, changes nothing.
    good = event_body(operation.provider_id, "pay_amount_1").replace(b"evt_test_", b"evt_later_")
    again = api.post(hub.inbound_url, raw=good, **signed(good))
    assert again.json()["status"] == "received"
    inbound_apply_due()
    assert reload(operation).state == State.HELD
    assert [s for s, *_ in inbound()] == [Status.HELD, Status.IGNORED]


def test_a_notification_the_hub_failed_to_apply_is_tried_again(
    hub: Hub, settings: Any, monkeypatch: pytest.MonkeyPatch
):
    settings.HUB = {**settings.HUB, "INBOUND_RETRY_SCHEDULE": [5.0, 30.0]}
    operation = submit_payin(hub, "pay_retry_1")
    real = inbound_module.operation_observe_within
    calls = iter([True])

    def failing_once(**kwargs: Any) -> tuple[str, AdapterOperation]:
        if next(calls, False):
            raise RuntimeError("the database went away")
        return real(**kwargs)

    monkeypatch.setattr(inbound_module, "operation_observe_within", failing_once)

    before = timezone.now()
    event_id = hub.pay(operation)
    hub.delivered()  # received (200), then the first attempt fails

    assert hub.deliveries() == [("payment_intent.succeeded", 200)]
    assert reload(operation).state == State.PENDING
    assert inbound() == [
        (Status.RECEIVED, "attempt 1 failed (RuntimeError); tried again", event_id, operation.pk)
    ]
    row = InboundWebhook.objects.get()
    assert row.attempts == 1
    assert row.apply_after is not None
    assert before + timedelta(seconds=5) <= row.apply_after <= timezone.now() + timedelta(seconds=5)
    # Not due yet: nothing happens...
    assert inbound_apply_due() == 0
    assert reload(operation).state == State.PENDING
    # ...until its time comes.
    InboundWebhook.objects.update(apply_after=timezone.now())
    assert inbound_apply_due() == 1

    assert reload(operation).state == State.SUCCEEDED
    assert inbound() == [(Status.APPLIED, "", event_id, operation.pk)]
    assert events(operation) == ["adapter_operation.succeeded"]


def test_a_notification_that_never_applies_is_rejected_and_its_operation_synced(
    hub: Hub, settings: Any, monkeypatch: pytest.MonkeyPatch
):
    settings.HUB = {**settings.HUB, "INBOUND_RETRY_SCHEDULE": [0.0, 0.0]}
    operation = submit_payin(hub, "pay_never_1")

    def failing(**kwargs: Any) -> tuple[str, AdapterOperation]:
        raise RuntimeError("the database went away")

    real = inbound_module.operation_observe_within
    monkeypatch.setattr(inbound_module, "operation_observe_within", failing)

    event_id = hub.pay(operation)
    hub.delivered()  # attempt 1
    assert inbound_apply_due() == 0  # attempt 2
    assert inbound_apply_due() == 1  # attempt 3: the schedule is spent

    reason = "not applied after 3 attempts (RuntimeError): a status sync brings the truth"
    assert inbound() == [(Status.REJECTED, reason, event_id, operation.pk)]
    operation = reload(operation)
    assert operation.state == State.PENDING
    assert operation.next_sync_at is not None
    assert operation.next_sync_at <= timezone.now()
    # The event id is free again: the institution's redelivery is received and applied.
    monkeypatch.setattr(inbound_module, "operation_observe_within", real)
    hub.ctl.post("/webhooks/resend", {"event_id": event_id})
    hub.delivered()
    assert reload(operation).state == State.SUCCEEDED
    assert [status for status, *_ in inbound()] == [Status.REJECTED, Status.APPLIED]
    assert events(operation) == ["adapter_operation.succeeded"]


# --- refunds -------------------------------------------------------------------------------


def paid_payin(hub: Hub, reference: str) -> AdapterOperation:
    operation = submit_payin(hub, reference)
    hub.pay(operation)
    hub.delivered()
    operation = reload(operation)
    assert operation.state == State.SUCCEEDED
    return operation


def refund(hub: Hub, payin_operation: AdapterOperation, reference: str) -> AdapterOperation:
    return operation_submit(
        connection_id=hub.conn.pk,
        request=RefundRequest(
            reference=reference,
            payin_provider_id=payin_operation.provider_id,
            amount=Amount(50_000, "KRW"),
            reason="requested_by_customer",
        ),
    )


def test_a_refund_succeeds_from_its_notification(hub: Hub):
    paid = paid_payin(hub, "pay_for_refund_1")
    hub.ctl.configure(refund_status="pending")

    operation = refund(hub, paid, "re_ok_1")
    hub.delivered()

    assert (operation.kind, operation.state, operation.provider_id[:3]) == (
        "refund",
        State.PENDING,
        "re_",
    )
    [created_event] = [e["event_id"] for e in hub.ctl.log("webhook")][1:]
    assert reload(operation).state == State.PENDING
    settled_event = hub.ctl.post(f"/refunds/{operation.provider_id}/settle")["event"]
    hub.delivered()

    operation = reload(operation)
    assert operation.state == State.SUCCEEDED
    assert attempts(operation) == [("create_refund", 1, "ok", 200)]
    assert inbound()[1:] == [
        (Status.APPLIED, "", created_event, operation.pk),
        (Status.APPLIED, "", settled_event, operation.pk),
    ]
    assert events(operation) == ["adapter_operation.succeeded"]
    [at_psp] = hub.ctl.refunds()
    assert (at_psp["reference"], at_psp["amount"], at_psp["status"]) == (
        "re_ok_1",
        50_000,
        "succeeded",
    )


def test_a_late_pending_refund_notification_does_not_undo_its_success(hub: Hub):
    paid = paid_payin(hub, "pay_for_refund_2")
    hub.ctl.configure(refund_status="pending")
    hub.ctl.fault("webhook", "reorder")

    operation = refund(hub, paid, "re_late_1")  # refund.created (pending) is held back
    settled_event = hub.ctl.post(f"/refunds/{operation.provider_id}/settle")["event"]
    hub.delivered()

    assert [t for t, _ in hub.deliveries()] == [
        "payment_intent.succeeded",
        "refund.updated",
        "refund.created",
    ]
    operation = reload(operation)
    assert operation.state == State.SUCCEEDED
    created_event = hub.ctl.log("webhook")[2]["event_id"]
    assert inbound()[1:] == [
        (Status.APPLIED, "", settled_event, operation.pk),
        (Status.IGNORED, "operation is succeeded", created_event, operation.pk),
    ]
    assert events(operation) == ["adapter_operation.succeeded"]
