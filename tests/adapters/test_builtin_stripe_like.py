"""The built-in Stripe-like adapter against its sandbox, over real loopback sockets, through the
real HubHttpClient: payins, refunds, idempotency, faults, and signed webhooks (valid, tampered,
stale, unsigned, badly signed, duplicated, reordered, late)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from adapters.builtin.stripe_like import StripeLikeAdapter, sign_payload
from adapters.capabilities import WebhookRejected
from adapters.errors import (
    AdapterMisconfigured,
    IntegrityMismatch,
    MalformedResponse,
    OperationNotFound,
    Rejected,
    UnknownOutcome,
)
from adapters.http import AttemptRecord, ClientPolicy, HubHttpClient, MemoryBreakerStore
from adapters.interface import Amount, InboundWebhook, Outcome, PayinRequest, RefundRequest
from adapters.manifest import Capability
from adapters.registry import get_adapter
from adapters.sandbox.stripe_like import (
    DEFAULT_SECRET_KEY,
    DEFAULT_WEBHOOK_SECRET,
    StripeLikeSandbox,
)

TLS = ssl.create_default_context()
READ_TIMEOUT = 0.3
SANDBOX_TIMEOUT = 2.0


class Receiver:
    """A webhook endpoint on loopback that keeps the raw bodies and headers it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    receiver.received.append((dict(self.headers.items()), body))
                    receiver._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/stripe_like"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"expected {count} webhooks, got {len(self.received)}"
                self._cond.wait(left)
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture
def psp(receiver: Receiver) -> Iterator[StripeLikeSandbox]:
    with StripeLikeSandbox(timeout_seconds=SANDBOX_TIMEOUT, webhook_url=receiver.url) as server:
        yield server


class Harness:
    def __init__(self, psp: StripeLikeSandbox, receiver: Receiver) -> None:
        self.psp = psp
        self.receiver = receiver
        self.records: list[AttemptRecord] = []
        self.sleeps: list[float] = []
        self.client = HubHttpClient(
            participant_id="par_psp",
            adapter="stripe_like",
            policy=ClientPolicy(
                allowed_hosts=frozenset({"127.0.0.1"}),
                allow_private=True,
                connect_timeout=1.0,
                read_timeout=READ_TIMEOUT,
            ),
            breaker=MemoryBreakerStore(),
            recorder=self.records.append,
            secrets=(DEFAULT_SECRET_KEY, DEFAULT_WEBHOOK_SECRET),
            # httpx's own transport over real sockets, with a TLS context built once per module
            # (building one per client costs ~40 ms; these calls are plain http anyway).
            transport=httpx.HTTPTransport(verify=TLS),
            sleep=self.sleeps.append,
        )
        self.adapter = self.make_adapter()
        self.http = httpx.Client(trust_env=False, verify=TLS)  # for the control API

    def make_adapter(self, **kwargs: Any) -> StripeLikeAdapter:
        secrets = {"secret_key": DEFAULT_SECRET_KEY, "webhook_secret": DEFAULT_WEBHOOK_SECRET}
        secrets.update(kwargs.pop("secrets", {}))
        return StripeLikeAdapter(
            client=self.client, config={"base_url": self.psp.base_url}, secrets=secrets, **kwargs
        )

    def close(self) -> None:
        self.client.close()
        self.http.close()

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.psp.url("/_sandbox" + path)
        response = self.http.post(url, json=body) if body is not None else self.http.get(url)
        assert response.status_code == 200, response.text
        return response.json()

    def fault(self, operation: str, fault: str, count: int = 1) -> None:
        self.control("/faults", {"operation": operation, "fault": fault, "count": count})

    def log(self, operation: str | None = None) -> list[dict[str, Any]]:
        query = f"?operation={operation}" if operation else ""
        return list(self.control("/log" + query)["data"])

    def intents(self) -> list[dict[str, Any]]:
        return list(self.control("/state")["payment_intents"])

    def pay(self, provider_id: str, decline_code: str | None = None) -> str:
        body = {"decline_code": decline_code} if decline_code else {}
        return str(self.control(f"/payment_intents/{provider_id}/pay", body)["event"])

    def deliveries(self) -> list[InboundWebhook]:
        self.psp.dispatcher.wait_idle()
        parsed = []
        for headers, body in self.receiver.received:
            self.adapter.verify_webhook(headers=headers, body=body)
            parsed.append(self.adapter.parse_webhook(body=body))
        return parsed


