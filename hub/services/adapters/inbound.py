"""Notifications from institutions: verified on the raw body, deduplicated by the provider's
event id, applied through ``operation_observe`` (so reordering and duplicates are harmless), and,
when a notification cannot be verified, never trusted: the operation it names is synced instead."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from adapters.capabilities import PaymentInstitutionAdapter, WebhookRejected
from adapters.errors import AdapterError
from adapters.http import redact_headers
from adapters.interface import InboundWebhook as ParsedWebhook
from adapters.interface import Outcome
from hub import errors
from hub.models import AdapterConnection, AdapterOperation, InboundWebhook
from hub.services.adapters.operations import Observation, operation_observe, operation_sync_soon
from hub.services.adapters.runtime import build_adapter

MAX_STORED_BODY = 64 * 1024
Status = InboundWebhook.Status


@dataclass(frozen=True)
class Receipt:
    status: str
    webhook_id: str


def _find_operation(
    connection: AdapterConnection, parsed: ParsedWebhook
) -> AdapterOperation | None:
    """By the provider's id, else by our reference: two lookups that each use an index (one query
    with OR would scan every operation of the connection)."""
    operations = AdapterOperation.objects.filter(connection=connection, kind=parsed.object_type)
    found = None
    if parsed.provider_id:
        found = operations.filter(provider_id=parsed.provider_id).first()
    if found is None and parsed.reference:
        found = operations.filter(reference=parsed.reference).first()
    return found


def _log(
    connection: AdapterConnection,
    status: str,
    reason: str,
    headers: Mapping[str, str],
    body: bytes,
    **fields: object,
) -> InboundWebhook:
    return InboundWebhook.objects.create(
        connection=connection,
        status=status,
        reason=reason[:300],
        headers=redact_headers(headers.items()),
        body=body[:MAX_STORED_BODY].decode("utf-8", "replace"),
        **fields,
    )


def inbound_webhook_receive(
    *, connection_id: str, headers: Mapping[str, str], body: bytes
) -> Receipt:
    connection = (
        AdapterConnection.objects.select_related("participant").filter(pk=connection_id).first()
    )
    if connection is None or connection.status != AdapterConnection.Status.ENABLED:
        raise errors.NotFound()
    adapter = build_adapter(connection)
    try:
        if not isinstance(adapter, PaymentInstitutionAdapter):
            raise errors.NotFound()
        try:
            adapter.verify_webhook(headers=headers, body=body)
        except WebhookRejected as exc:
            _log(connection, Status.REJECTED, str(exc), headers, body)
            _sync_named_operation(adapter, connection, body)
            raise errors.AuthenticationFailed(
                f"The notification does not verify: {exc}", code="webhook_signature_invalid"
            ) from None
        try:
            parsed = adapter.parse_webhook(body=body)
        except AdapterError as exc:
            _log(connection, Status.REJECTED, f"unreadable: {exc.message}", headers, body)
            raise errors.InvalidRequest(
                "The notification is signed but cannot be read.", code="webhook_malformed"
            ) from None
    finally:
        adapter.client.close()
    return _apply(connection, parsed, headers, body)


def _sync_named_operation(
    adapter: PaymentInstitutionAdapter, connection: AdapterConnection, body: bytes
) -> None:
    """The payload is not trusted, but if it names one of our operations, ask the provider."""
    try:
        hint = adapter.parse_webhook(body=body)
    except AdapterError:
        return
    operation = _find_operation(connection, hint)
    if operation is not None:
        operation_sync_soon(operation_id=operation.pk)


def _apply(
    connection: AdapterConnection, parsed: ParsedWebhook, headers: Mapping[str, str], body: bytes
) -> Receipt:
    operation = _find_operation(connection, parsed)
    try:
        with transaction.atomic():
            row = _log(
                connection,
                Status.APPLIED,
                "",
                headers,
                body,
                provider_event_id=parsed.provider_event_id,
                operation=operation,
            )
    except IntegrityError:
        row = _log(
            connection,
            Status.DUPLICATE,
            "already received",
            headers,
            body,
            provider_event_id=parsed.provider_event_id,
            operation=operation,
        )
        return Receipt(Status.DUPLICATE, row.pk)
    if operation is None:
        InboundWebhook.objects.filter(pk=row.pk).update(
            status=Status.IGNORED, reason="no such operation"
        )
        return Receipt(Status.IGNORED, row.pk)
    # A failure is notified without its reason (the notification carries none): the hub records
    # no failure it cannot explain, so it asks the institution (a status sync) instead of
    # marking it failed from here; the amount is still checked now.
    failure_notified = parsed.outcome == Outcome.FAILED
    before = operation.state
    try:
        after = operation_observe(
            operation_id=operation.pk,
            observed=Observation(
                outcome=Outcome.UNKNOWN if failure_notified else parsed.outcome,
                provider_id=parsed.provider_id,
                amount=parsed.amount,
            ),
            source="webhook",
        )
    except Exception:
        # Not applied: free the event id, so that the provider's redelivery (it retries on our
        # error answer) is applied rather than dismissed as a duplicate.
        InboundWebhook.objects.filter(pk=row.pk).update(
            status=Status.REJECTED, reason="not applied: the hub failed; a redelivery is applied"
        )
        raise
    settled = AdapterOperation.TERMINAL | {AdapterOperation.State.HELD}
    reason = ""
    if after.state == AdapterOperation.State.HELD and before != after.state:
        status = Status.HELD
    elif before in settled:
        status, reason = Status.IGNORED, f"operation is {after.state}"
    elif failure_notified:
        status, reason = Status.APPLIED, "failure notified: a status sync fetches its reason"
        operation_sync_soon(operation_id=operation.pk)
    else:
        status = Status.APPLIED
    if status == Status.HELD:
        reason = "the notification reports another amount or currency"
    if (status, reason) != (Status.APPLIED, ""):
        InboundWebhook.objects.filter(pk=row.pk).update(status=status, reason=reason)
    return Receipt(status, row.pk)
