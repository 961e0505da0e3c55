"""Notifications from institutions, in two steps.

1. ``inbound_webhook_receive`` (the API, on the institution's clock): verify the signature on the
   raw body, read it, and store it once per provider event id (a unique index deduplicates);
   then acknowledge. A notification that cannot be verified is never trusted: the operation it
   names is synced instead.
2. ``inbound_apply_due`` (a worker, soon after): apply what each stored notification says through
   ``operation_observe``, so that reordering and duplicates are harmless. A notification whose
   application fails is tried again on a schedule, then rejected (its event id freed for a
   redelivery) and its operation synced: the institution's own word settles it.

Acknowledging before applying keeps the institution's call short whatever the hub is doing, and
its retries for the rare cases (a hub that is down) rather than for every slow moment."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from adapters.capabilities import PaymentInstitutionAdapter, WebhookRejected
from adapters.errors import AdapterError
from adapters.http import redact_headers
from adapters.interface import Amount, Outcome
from adapters.interface import InboundWebhook as ParsedWebhook
from hub import errors
from hub.conf import hub_settings
from hub.jobs import enqueue_after_commit
from hub.models import AdapterConnection, AdapterOperation, InboundWebhook
from hub.services.adapters.operations import (
    Observation,
    operation_observe_within,
    operation_sync_soon,
)
from hub.services.adapters.runtime import build_adapter

logger = logging.getLogger(__name__)

MAX_STORED_BODY = 64 * 1024
LEASE_SECONDS = 60  # a worker that dies mid-batch leaves its notifications due after this
Status = InboundWebhook.Status


@dataclass(frozen=True)
class Receipt:
    status: str
    webhook_id: str


# --- the connection, per process ---------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    connection_id: str
    adapter: PaymentInstitutionAdapter
    expires: float


class _Endpoints:
    """Enabled payment-institution connections with their adapters (credentials decrypted), per
    process, for ``INBOUND_CONNECTION_CACHE_SECONDS``: verifying a notification then needs no
    database read. A change to a connection clears this process's cache when it commits; other
    processes see it when their entry expires."""

    def __init__(self) -> None:
        self._entries: dict[str, _Endpoint] = {}
        self._lock = threading.Lock()

    def get(self, connection_id: str) -> _Endpoint:
        ttl = hub_settings.INBOUND_CONNECTION_CACHE_SECONDS
        entry = self._entries.get(connection_id)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        connection = (
            AdapterConnection.objects.select_related("participant")
            .filter(pk=connection_id, status=AdapterConnection.Status.ENABLED)
            .first()
        )
        if connection is None:
            raise errors.NotFound()
        adapter = build_adapter(connection)
        if not isinstance(adapter, PaymentInstitutionAdapter):
            adapter.client.close()
            raise errors.NotFound()
        entry = _Endpoint(connection.pk, adapter, time.monotonic() + ttl)
        if ttl > 0:
            with self._lock:
                replaced = self._entries.get(connection_id)
                self._entries[connection_id] = entry
            if replaced is not None:
                replaced.adapter.client.close()
        return entry

    def clear(self) -> None:
        with self._lock:
            entries, self._entries = self._entries, {}
        for entry in entries.values():
            entry.adapter.client.close()


endpoints = _Endpoints()


def inbound_endpoints_clear_on_commit() -> None:
    """Forget this process's connections now and when the current transaction commits."""
    endpoints.clear()
    transaction.on_commit(endpoints.clear)


# --- step 1: receive -----------------------------------------------------------------------------


def _log(
    connection_id: str,
    status: str,
    reason: str,
    headers: Mapping[str, str],
    body: bytes,
    **fields: object,
) -> InboundWebhook:
    return InboundWebhook.objects.create(
        connection_id=connection_id,
        status=status,
        reason=reason[:300],
        headers=redact_headers(headers.items()),
        body=body[:MAX_STORED_BODY].decode("utf-8", "replace"),
        **fields,
    )


def inbound_webhook_receive(
    *, connection_id: str, headers: Mapping[str, str], body: bytes
) -> Receipt:
    """Verify, read and store one notification: ``received`` (a worker applies it) or
    ``duplicate`` (its event id was received before)."""
    endpoint = endpoints.get(connection_id)
    adapter = endpoint.adapter
    try:
        adapter.verify_webhook(headers=headers, body=body)
    except WebhookRejected as exc:
        _log(connection_id, Status.REJECTED, str(exc), headers, body)
        _sync_named_operation(adapter, connection_id, body)
        raise errors.AuthenticationFailed(
            f"The notification does not verify: {exc}", code="webhook_signature_invalid"
        ) from None
    try:
        parsed = adapter.parse_webhook(body=body)
    except AdapterError as exc:
        _log(connection_id, Status.REJECTED, f"unreadable: {exc.message}", headers, body)
        raise errors.InvalidRequest(
            "The notification is signed but cannot be read.", code="webhook_malformed"
        ) from None
    try:
        # One statement; atomic() only so that a conflict does not break an outer transaction.
        with transaction.atomic():
            row = _log(
                connection_id,
                Status.RECEIVED,
                "",
                headers,
                body,
                provider_event_id=parsed.provider_event_id,
                parsed=_dump(parsed),
                apply_after=timezone.now(),
            )
    except IntegrityError:
        row = _log(
            connection_id,
            Status.DUPLICATE,
            "already received",
            headers,
            body,
            provider_event_id=parsed.provider_event_id,
        )
        return Receipt(Status.DUPLICATE, row.pk)
    _ask_for_apply()
    return Receipt(Status.RECEIVED, row.pk)