@pytest.fixture
def h(psp: StripeLikeSandbox, receiver: Receiver) -> Iterator[Harness]:
    harness = Harness(psp, receiver)
    yield harness
    harness.close()


def payin(reference: str = "pay_0001", minor: int = 150000, currency: str = "KRW") -> PayinRequest:
    return PayinRequest(
        reference=reference,
        amount=Amount(minor, currency),
        description="order KR-2024-7",
        metadata={"order": "KR-2024-7"},
    )


# -- manifest and discovery


def test_manifest_and_discovery():
    manifest = StripeLikeAdapter.manifest
    assert manifest.capabilities == {Capability.PAYMENT_INSTITUTION}
    assert manifest.currencies == {"KRW", "CNY"}
    assert manifest.corridors == {("KR", "CN")}
    assert manifest.auth_scheme == "bearer"
    assert manifest.is_idempotent("create_payin")
    assert manifest.is_idempotent("create_refund")
    assert manifest.secret_fields == {"secret_key", "webhook_secret"}
    assert get_adapter("stripe_like").adapter_class is StripeLikeAdapter
    errors = manifest.errors
    assert errors.lookup("card_declined").hub_code == "payment_declined"
    assert errors.lookup("insufficient_funds").retryable
    assert not errors.lookup("card_declined").retryable
    assert errors.lookup("amount_too_large").hub_code == "amount_too_large"
    rejected = errors.rejected("insufficient_funds", "no money")
    assert (rejected.hub_code, rejected.provider_code, rejected.retryable) == (
        "insufficient_funds",
        "insufficient_funds",
        True,
    )


# -- payins


def test_create_payin_sends_minor_units_with_our_reference_as_idempotency_key(h: Harness):
    result = h.adapter.create_payin(payin())
    assert result.outcome == Outcome.PENDING
    assert result.amount == Amount(150000, "KRW")
    assert result.reference == "pay_0001"
    (intent,) = h.intents()
    assert (intent["amount"], intent["currency"], intent["status"]) == (
        150000,
        "krw",
        "requires_payment",
    )
    assert intent["metadata"] == {"order": "KR-2024-7", "reference": "pay_0001"}
    (record,) = h.records
    assert record.request_headers["idempotency-key"] == "pay_0001"
    assert record.request_headers["authorization"] == "[redacted]"
    assert DEFAULT_SECRET_KEY not in record.request_body + record.response_body


def test_cny_payin_in_fen(h: Harness):
    result = h.adapter.create_payin(payin("pay_cny", 12345, "CNY"))
    assert result.amount == Amount(12345, "CNY")
    assert h.intents()[0]["currency"] == "cny"


def test_the_same_reference_twice_is_the_same_intent(h: Harness):
    first = h.adapter.create_payin(payin())
    again = h.adapter.create_payin(payin())
    assert again == first
    assert len(h.intents()) == 1
    assert [e["effect"] for e in h.log("create_payin")] == [
        f"created {first.provider_id}",
        f"replayed {first.provider_id}",
    ]


def test_the_same_reference_with_another_body_is_an_idempotency_error(h: Harness):
    h.adapter.create_payin(payin())
    with pytest.raises(Rejected) as raised:
        h.adapter.create_payin(payin(minor=1))
    assert (raised.value.provider_code, raised.value.hub_code) == (
        "idempotency_error",
        "idempotency_key_reused",
    )
    assert len(h.intents()) == 1


def test_raw_idempotency_semantics_of_the_sandbox(h: Harness):
    url = h.psp.url("/v1/payment_intents")
    auth = {"Authorization": f"Bearer {DEFAULT_SECRET_KEY}", "Idempotency-Key": "k1"}
    form = {"amount": "500", "currency": "cny", "reference": "r1"}
    first = h.http.post(url, data=form, headers=auth)
    replay = h.http.post(url, data=form, headers=auth)
    assert first.status_code == replay.status_code == 200
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    other = h.http.post(url, data={**form, "amount": "501"}, headers=auth)
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"
    as_json = h.http.post(
        url,
        json={"amount": 700, "currency": "krw", "reference": "r2"},
        headers={**auth, "Idempotency-Key": "k2"},
    )
    assert as_json.status_code == 200
    assert as_json.json()["amount"] == 700
    # A request refused by validation is not stored: corrected, the same key may go through.
    bad = h.http.post(
        url, data={**form, "currency": "usd"}, headers={**auth, "Idempotency-Key": "k3"}
    )
    assert bad.status_code == 400
    good = h.http.post(
        url, data=form | {"reference": "r3"}, headers={**auth, "Idempotency-Key": "k3"}
    )
    assert good.status_code == 200
    assert h.http.post(url, data=form).status_code == 401
    assert h.http.get(url, headers={"Authorization": "Bearer sk_wrong"}).status_code == 401


