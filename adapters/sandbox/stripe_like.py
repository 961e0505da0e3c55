"""A sandbox payment institution shaped like Stripe's API, on a real loopback HTTP server.

API (``Authorization: Bearer <secret key>``, else 401; form or JSON bodies):

=======================================  ======================  ==============================
route                                    operation (for faults)  what it does
=======================================  ======================  ==============================
``POST /v1/payment_intents``             ``create_payin``        amount (minor units), currency
                                                                 (krw or cny), reference,
                                                                 description, metadata[...]
``GET /v1/payment_intents/{id}``         ``get_payin``
``GET /v1/payment_intents?reference=``   ``get_payin``           a list
``POST /v1/refunds``                     ``create_refund``       payment_intent, amount,
                                                                 currency, reference, reason
``GET /v1/refunds/{id}``                 ``get_refund``
``GET /v1/refunds?reference=``           ``get_refund``          a list
=======================================  ======================  ==============================

POSTs honour ``Idempotency-Key`` as Stripe does: the first answer is stored per key and replayed
(``Idempotent-Replayed: true``) for the same parameters; other parameters under the same key are
a 400 ``idempotency_error``. Intents start ``requires_payment``; the buyer "pays" through the
control API, which moves the intent to ``succeeded`` or ``failed`` (with a decline code) and sends
a webhook. Refunds are ``succeeded`` at once, or ``pending`` until settled through the control
API when ``refund_status`` is set to ``pending``.

Control API, besides the common one (see ``base``):

- ``POST /_sandbox/config``: ``webhook_url``, ``webhook_secret``, ``refund_status``
- ``POST /_sandbox/payment_intents/{id}/pay`` ``{"decline_code": "card_declined"}`` (optional)
- ``POST /_sandbox/refunds/{id}/settle`` ``{"failure_reason": "..."}`` (optional)
- ``POST /_sandbox/webhooks/flush``: send events held back by ``reorder`` now
- ``POST /_sandbox/webhooks/resend`` ``{"event_id": "evt_..."}``: deliver an event again
- ``GET /_sandbox/events``: every event, oldest first

Webhooks are POSTed to ``webhook_url`` one at a time, in order, signed
``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`` with the sandbox's
clock (so ``/_sandbox/clock`` makes them stale). Faults for the ``webhook`` operation:
``duplicate`` (the same event twice), ``reorder`` (held back and sent after the next event),
``late:<ms>`` (sent after a delay, 1000 ms by default), ``bad_signature`` (signed with another
secret). Deliveries are not retried; each one is in the log with the receiver's status.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import hmac
import itertools
import json
import secrets
import ssl
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx

from adapters.sandbox.base import (
    CONTROL_PREFIX,
    ApiError,
    Fault,
    Response,
    Route,
    SandboxRequest,
    SandboxServer,
    json_response,
)

CURRENCIES = frozenset({"krw", "cny"})
MAX_AMOUNT = 99_999_999  # minor units, as Stripe
# Sandbox credentials, public on purpose: the sandbox holds no money and serves loopback only.
DEFAULT_SECRET_KEY = "sk_test_sandbox_stripe_like"  # noqa: S105
DEFAULT_WEBHOOK_SECRET = "whsec_sandbox_stripe_like"  # noqa: S105
API_VERSION = "2024-06-20"

DECLINE_MESSAGES = {
    "card_declined": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card.",
    "fraudulent": "Your card was declined.",
    "amount_too_large": "The amount exceeds the card's limit.",
}


def _error(
    status: int, code: str, message: str, *, param: str | None = None, kind: str = ""
) -> ApiError:
    error: dict[str, Any] = {
        "type": kind or "invalid_request_error",
        "code": code,
        "message": message,
    }
    if param:
        error["param"] = param
    return ApiError(status, {"error": error})


def _params(request: SandboxRequest) -> dict[str, Any]:
    """Form (with Stripe's ``metadata[key]`` brackets) or JSON parameters."""
    if (request.header("content-type") or "").startswith("application/json"):
        return request.json()
    params: dict[str, Any] = {}
    try:
        pairs = parse_qsl(request.body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise _error(400, "parameter_invalid", "The body is not UTF-8.") from None
    for key, value in pairs:
        if "[" in key and key.endswith("]"):
            outer, inner = key[:-1].split("[", 1)
            params.setdefault(outer, {})[inner] = value
        else:
            params[key] = value
    return params


def _amount(value: Any, *, required: bool = True) -> int | None:
    if value is None or value == "":
        if required:
            raise _error(
                400, "parameter_missing", "Missing required param: amount.", param="amount"
            )
        return None
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and value.isdigit())
    ):
        raise _error(400, "parameter_invalid_integer", "Invalid integer: amount", param="amount")
    amount = int(value)
    if amount <= 0:
        raise _error(400, "parameter_invalid_integer", "Amount must be positive.", param="amount")
    if amount > MAX_AMOUNT:
        raise _error(
            400, "amount_too_large", f"Amount must be no more than {MAX_AMOUNT}.", param="amount"
        )
    return amount