def _find_operation(connection_id: str, parsed: ParsedWebhook) -> AdapterOperation | None:
    """By the provider's id, else by our reference: two lookups that each use an index (one query
    with OR would scan every operation of the connection)."""
    operations = AdapterOperation.objects.filter(
        connection_id=connection_id, kind=parsed.object_type
    )
    found = None
    if parsed.provider_id:
        found = operations.filter(provider_id=parsed.provider_id).first()
    if found is None and parsed.reference:
        found = operations.filter(reference=parsed.reference).first()
    return found


def _sync_named_operation(
    adapter: PaymentInstitutionAdapter, connection_id: str, body: bytes
) -> None:
    """The payload is not trusted, but if it names one of our operations, ask the provider."""
    try:
        hint = adapter.parse_webhook(body=body)
    except AdapterError:
        return
    operation = _find_operation(connection_id, hint)
    if operation is not None:
        operation_sync_soon(operation_id=operation.pk)


class _Nudge:
    """At most one apply task per ``INBOUND_NUDGE_SECONDS`` per process. The task is delayed by
    the same interval, so it also finds every notification whose own nudge was skipped."""

    def __init__(self) -> None:
        self._last = float("-inf")
        self._lock = threading.Lock()

    def __call__(self) -> None:
        interval = hub_settings.INBOUND_NUDGE_SECONDS
        now = time.monotonic()
        with self._lock:
            if now - self._last < interval:
                return
            self._last = now
        from hub.tasks_adapters import inbound_apply_task

        enqueue_after_commit(inbound_apply_task, countdown=interval or None)


_ask_for_apply = _Nudge()


def _dump(parsed: ParsedWebhook) -> dict[str, Any]:
    amount = parsed.amount
    return {
        "event_type": parsed.event_type,
        "object_type": parsed.object_type,
        "reference": parsed.reference,
        "provider_id": parsed.provider_id,
        "outcome": parsed.outcome.value,
        "amount": None if amount is None else {"minor": amount.minor, "currency": amount.currency},
        "occurred_at": parsed.occurred_at.isoformat(),
    }


def _load(row: InboundWebhook) -> ParsedWebhook:
    data = row.parsed
    assert isinstance(data, dict), row.pk
    amount = data["amount"]
    return ParsedWebhook(
        provider_event_id=row.provider_event_id or "",
        event_type=data["event_type"],
        object_type=data["object_type"],
        reference=data["reference"],
        provider_id=data["provider_id"],
        outcome=Outcome(data["outcome"]),
        amount=None if amount is None else Amount(amount["minor"], amount["currency"]),
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
    )


# --- step 2: apply -----------------------------------------------------------------------------


def inbound_apply_due(*, batch: int = 100, budget_seconds: float = 30.0) -> int:
    """Apply every received notification that is due, oldest first, in claimed batches (so that
    several workers share the work without applying one twice at a time). Returns how many
    were settled; stops after ``budget_seconds`` and leaves the rest to the next task."""
    deadline = time.monotonic() + budget_seconds
    done = 0
    while time.monotonic() < deadline:
        claimed = _claim(batch)
        if claimed:
            done += _apply_batch(claimed)
        if len(claimed) < batch:
            break
    return done


def _claim(limit: int) -> list[InboundWebhook]:
    """Up to ``limit`` due notifications, leased to this caller: another one skips them while
    their rows are locked here, and finds them not due once the lease is written."""
    with transaction.atomic():
        now = timezone.now()
        rows = list(
            InboundWebhook.objects.select_for_update(skip_locked=True)
            .filter(status=Status.RECEIVED, apply_after__lte=now)
            .order_by("pk")
            .defer("headers", "body")[:limit]
        )
        if rows:
            InboundWebhook.objects.filter(pk__in=[row.pk for row in rows]).update(
                apply_after=now + timedelta(seconds=LEASE_SECONDS)
            )
    return rows