def test_status_sync_by_reference_and_by_id(h: Harness):
    created = h.adapter.create_payin(payin())
    h.pay(created.provider_id)
    by_reference = h.adapter.get_payin(reference="pay_0001", provider_id=None)
    by_id = h.adapter.get_payin(reference="pay_0001", provider_id=created.provider_id)
    assert by_reference == by_id
    assert by_id.outcome == Outcome.SUCCEEDED
    with pytest.raises(OperationNotFound):
        h.adapter.get_payin(reference="pay_missing", provider_id=None)
    with pytest.raises(OperationNotFound):
        h.adapter.get_payin(reference="pay_missing", provider_id="pi_missing")
    with pytest.raises(IntegrityMismatch):
        h.adapter.get_payin(reference="pay_other", provider_id=created.provider_id)


@pytest.mark.parametrize(
    ("decline_code", "hub_code"),
    [
        ("card_declined", "payment_declined"),
        ("insufficient_funds", "insufficient_funds"),
        ("amount_too_large", "amount_too_large"),
        ("expired_card", "card_expired"),
        ("something_new", "payment_declined"),
    ],
)
def test_declined_payment_reads_through_the_error_table(
    h: Harness, decline_code: str, hub_code: str
):
    created = h.adapter.create_payin(payin())
    h.pay(created.provider_id, decline_code)
    result = h.adapter.get_payin(reference="pay_0001", provider_id=created.provider_id)
    assert result.outcome == Outcome.FAILED
    assert result.failure_code == hub_code
    assert result.failure_reason is not None
    assert result.failure_reason.startswith(f"{decline_code}:")


@pytest.mark.parametrize(
    ("request_", "provider_code", "hub_code"),
    [
        (payin(minor=100_000_000), "amount_too_large", "amount_too_large"),
        (payin(currency="USD"), "currency_not_supported", "currency_not_supported"),
    ],
)
def test_create_payin_refused_by_the_provider(
    h: Harness, request_: PayinRequest, provider_code: str, hub_code: str
):
    with pytest.raises(Rejected) as raised:
        h.adapter.create_payin(request_)
    assert (raised.value.provider_code, raised.value.hub_code) == (provider_code, hub_code)
    assert h.intents() == []


def test_a_wrong_secret_key_is_a_misconfiguration(h: Harness):
    adapter = h.make_adapter(secrets={"secret_key": "sk_test_wrong"})
    with pytest.raises(AdapterMisconfigured):
        adapter.create_payin(payin())


# -- refunds


def paid(h: Harness, minor: int = 150000) -> str:
    created = h.adapter.create_payin(payin(minor=minor))
    h.pay(created.provider_id)
    return created.provider_id


def test_partial_refunds_and_their_status(h: Harness):
    intent = paid(h)
    first = h.adapter.create_refund(
        RefundRequest("re_0001", intent, Amount(50000, "KRW"), "returned")
    )
    assert (first.outcome, first.amount) == (Outcome.SUCCEEDED, Amount(50000, "KRW"))
    assert (
        h.adapter.create_refund(RefundRequest("re_0001", intent, Amount(50000, "KRW"), "returned"))
        == first
    )
    assert h.adapter.get_refund(reference="re_0001", provider_id=None) == first
    assert h.adapter.get_refund(reference="re_0001", provider_id=first.provider_id) == first
    with pytest.raises(Rejected) as raised:
        h.adapter.create_refund(RefundRequest("re_0002", intent, Amount(100001, "KRW")))
    assert raised.value.hub_code == "amount_too_large"
    rest = h.adapter.create_refund(RefundRequest("re_0003", intent, Amount(100000, "KRW")))
    assert rest.outcome == Outcome.SUCCEEDED
    with pytest.raises(Rejected) as raised:
        h.adapter.create_refund(RefundRequest("re_0004", intent, Amount(1, "KRW")))
    assert raised.value.hub_code == "payin_already_refunded"
    with pytest.raises(OperationNotFound):
        h.adapter.get_refund(reference="re_missing", provider_id=None)


