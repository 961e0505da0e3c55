"""A payment institution with a Stripe-shaped API (payment intents, refunds, signed webhooks).

Settings: ``base_url``. Credentials: ``secret_key`` (Bearer), ``webhook_secret`` (signatures).

Creates are idempotent at the provider: the ``Idempotency-Key`` is our reference, so the hub's
client may retry them, and a retry answers the original object. Status syncs find an object by
the provider's id, or by our reference when the create ended unknown.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from adapters.builtin import header, load_object, read_object, required
from adapters.capabilities import PaymentInstitutionAdapter, WebhookRejected
from adapters.errors import (
    AdapterMisconfigured,
    IntegrityMismatch,
    MalformedResponse,
    OperationNotFound,
    UnknownOutcome,
)
from adapters.http import HubHttpClient
from adapters.interface import (
    Amount,
    InboundWebhook,
    Outcome,
    PayinRequest,
    PayinResult,
    RefundRequest,
    RefundResult,
)
from adapters.manifest import Capability, ErrorRule, ErrorTable, Manifest

if TYPE_CHECKING:
    from adapters.conformance.hook import SandboxHandle

DEFAULT_WEBHOOK_TOLERANCE = 300  # seconds, either side of our clock

# Provider codes (decline codes and API error codes) as the hub reads them.
ERRORS = ErrorTable(
    rules={
        "card_declined": ErrorRule("payment_declined"),
        "generic_decline": ErrorRule("payment_declined"),
        "do_not_honor": ErrorRule("payment_declined"),
        "fraudulent": ErrorRule("payment_declined"),
        "insufficient_funds": ErrorRule("insufficient_funds", retryable=True),
        "expired_card": ErrorRule("card_expired"),
        "incorrect_cvc": ErrorRule("card_invalid"),
        "processing_error": ErrorRule("counterparty_processing_error", retryable=True),
        "amount_too_large": ErrorRule("amount_too_large"),
        "amount_too_small": ErrorRule("amount_too_small"),
        "payment_intent_unexpected_state": ErrorRule("payin_not_refundable"),
        "charge_already_refunded": ErrorRule("payin_already_refunded"),
        "currency_not_supported": ErrorRule("currency_not_supported", decline=False),
        "currency_mismatch": ErrorRule("currency_mismatch", decline=False),
        "parameter_missing": ErrorRule("counterparty_request_invalid", decline=False),
        "parameter_invalid": ErrorRule("counterparty_request_invalid", decline=False),
        "parameter_invalid_integer": ErrorRule("counterparty_request_invalid", decline=False),
        "resource_missing": ErrorRule("counterparty_object_missing", decline=False),
        "idempotency_error": ErrorRule("idempotency_key_reused", decline=False),
        "rate_limit": ErrorRule("counterparty_rate_limited", retryable=True, decline=False),
    },
    default=ErrorRule("payment_declined"),
)

_PAYIN_OUTCOMES = {
    "requires_payment": Outcome.PENDING,
    "requires_payment_method": Outcome.PENDING,
    "requires_confirmation": Outcome.PENDING,
    "requires_action": Outcome.PENDING,
    "processing": Outcome.PENDING,
    "succeeded": Outcome.SUCCEEDED,
    "failed": Outcome.FAILED,
    "canceled": Outcome.FAILED,
}
_REFUND_OUTCOMES = {
    "pending": Outcome.PENDING,
    "requires_action": Outcome.PENDING,
    "succeeded": Outcome.SUCCEEDED,
    "failed": Outcome.FAILED,
    "canceled": Outcome.FAILED,
}
_OBJECT_TYPES = {"payment_intent": "payin", "refund": "refund"}


def _outcome(table: dict[str, Outcome], status: Any) -> Outcome:
    if status not in table:
        raise MalformedResponse(f"unknown status {status!r}")
    return table[status]


def _amount(obj: Mapping[str, Any]) -> Amount:
    minor = required(obj, "amount", int)
    currency = required(obj, "currency").upper()
    try:
        return Amount(minor, currency)
    except ValueError as exc:
        raise MalformedResponse(f"the provider's amount cannot be read: {exc}") from None


def _reference(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    value = obj.get("reference") or (
        metadata.get("reference") if isinstance(metadata, dict) else None
    )
    return value if isinstance(value, str) and value else None


def sign_payload(secret: str, timestamp: int, body: bytes) -> str:
    """The ``v1`` signature: hex HMAC-SHA256 of ``"<timestamp>.<raw body>"``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