def _operations_for(
    rows: list[tuple[InboundWebhook, ParsedWebhook]],
) -> dict[str, AdapterOperation | None]:
    """Each notification's operation: by the provider's id, else by our reference, for the
    whole batch in two indexed queries."""
    found: dict[str, AdapterOperation | None] = {}
    connections = {row.connection_id for row, _ in rows}
    by_provider = {
        (op.connection_id, op.kind, op.provider_id): op
        for op in AdapterOperation.objects.filter(
            connection_id__in=connections,
            provider_id__in={p.provider_id for _, p in rows if p.provider_id},
        )
    }
    for row, parsed in rows:
        key = (row.connection_id, parsed.object_type, parsed.provider_id)
        found[row.pk] = by_provider.get(key) if parsed.provider_id else None
    missing = [(row, p) for row, p in rows if found[row.pk] is None and p.reference]
    if missing:
        by_reference = {
            (op.connection_id, op.kind, op.reference): op
            for op in AdapterOperation.objects.filter(
                connection_id__in=connections, reference__in={p.reference for _, p in missing}
            )
        }
        for row, parsed in missing:
            found[row.pk] = by_reference.get(
                (row.connection_id, parsed.object_type, parsed.reference or "")
            )
    return found


def _apply_batch(claimed: list[InboundWebhook]) -> int:
    """One transaction for the batch (one durable commit, not one per notification), a savepoint
    per notification (a failure costs only its own), operations locked in id order (appliers
    running at once cannot deadlock), and each operation's notifications in the order received."""
    rows = [(row, _load(row)) for row in claimed]
    operations = _operations_for(rows)

    def order(item: tuple[InboundWebhook, ParsedWebhook]) -> tuple[str, str]:
        operation = operations[item[0].pk]
        return (operation.pk if operation is not None else "", item[0].pk)

    settled = 0
    failures: list[tuple[InboundWebhook, AdapterOperation, Exception]] = []
    with transaction.atomic(durable=True):
        for row, parsed in sorted(rows, key=order):
            operation = operations[row.pk]
            try:
                with transaction.atomic():
                    settled += _apply_one(row, parsed, operation)
            except Exception as exc:
                logger.exception("applying inbound notification %s failed", row.pk)
                assert operation is not None  # nothing else can fail here
                failures.append((row, operation, exc))
    for row, operation, error in failures:
        settled += _failed(row, operation, error)
    return settled


def _settle(row: InboundWebhook, status: str, reason: str, **fields: object) -> int:
    return InboundWebhook.objects.filter(pk=row.pk, status=Status.RECEIVED).update(
        status=status, reason=reason[:300], apply_after=None, applied_at=timezone.now(), **fields
    )


def _apply_one(
    row: InboundWebhook, parsed: ParsedWebhook, operation: AdapterOperation | None
) -> int:
    if operation is None:
        return _settle(row, Status.IGNORED, "no such operation")
    # A failure is notified without its reason (the notification carries none): the hub records
    # no failure it cannot explain, so it asks the institution (a status sync) instead of
    # marking it failed from here; the amount is still checked now.
    failure_notified = parsed.outcome == Outcome.FAILED
    # ``before`` is read under the observation's lock: an earlier notification of this batch
    # may have changed the operation since it was looked up.
    before, after = operation_observe_within(
        operation_id=operation.pk,
        observed=Observation(
            outcome=Outcome.UNKNOWN if failure_notified else parsed.outcome,
            provider_id=parsed.provider_id,
            amount=parsed.amount,
        ),
        source="webhook",
    )
    settled = AdapterOperation.TERMINAL | {AdapterOperation.State.HELD}
    reason = ""
    if after.state == AdapterOperation.State.HELD and before != after.state:
        status, reason = Status.HELD, "the notification reports another amount or currency"
    elif before in settled:
        status, reason = Status.IGNORED, f"operation is {after.state}"
    elif failure_notified:
        status, reason = Status.APPLIED, "failure notified: a status sync fetches its reason"
        operation_sync_soon(operation_id=operation.pk)
    else:
        status = Status.APPLIED
    return _settle(row, status, reason, operation=operation)


def _failed(row: InboundWebhook, operation: AdapterOperation, exc: Exception) -> int:
    schedule = hub_settings.INBOUND_RETRY_SCHEDULE
    attempts = row.attempts + 1
    what = f"{type(exc).__name__}"
    if attempts <= len(schedule):
        InboundWebhook.objects.filter(pk=row.pk, status=Status.RECEIVED).update(
            attempts=attempts,
            reason=f"attempt {attempts} failed ({what}); tried again",
            apply_after=timezone.now() + timedelta(seconds=schedule[attempts - 1]),
            operation=operation,
        )
        return 0
    # Spent: free the event id (a redelivery is applied) and ask the institution.
    settled = _settle(
        row,
        Status.REJECTED,
        f"not applied after {attempts} attempts ({what}): a status sync brings the truth",
        attempts=attempts,
        operation=operation,
    )
    operation_sync_soon(operation_id=operation.pk)
    return settled