def test_refund_of_an_unpaid_or_unknown_intent_or_another_currency(h: Harness):
    unpaid = h.adapter.create_payin(payin())
    with pytest.raises(Rejected) as raised:
        h.adapter.create_refund(RefundRequest("re_1", unpaid.provider_id, Amount(1, "KRW")))
    assert raised.value.hub_code == "payin_not_refundable"
    with pytest.raises(Rejected) as raised:
        h.adapter.create_refund(RefundRequest("re_2", "pi_nope", Amount(1, "KRW")))
    assert raised.value.provider_code == "resource_missing"
    h.pay(unpaid.provider_id)
    with pytest.raises(Rejected) as raised:
        h.adapter.create_refund(RefundRequest("re_3", unpaid.provider_id, Amount(1, "CNY")))
    assert raised.value.hub_code == "currency_mismatch"


def test_pending_refunds_settle_through_the_control_api(h: Harness):
    h.control("/config", {"refund_status": "pending"})
    intent = paid(h)
    ok = h.adapter.create_refund(RefundRequest("re_ok", intent, Amount(1000, "KRW")))
    bad = h.adapter.create_refund(RefundRequest("re_bad", intent, Amount(2000, "KRW")))
    assert ok.outcome == bad.outcome == Outcome.PENDING
    h.control(f"/refunds/{ok.provider_id}/settle", {})
    h.control(f"/refunds/{bad.provider_id}/settle", {"failure_reason": "expired_or_canceled_card"})
    assert h.adapter.get_refund(reference="re_ok", provider_id=ok.provider_id).outcome == (
        Outcome.SUCCEEDED
    )
    failed = h.adapter.get_refund(reference="re_bad", provider_id=None)
    assert (failed.outcome, failed.failure_reason) == (Outcome.FAILED, "expired_or_canceled_card")
    events = [w.event_type for w in h.deliveries() if w.object_type == "refund"]
    assert events == ["refund.created", "refund.created", "refund.updated", "refund.failed"]


# -- faults: creates are idempotent at the provider, so the client retries them


@pytest.mark.parametrize(
    "fault", ["timeout_after", "reset_after", "http_500_after", "http_503", "timeout_before"]
)
def test_create_payin_faults_are_retried_and_replayed_not_duplicated(h: Harness, fault: str):
    h.fault("create_payin", fault)
    result = h.adapter.create_payin(payin())
    (intent,) = h.intents()
    assert result.provider_id == intent["id"]
    entries = h.log("create_payin")
    assert [e["fault"] for e in entries] == [fault, None]
    landed = fault.endswith("after")
    assert entries[0]["processed"] is landed
    assert entries[1]["effect"] == ("replayed " if landed else "created ") + intent["id"]
    assert len(h.records) == 2


def test_create_refund_timeout_after_is_retried_and_refunds_once(h: Harness):
    intent = paid(h)
    h.fault("create_refund", "timeout_after")
    refund = h.adapter.create_refund(RefundRequest("re_t", intent, Amount(1000, "KRW")))
    assert refund.outcome == Outcome.SUCCEEDED
    state = h.control("/state")
    assert len(state["refunds"]) == 1
    assert state["payment_intents"][0]["amount_refunded"] == 1000


def test_malformed_create_answer_is_unknown_and_the_sync_finds_the_intent(h: Harness):
    h.fault("create_payin", "malformed_json")
    with pytest.raises(MalformedResponse):
        h.adapter.create_payin(payin())
    assert isinstance(MalformedResponse("x"), UnknownOutcome)
    found = h.adapter.get_payin(reference="pay_0001", provider_id=None)
    assert found.provider_id == h.intents()[0]["id"]


def test_status_sync_failing_every_attempt_is_unknown(h: Harness):
    h.fault("get_payin", "http_500", count=3)
    with pytest.raises(UnknownOutcome):
        h.adapter.get_payin(reference="pay_0001", provider_id=None)
    assert len(h.log("get_payin")) == 3


def test_latency_is_only_slow(h: Harness):
    h.fault("get_payin", "latency:80")
    h.adapter.create_payin(payin())
    started = time.monotonic()
    assert h.adapter.get_payin(reference="pay_0001", provider_id=None).outcome == Outcome.PENDING
    assert time.monotonic() - started >= 0.08


# -- webhooks