class StripeLikeAdapter(PaymentInstitutionAdapter):
    manifest = Manifest(
        name="stripe_like",
        version="1.0.0",
        display_name="Stripe-like payment institution",
        capabilities=frozenset({Capability.PAYMENT_INSTITUTION}),
        currencies=frozenset({"KRW", "CNY"}),
        corridors=frozenset({("KR", "CN")}),
        auth_scheme="bearer",
        idempotent_operations=frozenset(
            {"create_payin", "get_payin", "create_refund", "get_refund"}
        ),
        errors=ERRORS,
        secret_fields=frozenset({"secret_key", "webhook_secret"}),
        config_fields=frozenset({"base_url"}),
    )

    @classmethod
    def conformance_sandbox(cls) -> SandboxHandle:
        """The conformance kit's hook (``adapters.conformance.hook``)."""
        from adapters.conformance.builtin import stripe_like_sandbox

        return stripe_like_sandbox()

    def __init__(
        self,
        *,
        client: HubHttpClient,
        config: Mapping[str, str],
        secrets: Mapping[str, str],
        clock: Callable[[], float] = time.time,
        webhook_tolerance: float = DEFAULT_WEBHOOK_TOLERANCE,
    ) -> None:
        super().__init__(client=client, config=config, secrets=secrets)
        self.clock = clock
        self.webhook_tolerance = webhook_tolerance

    # -- plumbing

    def _url(self, path: str) -> str:
        base = self.config.get("base_url")
        if not base:
            raise AdapterMisconfigured("stripe_like needs the setting base_url")
        return base.rstrip("/") + path

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        key = self.secrets.get("secret_key")
        if not key:
            raise AdapterMisconfigured("stripe_like needs the credential secret_key")
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        request = self.client.build_request(
            method,
            self._url(path),
            data=form,
            params=params,
            headers=self._headers(idempotency_key),
        )
        return self.client.send(
            operation, request, idempotent=self.manifest.is_idempotent(operation)
        )

    def _read(self, response: httpx.Response, *, lookup: bool = False) -> dict[str, Any]:
        """A 2xx object, or the error the provider's answer means."""
        status = response.status_code
        if 200 <= status < 300:
            return read_object(response)
        if status in (401, 403):
            raise AdapterMisconfigured(f"the provider refused our credentials (HTTP {status})")
        if status == 409:  # a concurrent request under the same key is still running there
            raise UnknownOutcome("the provider is still processing a request with this key")
        if 400 <= status < 500:
            error = read_object(response).get("error")
            if not isinstance(error, dict):
                raise MalformedResponse(f"HTTP {status} without an error object")
            code = error.get("decline_code") or error.get("code") or error.get("type")
            message = str(error.get("message") or f"HTTP {status}")
            if lookup and status == 404:
                raise OperationNotFound(message, provider_code=str(code))
            raise self.manifest.errors.rejected(str(code or f"http_{status}"), message)
        raise MalformedResponse(f"unexpected HTTP {status}")

    def _find(
        self, operation: str, path: str, reference: str, provider_id: str | None
    ) -> dict[str, Any]:
        if provider_id:
            obj = self._read(self._call(operation, "GET", f"{path}/{provider_id}"), lookup=True)
            found = _reference(obj)
            if found is not None and found != reference:
                raise IntegrityMismatch(
                    f"{provider_id} belongs to reference {found}, not {reference}"
                )
            return obj
        listing = self._read(self._call(operation, "GET", path, params={"reference": reference}))
        data = listing.get("data")
        if not isinstance(data, list) or not all(isinstance(o, dict) for o in data):
            raise MalformedResponse("a list without data")
        matches = [o for o in data if _reference(o) == reference]
        if not matches:
            raise OperationNotFound(f"the provider has nothing for reference {reference}")
        if len(matches) > 1:
            ids = ", ".join(str(o.get("id")) for o in matches)
            raise IntegrityMismatch(f"the provider holds several objects for {reference}: {ids}")
        return matches[0]

    # -- payins

    def _payin(self, obj: dict[str, Any], reference: str) -> PayinResult:
        if obj.get("object", "payment_intent") != "payment_intent":
            raise MalformedResponse(f"expected a payment_intent, got {obj.get('object')!r}")
        outcome = _outcome(_PAYIN_OUTCOMES, obj.get("status"))
        code = reason = None
        if outcome == Outcome.FAILED:
            error = obj.get("last_payment_error")
            error = error if isinstance(error, dict) else {}
            provider_code = str(error.get("decline_code") or error.get("code") or "unknown")
            code = self.manifest.errors.lookup(provider_code).hub_code
            reason = f"{provider_code}: {error.get('message') or ''}".strip()
        return PayinResult(
            reference=reference,
            provider_id=required(obj, "id"),
            amount=_amount(obj),
            outcome=outcome,
            failure_code=code,
            failure_reason=reason,
        )

    def create_payin(self, request: PayinRequest) -> PayinResult:
        form = {
            "amount": str(request.amount.minor),
            "currency": request.amount.currency.lower(),
            "reference": request.reference,
            "description": request.description,
        }
        for key, value in sorted(request.metadata.items()):
            form[f"metadata[{key}]"] = value
        response = self._call(
            "create_payin",
            "POST",
            "/v1/payment_intents",
            form=form,
            idempotency_key=request.reference,
        )
        return self._payin(self._read(response), request.reference)

    def get_payin(self, *, reference: str, provider_id: str | None) -> PayinResult:
        obj = self._find("get_payin", "/v1/payment_intents", reference, provider_id)
        return self._payin(obj, reference)

    # -- refunds

    def _refund(self, obj: dict[str, Any], reference: str) -> RefundResult:
        if obj.get("object", "refund") != "refund":
            raise MalformedResponse(f"expected a refund, got {obj.get('object')!r}")
        outcome = _outcome(_REFUND_OUTCOMES, obj.get("status"))
        code = reason = None
        if outcome == Outcome.FAILED:
            reason = str(obj.get("failure_reason") or "unknown")
            code = self.manifest.errors.lookup(reason).hub_code
        return RefundResult(
            reference=reference,
            provider_id=required(obj, "id"),
            amount=_amount(obj),
            outcome=outcome,
            failure_code=code,
            failure_reason=reason,
        )

    def create_refund(self, request: RefundRequest) -> RefundResult:
        form = {
            "payment_intent": request.payin_provider_id,
            "amount": str(request.amount.minor),
            "currency": request.amount.currency.lower(),
            "reference": request.reference,
        }
        if request.reason:
            form["reason"] = request.reason
        response = self._call(
            "create_refund", "POST", "/v1/refunds", form=form, idempotency_key=request.reference
        )
        return self._refund(self._read(response), request.reference)

    def get_refund(self, *, reference: str, provider_id: str | None) -> RefundResult:
        obj = self._find("get_refund", "/v1/refunds", reference, provider_id)
        return self._refund(obj, reference)

    # -- webhooks

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> None:
        """Check ``Stripe-Signature`` (``t=<unix>,v1=<hex>[,v1=...]``) over the raw body, within
        ``webhook_tolerance`` seconds of our clock either way. Any ``v1`` may match (the provider
        signs with every live secret while one is rolled)."""
        secret = self.secrets.get("webhook_secret")
        if not secret:
            raise AdapterMisconfigured("stripe_like needs the credential webhook_secret")
        value = header(headers, "Stripe-Signature")
        if not value:
            raise WebhookRejected("the notification is not signed")
        timestamp: int | None = None
        signatures: list[str] = []
        for item in value.split(","):
            key, _, part = item.strip().partition("=")
            if key == "t" and part.isdigit():
                timestamp = int(part)
            elif key == "v1" and part:
                signatures.append(part)
        if timestamp is None or not signatures:
            raise WebhookRejected("the signature header has no timestamp or no v1 signature")
        skew = abs(self.clock() - timestamp)
        if skew > self.webhook_tolerance:
            raise WebhookRejected(
                f"the signature's timestamp is {skew:.0f} s away from now "
                f"(tolerance {self.webhook_tolerance:g} s)"
            )
        expected = sign_payload(secret, timestamp, body)
        if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            raise WebhookRejected("the signature does not match the body")

    def parse_webhook(self, *, body: bytes) -> InboundWebhook:
        event = load_object(body, what="the notification")
        data = event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict):
            raise MalformedResponse("the notification has no data.object")
        kind = obj.get("object")
        object_type = _OBJECT_TYPES.get(kind) if isinstance(kind, str) else None
        if object_type is None:
            raise MalformedResponse(f"the hub reads no {obj.get('object')!r} notifications")
        table = _PAYIN_OUTCOMES if object_type == "payin" else _REFUND_OUTCOMES
        created = required(event, "created", int)
        try:
            occurred_at = datetime.fromtimestamp(created, UTC)
        except (OverflowError, OSError, ValueError):
            raise MalformedResponse(f"created is not a time: {created}") from None
        return InboundWebhook(
            provider_event_id=required(event, "id"),
            event_type=required(event, "type"),
            object_type=object_type,
            reference=_reference(obj),
            provider_id=required(obj, "id"),
            outcome=_outcome(table, obj.get("status")),
            amount=_amount(obj),
            occurred_at=occurred_at,
        )