def _reference(params: dict[str, Any]) -> str | None:
    metadata = params.get("metadata")
    value = params.get("reference") or (
        metadata.get("reference") if isinstance(metadata, dict) else None
    )
    return str(value) if value else None


@dataclass
class Intent:
    id: str
    amount: int
    currency: str
    reference: str
    description: str
    metadata: dict[str, str]
    created: int
    status: str = "requires_payment"
    amount_refunded: int = 0
    decline_code: str | None = None

    def view(self) -> dict[str, Any]:
        error = None
        if self.decline_code:
            error = {
                "type": "card_error",
                "code": "card_declined"
                if self.decline_code != "processing_error"
                else self.decline_code,
                "decline_code": self.decline_code,
                "message": DECLINE_MESSAGES.get(self.decline_code, "Your card was declined."),
            }
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_refunded": self.amount_refunded,
            "currency": self.currency,
            "status": self.status,
            "reference": self.reference,
            "description": self.description,
            "metadata": {**self.metadata, "reference": self.reference},
            "created": self.created,
            "livemode": False,
            "last_payment_error": error,
        }


@dataclass
class Refund:
    id: str
    payment_intent: str
    amount: int
    currency: str
    reference: str
    reason: str
    created: int
    status: str
    failure_reason: str | None = None

    def view(self) -> dict[str, Any]:
        return {"object": "refund", **asdict(self), "metadata": {"reference": self.reference}}


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every sandbox (building one costs tens of milliseconds)."""
    return ssl.create_default_context()


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    event: dict[str, Any] = field(compare=False)
    fault: str | None = field(compare=False, default=None)
    bad_signature: bool = field(compare=False, default=False)


class WebhookDispatcher:
    """Sends events one at a time, in order of due time then submission, from its own thread."""

    def __init__(self, sandbox: StripeLikeSandbox) -> None:
        self.sandbox = sandbox
        self._cond = threading.Condition()
        self._heap: list[_Delivery] = []
        self._held: list[_Delivery] = []
        self._seq = itertools.count()
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None

    def start(self) -> None:
        with self._cond:
            self._stop = False
        self._client = httpx.Client(
            timeout=5.0, trust_env=False, follow_redirects=False, verify=_tls_context()
        )
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._client is not None:
            self._client.close()

    def clear(self) -> None:
        with self._cond:
            self._heap.clear()
            self._held.clear()
            self._cond.notify_all()

    def submit(self, event: dict[str, Any], fault: Fault | None) -> None:
        now = time.monotonic()
        kind = fault.kind if fault else None
        text = fault.text if fault else None
        due = now + (fault.millis / 1000 if fault and kind == "late" else 0)
        first = _Delivery(due, next(self._seq), event, text, bad_signature=kind == "bad_signature")
        with self._cond:
            if kind == "reorder":
                self._held.append(first)
                return
            heapq.heappush(self._heap, first)
            if kind == "duplicate":
                heapq.heappush(self._heap, _Delivery(due, next(self._seq), event, text))
            # Events held back by ``reorder`` go right after this one.
            for held in self._held:
                heapq.heappush(self._heap, _Delivery(due, next(self._seq), held.event, held.fault))
            self._held.clear()
            self._cond.notify_all()

    def flush(self) -> int:
        now = time.monotonic()
        with self._cond:
            count = len(self._held)
            for held in self._held:
                heapq.heappush(self._heap, _Delivery(now, next(self._seq), held.event, held.fault))
            self._held.clear()
            self._cond.notify_all()
        return count

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is due or being sent (held events do not count)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop:
                    if self._heap and self._heap[0].due <= time.monotonic():
                        break
                    timeout = self._heap[0].due - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stop:
                    return
                delivery = heapq.heappop(self._heap)
                self._busy = True
            try:
                self._deliver(delivery)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, delivery: _Delivery) -> None:
        sandbox = self.sandbox
        event = delivery.event
        url, secret = sandbox.webhook_url, sandbox.webhook_secret
        entry = sandbox.record(
            kind="webhook",
            operation="webhook",
            event_id=event["id"],
            type=event["type"],
            fault=delivery.fault,
            url=url,
            status=None,
            error=None,
        )
        if not url:
            entry["error"] = "no webhook_url configured"
            return
        body = json.dumps(event, separators=(",", ":")).encode()
        timestamp = int(sandbox.now())
        key = (secret + "-not-it") if delivery.bad_signature else secret
        signature = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        headers = {
            "Content-Type": "application/json",
            "Stripe-Signature": f"t={timestamp},v1={signature.hexdigest()}",
            "User-Agent": "SandboxStripeLike/1",
        }
        assert self._client is not None
        try:
            response = self._client.post(url, content=body, headers=headers)
            entry["status"] = response.status_code
        except httpx.HTTPError as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"


class StripeLikeSandbox(SandboxServer):
    name = "stripe_like"
    webhook_operations = frozenset({"webhook"})

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_seconds: float = 30.0,
        secret_keys: frozenset[str] = frozenset({DEFAULT_SECRET_KEY}),
        webhook_url: str = "",
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
    ) -> None:
        self.secret_keys = secret_keys
        self._initial = {"webhook_url": webhook_url, "webhook_secret": webhook_secret}
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.refund_status = "succeeded"
        self.intents: dict[str, Intent] = {}
        self.refunds: dict[str, Refund] = {}
        self.events: list[dict[str, Any]] = []
        self._idempotency: dict[tuple[str, str], tuple[str, Response]] = {}
        self.dispatcher = WebhookDispatcher(self)
        super().__init__(host=host, port=port, timeout_seconds=timeout_seconds)

    # -- lifecycle and configuration

    def on_start(self) -> None:
        self.dispatcher.start()

    def on_stop(self) -> None:
        self.dispatcher.stop()

    def reset_state(self) -> None:
        self.dispatcher.clear()
        self.intents.clear()
        self.refunds.clear()
        self.events.clear()
        self._idempotency.clear()
        self.webhook_url = self._initial["webhook_url"]
        self.webhook_secret = self._initial["webhook_secret"]
        self.refund_status = "succeeded"

    def configure(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key in ("webhook_url", "webhook_secret") and isinstance(value, str):
                setattr(self, key, value)
            elif key == "refund_status" and value in ("succeeded", "pending"):
                self.refund_status = value
            else:
                raise ApiError(400, {"error": {"code": "parameter_invalid", "param": key}})

    def config_view(self) -> dict[str, Any]:
        return {
            "webhook_url": self.webhook_url,
            "webhook_secret": self.webhook_secret,
            "refund_status": self.refund_status,
        }

    def state_view(self) -> dict[str, Any]:
        return {
            "payment_intents": [i.view() for i in self.intents.values()],
            "refunds": [r.view() for r in self.refunds.values()],
            "events": len(self.events),
        }

    # -- routes

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/v1/payment_intents", "create_payin", self._create_intent),
            Route.of("GET", "/v1/payment_intents", "get_payin", self._list_intents),
            Route.of("GET", r"/v1/payment_intents/(?P<id>[^/]+)", "get_payin", self._get_intent),
            Route.of("POST", "/v1/refunds", "create_refund", self._create_refund),
            Route.of("GET", "/v1/refunds", "get_refund", self._list_refunds),
            Route.of("GET", r"/v1/refunds/(?P<id>[^/]+)", "get_refund", self._get_refund),
        ]

    def control_routes(self) -> list[Route]:
        p = CONTROL_PREFIX
        return [
            Route.of("POST", p + r"/payment_intents/(?P<id>[^/]+)/pay", "pay", self._ctl_pay),
            Route.of("POST", p + r"/refunds/(?P<id>[^/]+)/settle", "settle", self._ctl_settle),
            Route.of("POST", p + "/webhooks/flush", "flush", self._ctl_flush),
            Route.of("POST", p + "/webhooks/resend", "resend", self._ctl_resend),
            Route.of("GET", p + "/events", "events", self._ctl_events),
        ]

    def _authenticate(self, request: SandboxRequest) -> str:
        scheme, _, key = (request.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or key not in self.secret_keys:
            raise ApiError(
                401,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": "Invalid API Key provided.",
                    }
                },
                {"WWW-Authenticate": 'Bearer realm="sandbox"'},
            )
        return key

    def _idempotent(self, request: SandboxRequest, create: Any) -> Response:
        """Run ``create(params)`` once per Idempotency-Key; replay its answer afterwards."""
        api_key = self._authenticate(request)
        params = _params(request)
        key = request.header("idempotency-key")
        if not key:
            response: Response = create(params, request)
            return response
        fingerprint = json.dumps([request.path, params], sort_keys=True)
        stored = self._idempotency.get((api_key, key))
        if stored is not None:
            if stored[0] != fingerprint:
                raise _error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                    kind="idempotency_error",
                )
            first = stored[1]
            request.effect = f"replayed {json.loads(first.body).get('id')}"
            headers = {**first.headers, "Idempotent-Replayed": "true"}
            return Response(first.status, first.body, first.content_type, headers)
        # A request refused by validation is not stored (as at Stripe): fixing it and sending it
        # again under the same key is allowed.
        response = create(params, request)
        self._idempotency[(api_key, key)] = (fingerprint, response)
        return response

    def _create_intent(self, request: SandboxRequest) -> Response:
        return self._idempotent(request, self._new_intent)

    def _new_intent(self, params: dict[str, Any], request: SandboxRequest) -> Response:
        amount = _amount(params.get("amount"))
        assert amount is not None
        currency = str(params.get("currency") or "").lower()
        if not currency:
            raise _error(
                400, "parameter_missing", "Missing required param: currency.", param="currency"
            )
        if currency not in CURRENCIES:
            raise _error(
                400,
                "currency_not_supported",
                f"Currency {currency} is not supported.",
                param="currency",
            )
        reference = _reference(params)
        if not reference:
            raise _error(
                400, "parameter_missing", "Missing required param: reference.", param="reference"
            )
        metadata = params.get("metadata") if isinstance(params.get("metadata"), dict) else {}
        intent = Intent(
            id="pi_" + secrets.token_hex(12),
            amount=amount,
            currency=currency,
            reference=reference,
            description=str(params.get("description") or ""),
            metadata={str(k): str(v) for k, v in (metadata or {}).items()},
            created=int(self.now()),
        )
        self.intents[intent.id] = intent
        request.effect = f"created {intent.id}"
        return json_response(200, intent.view())

    def _list_intents(self, request: SandboxRequest) -> Response:
        self._authenticate(request)
        reference = request.query.get("reference")
        found = [
            i.view() for i in self.intents.values() if reference is None or i.reference == reference
        ]
        return json_response(
            200, {"object": "list", "data": found, "has_more": False, "url": request.path}
        )

    def _get_intent(self, request: SandboxRequest) -> Response:
        self._authenticate(request)
        intent = self.intents.get(request.params["id"])
        if intent is None:
            raise _error(
                404,
                "resource_missing",
                f"No such payment_intent: '{request.params['id']}'",
                param="id",
            )
        return json_response(200, intent.view())

    def _create_refund(self, request: SandboxRequest) -> Response:
        return self._idempotent(request, self._new_refund)

    def _new_refund(self, params: dict[str, Any], request: SandboxRequest) -> Response:
        intent_id = str(params.get("payment_intent") or "")
        intent = self.intents.get(intent_id)
        if intent is None:
            raise _error(
                400,
                "resource_missing",
                f"No such payment_intent: '{intent_id}'",
                param="payment_intent",
            )
        currency = str(params.get("currency") or intent.currency).lower()
        if currency != intent.currency:
            raise _error(
                400,
                "currency_mismatch",
                f"The payment was made in {intent.currency}.",
                param="currency",
            )
        if intent.status != "succeeded":
            raise _error(
                400,
                "payment_intent_unexpected_state",
                f"This PaymentIntent is {intent.status}; only succeeded ones are refunded.",
                param="payment_intent",
            )
        remaining = intent.amount - intent.amount_refunded
        if remaining == 0:
            raise _error(400, "charge_already_refunded", "The payment has been fully refunded.")
        amount = _amount(params.get("amount"), required=False) or remaining
        if amount > remaining:
            raise _error(
                400,
                "amount_too_large",
                f"Refund amount ({amount}) is greater than unrefunded amount ({remaining}).",
                param="amount",
            )
        reference = _reference(params)
        if not reference:
            raise _error(
                400, "parameter_missing", "Missing required param: reference.", param="reference"
            )
        refund = Refund(
            id="re_" + secrets.token_hex(12),
            payment_intent=intent.id,
            amount=amount,
            currency=intent.currency,
            reference=reference,
            reason=str(params.get("reason") or ""),
            created=int(self.now()),
            status=self.refund_status,
        )
        intent.amount_refunded += amount  # held against the intent while pending
        self.refunds[refund.id] = refund
        request.effect = f"created {refund.id}"
        self._emit("refund.created", refund.view())
        return json_response(200, refund.view())

    def _list_refunds(self, request: SandboxRequest) -> Response:
        self._authenticate(request)
        reference = request.query.get("reference")
        found = [
            r.view() for r in self.refunds.values() if reference is None or r.reference == reference
        ]
        return json_response(
            200, {"object": "list", "data": found, "has_more": False, "url": request.path}
        )

    def _get_refund(self, request: SandboxRequest) -> Response:
        self._authenticate(request)
        refund = self.refunds.get(request.params["id"])
        if refund is None:
            raise _error(
                404, "resource_missing", f"No such refund: '{request.params['id']}'", param="id"
            )
        return json_response(200, refund.view())

    # -- events

    def _emit(self, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        event = {
            "id": "evt_" + secrets.token_hex(12),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(self.now()),
            "type": event_type,
            "livemode": False,
            "data": {"object": obj},
        }
        self.events.append(event)
        self.dispatcher.submit(event, self.faults.take("webhook"))
        return event

    # -- control

    def _ctl_pay(self, request: SandboxRequest) -> Response:
        intent = self.intents.get(request.params["id"])
        if intent is None:
            raise ApiError(404, {"error": {"code": "resource_missing"}})
        if intent.status != "requires_payment":
            raise ApiError(409, {"error": {"code": "already_paid", "status": intent.status}})
        decline = request.json().get("decline_code")
        if decline:
            intent.status, intent.decline_code = "failed", str(decline)
            event = self._emit("payment_intent.payment_failed", intent.view())
        else:
            intent.status = "succeeded"
            event = self._emit("payment_intent.succeeded", intent.view())
        return json_response(200, {"payment_intent": intent.view(), "event": event["id"]})

    def _ctl_settle(self, request: SandboxRequest) -> Response:
        refund = self.refunds.get(request.params["id"])
        if refund is None:
            raise ApiError(404, {"error": {"code": "resource_missing"}})
        if refund.status != "pending":
            raise ApiError(409, {"error": {"code": "not_pending", "status": refund.status}})
        failure = request.json().get("failure_reason")
        if failure:
            refund.status, refund.failure_reason = "failed", str(failure)
            self.intents[refund.payment_intent].amount_refunded -= refund.amount
            event = self._emit("refund.failed", refund.view())
        else:
            refund.status = "succeeded"
            event = self._emit("refund.updated", refund.view())
        return json_response(200, {"refund": refund.view(), "event": event["id"]})

    def _ctl_flush(self, request: SandboxRequest) -> Response:
        return json_response(200, {"released": self.dispatcher.flush()})

    def _ctl_resend(self, request: SandboxRequest) -> Response:
        event_id = request.json().get("event_id")
        for event in self.events:
            if event["id"] == event_id:
                self.dispatcher.submit(event, None)
                return json_response(200, {"resent": event_id})
        raise ApiError(404, {"error": {"code": "resource_missing", "param": "event_id"}})

    def _ctl_events(self, request: SandboxRequest) -> Response:
        return json_response(200, {"data": self.events})