def test_payment_webhooks_verify_and_parse(h: Harness):
    created = h.adapter.create_payin(payin())
    event_id = h.pay(created.provider_id)
    ((headers, body),) = h.receiver.wait_for(1)
    h.adapter.verify_webhook(headers=headers, body=body)
    notice = h.adapter.parse_webhook(body=body)
    assert notice.provider_event_id == event_id
    assert notice.event_type == "payment_intent.succeeded"
    assert notice.object_type == "payin"
    assert notice.reference == "pay_0001"
    assert notice.provider_id == created.provider_id
    assert notice.outcome == Outcome.SUCCEEDED
    assert notice.amount == Amount(150000, "KRW")
    assert abs((datetime.now(UTC) - notice.occurred_at).total_seconds()) < 60
    h.psp.dispatcher.wait_idle()
    (delivery,) = h.log("webhook")
    assert (delivery["event_id"], delivery["status"], delivery["fault"]) == (event_id, 200, None)


def test_failed_payment_webhook(h: Harness):
    created = h.adapter.create_payin(payin())
    h.pay(created.provider_id, "insufficient_funds")
    (notice,) = h.deliveries()
    assert (notice.event_type, notice.outcome) == ("payment_intent.payment_failed", Outcome.FAILED)


def test_a_tampered_body_is_rejected(h: Harness):
    h.pay(h.adapter.create_payin(payin()).provider_id)
    ((headers, body),) = h.receiver.wait_for(1)
    tampered = body.replace(b"150000", b"990000")
    assert tampered != body
    with pytest.raises(WebhookRejected):
        h.adapter.verify_webhook(headers=headers, body=tampered)
    with pytest.raises(WebhookRejected):  # re-serialised JSON is not the raw body either
        h.adapter.verify_webhook(headers=headers, body=json.dumps(json.loads(body)).encode())


def test_a_stale_or_future_timestamp_is_rejected(h: Harness):
    created = h.adapter.create_payin(payin())
    h.control("/clock", {"advance_seconds": -301})  # the provider's clock signs 301 s ago
    h.pay(created.provider_id)
    ((headers, body),) = h.receiver.wait_for(1)
    with pytest.raises(WebhookRejected, match="timestamp"):
        h.adapter.verify_webhook(headers=headers, body=body)
    # Within a wider tolerance the same delivery verifies: only the time was wrong.
    h.make_adapter(webhook_tolerance=600).verify_webhook(headers=headers, body=body)
    future = h.make_adapter(clock=lambda: time.time() - 1000)  # signed "later"
    with pytest.raises(WebhookRejected, match="timestamp"):
        future.verify_webhook(headers=headers, body=body)


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "v1=abc",
        "t=123",
        "t=notanumber,v1=abc",
        "t={t},v0={good}",
        "t={t},v1={bad}",
    ],
)
def test_unsigned_or_badly_signed_notifications_are_rejected(h: Harness, signature: str | None):
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    headers = {}
    if signature is not None:
        headers["Stripe-Signature"] = signature.format(
            t=now,
            good=sign_payload(DEFAULT_WEBHOOK_SECRET, now, body),
            bad=sign_payload("whsec_other", now, body),
        )
    with pytest.raises(WebhookRejected):
        h.adapter.verify_webhook(headers=headers, body=body)


def test_any_v1_signature_may_match_while_a_secret_is_rolled(h: Harness):
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    good = sign_payload(DEFAULT_WEBHOOK_SECRET, now, body)
    old = sign_payload("whsec_old", now, body)
    h.adapter.verify_webhook(headers={"stripe-signature": f"t={now},v1={old},v1={good}"}, body=body)


def test_bad_signature_fault(h: Harness):
    h.fault("webhook", "bad_signature")
    h.pay(h.adapter.create_payin(payin()).provider_id)
    h.pay(h.adapter.create_payin(payin("pay_0002")).provider_id)
    (first_headers, first_body), (second_headers, second_body) = h.receiver.wait_for(2)
    with pytest.raises(WebhookRejected, match="does not match"):
        h.adapter.verify_webhook(headers=first_headers, body=first_body)
    h.adapter.verify_webhook(headers=second_headers, body=second_body)
    h.psp.dispatcher.wait_idle()
    assert [e["fault"] for e in h.log("webhook")] == ["bad_signature", None]


def test_duplicate_fault_delivers_the_same_event_twice(h: Harness):
    h.fault("webhook", "duplicate")
    event_id = h.pay(h.adapter.create_payin(payin()).provider_id)
    first, second = h.deliveries()
    assert first == second
    assert first.provider_event_id == event_id
    assert len(h.receiver.received) == 2


def test_reorder_fault_sends_an_event_after_the_next_one(h: Harness):
    h.fault("webhook", "reorder")
    a = h.adapter.create_payin(payin("pay_a"))
    b = h.adapter.create_payin(payin("pay_b"))
    first_event = h.pay(a.provider_id)
    h.psp.dispatcher.wait_idle()
    assert h.receiver.received == []  # held back
    second_event = h.pay(b.provider_id)
    h.receiver.wait_for(2)
    assert [n.provider_event_id for n in h.deliveries()] == [second_event, first_event]
    assert [n.reference for n in h.deliveries()] == ["pay_b", "pay_a"]


def test_a_held_event_is_released_by_flush(h: Harness):
    h.fault("webhook", "reorder")
    event_id = h.pay(h.adapter.create_payin(payin()).provider_id)
    assert h.control("/webhooks/flush", {}) == {"released": 1}
    (notice,) = h.deliveries()
    assert notice.provider_event_id == event_id


def test_late_fault_delivers_after_a_delay_and_after_later_events(h: Harness):
    h.fault("webhook", "late:300")
    a = h.adapter.create_payin(payin("pay_a"))
    b = h.adapter.create_payin(payin("pay_b"))
    started = time.monotonic()
    late_event = h.pay(a.provider_id)
    prompt_event = h.pay(b.provider_id)
    h.receiver.wait_for(2)
    assert time.monotonic() - started >= 0.3
    assert [n.provider_event_id for n in h.deliveries()] == [prompt_event, late_event]


def test_resend_delivers_an_event_again(h: Harness):
    event_id = h.pay(h.adapter.create_payin(payin()).provider_id)
    h.receiver.wait_for(1)
    h.control("/webhooks/resend", {"event_id": event_id})
    first, second = h.deliveries()
    assert first.provider_event_id == second.provider_event_id == event_id


def test_refund_webhook_parses_as_a_refund(h: Harness):
    intent = paid(h)
    refund = h.adapter.create_refund(RefundRequest("re_w", intent, Amount(500, "KRW")))
    notices = h.deliveries()
    assert [n.object_type for n in notices] == ["payin", "refund"]
    assert (notices[1].provider_id, notices[1].reference, notices[1].amount) == (
        refund.provider_id,
        "re_w",
        Amount(500, "KRW"),
    )


def event(obj: dict[str, Any] | None = None, **top: Any) -> bytes:
    base_obj = {
        "id": "pi_1",
        "object": "payment_intent",
        "amount": 100,
        "currency": "krw",
        "status": "succeeded",
        "reference": "pay_1",
    }
    body = {"id": "evt_1", "type": "payment_intent.succeeded", "created": 1700000000}
    body["data"] = {"object": {**base_obj, **(obj or {})}}
    body.update(top)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"id": "evt_1"}',
        event(data={"object": "nope"}),
        event({"object": "customer"}),
        event({"amount": "100"}),
        event({"amount": -5}),
        event({"amount": 1.5}),
        event({"amount": True}),
        event({"currency": "kr"}),
        event({"status": "teleported"}),
        event({"id": None}),
        event(id=None),
        event(created="yesterday"),
    ],
)
def test_bodies_that_cannot_be_read_are_malformed(h: Harness, body: bytes):
    with pytest.raises(MalformedResponse):
        h.adapter.parse_webhook(body=body)


def test_a_readable_body_parses(h: Harness):
    notice = h.adapter.parse_webhook(body=event())
    assert notice == InboundWebhook(
        provider_event_id="evt_1",
        event_type="payment_intent.succeeded",
        object_type="payin",
        reference="pay_1",
        provider_id="pi_1",
        outcome=Outcome.SUCCEEDED,
        amount=Amount(100, "KRW"),
        occurred_at=datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
    )


def test_webhook_faults_are_refused_for_api_routes_and_vice_versa(h: Harness):
    for body in (
        {"operation": "create_payin", "fault": "duplicate"},
        {"operation": "webhook", "fault": "http_500"},
        {"operation": "webhook", "fault": "late:x"},
    ):
        assert h.http.post(h.psp.url("/_sandbox/faults"), json=body).status_code == 400


def test_reset_clears_intents_events_and_configuration(h: Harness):
    h.control("/config", {"webhook_url": "http://127.0.0.1:9/nowhere", "refund_status": "pending"})
    h.pay(h.adapter.create_payin(payin()).provider_id)
    h.control("/reset", {})
    assert h.intents() == []
    assert h.control("/events")["data"] == []
    assert h.control("/config")["webhook_url"] == h.receiver.url
    assert h.control("/config")["refund_status"] == "succeeded"
