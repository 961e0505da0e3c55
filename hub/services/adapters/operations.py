"""Operations at institutions (payins, refunds, payouts), followed until they are terminal.

Every call follows the same three steps so that no lock or transaction is held on the wire:
record the operation (its reference is the provider's idempotency key), call the adapter with
nothing open, then lock the row and apply what was learnt. An outcome that may have landed is
``unknown`` and is only ever resolved by asking the provider (status sync) or by a verified
notification; the hub never submits the same operation twice, but for one the institution
never received whose create its manifest declares idempotent (a payin or a refund), sent again
under the same reference once no first call can still be on its way. Syncs follow a bounded
schedule; when it is spent the operation goes to the operator's queue.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from adapters.capabilities import BankAdapter, PaymentInstitutionAdapter
from adapters.errors import (
    AdapterError,
    AdapterMisconfigured,
    CounterpartyUnavailable,
    HostNotAllowed,
    IntegrityMismatch,
    OperationNotFound,
    Rejected,
    UnknownOutcome,
)
from adapters.interface import (
    Amount,
    Outcome,
    PayinRequest,
    PayinResult,
    PayoutRequest,
    PayoutResult,
    RefundRequest,
    RefundResult,
)
from hub import errors
from hub.conf import hub_settings
from hub.crypto import keyed_hash
from hub.jobs import enqueue_after_commit
from hub.models import AdapterConnection, AdapterOperation, OperatorTask
from hub.services.adapters.runtime import build_adapter
from hub.services.events import event_emit, register_event_types

register_event_types(
    "adapter_operation.pending",
    "adapter_operation.unknown",
    "adapter_operation.succeeded",
    "adapter_operation.failed",
    "adapter_operation.held",
    "adapter_operation.escalated",
)

State = AdapterOperation.State
OperationRequest = PayinRequest | RefundRequest | PayoutRequest
OperationResult = PayinResult | RefundResult | PayoutResult

_KIND_OF: dict[type, str] = {
    PayinRequest: AdapterOperation.Kind.PAYIN,
    RefundRequest: AdapterOperation.Kind.REFUND,
    PayoutRequest: AdapterOperation.Kind.PAYOUT,
}


@dataclass(frozen=True)
class Observation:
    """What one call taught us about an operation."""

    outcome: Outcome
    provider_id: str | None = None
    amount: Amount | None = None
    failure_code: str = ""
    failure_reason: str = ""
    # The institution's answer contradicts what was asked in a way the adapter caught (several
    # payouts for one reference, another reference's object): held for an operator.
    mismatch: str = ""


def operation_payload(operation: AdapterOperation) -> dict[str, Any]:
    return {
        "id": operation.pk,
        "kind": operation.kind,
        "reference": operation.reference,
        "connection": operation.connection_id,
        "state": operation.state,
        "provider_id": operation.provider_id or None,
        "failure_code": operation.failure_code or None,
    }


def _sync_delay(sync_count: int) -> float | None:
    schedule: list[float] = hub_settings.ADAPTER_SYNC_SCHEDULE
    return schedule[sync_count] if sync_count < len(schedule) else None


def _observation(result: OperationResult) -> Observation:
    reason = getattr(result, "failure_reason", None) or ""
    return Observation(
        outcome=result.outcome,
        provider_id=result.provider_id,
        amount=result.amount,
        failure_code=result.failure_code or "",
        failure_reason=reason,
    )


def _from_error(exc: AdapterError) -> Observation:
    if isinstance(exc, Rejected):
        return Observation(
            Outcome.FAILED, failure_code=exc.hub_code, failure_reason=exc.message[:300]
        )
    if isinstance(exc, IntegrityMismatch):
        return _mismatch(exc)
    if isinstance(exc, UnknownOutcome):
        return Observation(Outcome.UNKNOWN, failure_code=exc.code, failure_reason=exc.message[:300])
    if isinstance(exc, CounterpartyUnavailable | HostNotAllowed | AdapterMisconfigured):
        # Nothing reached the institution, or it refused us before acting (bad credentials,
        # a missing setting): the operation did not happen there.
        return Observation(Outcome.FAILED, failure_code=exc.code, failure_reason=exc.message[:300])
    return Observation(Outcome.UNKNOWN, failure_code=exc.code, failure_reason=exc.message[:300])


def _mismatch(exc: IntegrityMismatch) -> Observation:
    return Observation(
        Outcome.UNKNOWN,
        failure_code=exc.code,
        failure_reason=exc.message[:300],
        mismatch=exc.message,
    )


def _same_or_conflict(
    existing: AdapterOperation, body: dict[str, Any], request: OperationRequest
) -> tuple[AdapterOperation, bool]:
    if existing.request != body:
        raise errors.Conflict(
            f"The reference {request.reference} was used for another {existing.kind}.",
            code="operation_reference_reused",
            param="reference",
        )
    return existing, False


def stored_request(request: OperationRequest) -> dict[str, Any]:
    """The request as the operation keeps it: a beneficiary's account number is never stored in
    clear, only masked and as a keyed hash (enough to tell a repeat from another request)."""
    body = dataclasses.asdict(request)
    beneficiary = body.get("beneficiary")
    if isinstance(beneficiary, dict) and beneficiary.get("account_number"):
        number = str(beneficiary["account_number"])
        beneficiary["account_number"] = "****" + number[-4:]
        beneficiary["account_number_hash"] = keyed_hash(number)
    return body


@transaction.atomic(durable=True)
def _record(*, connection_id: str, request: OperationRequest) -> tuple[AdapterOperation, bool]:
    connection = AdapterConnection.objects.filter(pk=connection_id).first()
    if connection is None:
        raise errors.NotFound(param="connection")
    if connection.status != AdapterConnection.Status.ENABLED:
        raise errors.Conflict(
            "The adapter connection is disabled.", code="adapter_connection_disabled"
        )
    kind = _KIND_OF[type(request)]
    body = stored_request(request)
    same = {"connection": connection, "kind": kind, "reference": request.reference}
    existing = AdapterOperation.objects.filter(**same).first()
    if existing is not None:
        return _same_or_conflict(existing, body, request)
    delay = _sync_delay(0)
    try:
        with transaction.atomic():
            operation = AdapterOperation.objects.create(
                **same,
                request=body,
                amount_minor=request.amount.minor,
                currency=request.amount.currency,
                # Due for a sync already, in case this process dies before it records the
                # call's outcome.
                next_sync_at=timezone.now() + timedelta(seconds=delay or 0),
            )
    except IntegrityError:
        # A concurrent submit of the same reference won (it calls out; this one does not).
        return _same_or_conflict(AdapterOperation.objects.get(**same), body, request)
    return operation, True


def operation_submit(*, connection_id: str, request: OperationRequest) -> AdapterOperation:
    """Send a payin, refund or payout to the institution, once. Submitting the same request
    again returns the operation as it stands without calling out."""
    operation, created = _record(connection_id=connection_id, request=request)
    if not created:
        return operation
    adapter = build_adapter(operation.connection, operation_id=operation.pk)
    try:
        observed = _create(adapter, request)
    finally:
        adapter.client.close()
    return operation_observe(operation_id=operation.pk, observed=observed, source="submit")


def _create(adapter: object, request: OperationRequest) -> Observation:
    """The institution's create call, and what it taught us."""
    try:
        if isinstance(request, PayoutRequest):
            assert isinstance(adapter, BankAdapter)
            result: OperationResult = adapter.create_payout(request)
        elif isinstance(request, PayinRequest):
            assert isinstance(adapter, PaymentInstitutionAdapter)
            result = adapter.create_payin(request)
        else:
            assert isinstance(adapter, PaymentInstitutionAdapter)
            result = adapter.create_refund(request)
        return _observation(result)
    except AdapterError as exc:
        return _from_error(exc)


# The create of each kind the institution may take twice as once, if its manifest says so. A
# payout is never sent again: its beneficiary's account number is stored masked.
_CREATE_OPERATION = {
    AdapterOperation.Kind.PAYIN: "create_payin",
    AdapterOperation.Kind.REFUND: "create_refund",
}


def _request_again(operation: AdapterOperation, adapter: object) -> OperationRequest | None:
    """The operation's request, rebuilt from what it stored, where the institution's manifest
    says its create is idempotent (the same reference makes one operation there); else None."""
    name = _CREATE_OPERATION.get(AdapterOperation.Kind(operation.kind))
    manifest = getattr(adapter, "manifest", None)
    if name is None or manifest is None or not manifest.is_idempotent(name):
        return None
    body = operation.request
    amount = Amount(minor=int(body["amount"]["minor"]), currency=str(body["amount"]["currency"]))
    if operation.kind == AdapterOperation.Kind.PAYIN:
        return PayinRequest(
            reference=operation.reference,
            amount=amount,
            description=str(body.get("description") or ""),
            metadata={str(k): str(v) for k, v in (body.get("metadata") or {}).items()},
        )
    return RefundRequest(
        reference=operation.reference,
        payin_provider_id=str(body["payin_provider_id"]),
        amount=amount,
        reason=str(body.get("reason") or ""),
    )


def _fetch(operation: AdapterOperation) -> Observation:
    adapter = build_adapter(operation.connection, operation_id=operation.pk)
    provider_id = operation.provider_id or None
    try:
        if operation.kind == AdapterOperation.Kind.PAYOUT:
            assert isinstance(adapter, BankAdapter)
            result: OperationResult = adapter.get_payout(
                reference=operation.reference, provider_id=provider_id
            )
        elif operation.kind == AdapterOperation.Kind.PAYIN:
            assert isinstance(adapter, PaymentInstitutionAdapter)
            result = adapter.get_payin(reference=operation.reference, provider_id=provider_id)
        else:
            assert isinstance(adapter, PaymentInstitutionAdapter)
            result = adapter.get_refund(reference=operation.reference, provider_id=provider_id)
        return _observation(result)
    except OperationNotFound as exc:
        age = timezone.now() - operation.created_at
        again = (
            _request_again(operation, adapter)
            if age.total_seconds() >= hub_settings.ADAPTER_RESEND_AFTER_SECONDS
            else None
        )
        if again is not None:
            # Never received (whoever recorded it died before the call, or the call was
            # lost), long enough ago that no call of it can still be on its way, and the
            # institution makes one operation of a reference however often it is sent: send it.
            return _create(adapter, again)
        if age.total_seconds() >= hub_settings.ADAPTER_NOT_FOUND_GRACE_SECONDS:
            return Observation(
                Outcome.FAILED,
                failure_code="counterparty_never_received",
                failure_reason="the institution has no record of this operation",
            )
        # Not yet, perhaps: the request may still be on its way.
        return Observation(Outcome.UNKNOWN, failure_code=exc.code, failure_reason=exc.message[:300])
    except IntegrityMismatch as exc:
        return _mismatch(exc)
    except AdapterError as exc:
        # Whatever went wrong asking, we still do not know: try again on schedule.
        return Observation(Outcome.UNKNOWN, failure_code=exc.code, failure_reason=exc.message[:300])
    finally:
        adapter.client.close()


def operation_sync(*, operation_id: str) -> AdapterOperation:
    """Ask the institution where an operation stands and record the answer."""
    operation = AdapterOperation.objects.select_related("connection").get(pk=operation_id)
    if operation.state in AdapterOperation.TERMINAL or operation.state == State.HELD:
        return operation
    observed = _fetch(operation)
    return operation_observe(operation_id=operation_id, observed=observed, source="sync")


def _event(operation: AdapterOperation, kind: str) -> None:
    event_emit(
        type=f"adapter_operation.{kind}",
        owner=operation.connection.participant,
        livemode=operation.connection.livemode,
        data=operation_payload(operation),
    )


def _amount_differs(operation: AdapterOperation, amount: Amount | None) -> bool:
    return amount is not None and (amount.minor, amount.currency) != (
        operation.amount_minor,
        operation.currency,
    )


def _hold(operation: AdapterOperation, observed: Observation) -> None:
    amount = observed.amount
    operation.state = State.HELD
    operation.next_sync_at = None
    if amount is not None:
        operation.reported_amount_minor = amount.minor
        operation.reported_currency = amount.currency
    if observed.mismatch:
        what = observed.mismatch
    else:
        assert amount is not None
        what = (
            f"asked {operation.amount_minor} {operation.currency}, the institution reported "
            f"{amount.minor} {amount.currency}"
        )
    OperatorTask.objects.create(
        kind=OperatorTask.Kind.INTEGRITY_MISMATCH,
        participant=operation.connection.participant,
        livemode=operation.connection.livemode,
        operation=operation,
        summary=f"{operation.kind} {operation.reference}: {what}"[:300],
        details={
            "asked": {"minor": operation.amount_minor, "currency": operation.currency},
            "reported": (
                {"minor": amount.minor, "currency": amount.currency} if amount is not None else None
            ),
            "provider_id": observed.provider_id or operation.provider_id or None,
            "reason": what[:1000],
        },
    )


@transaction.atomic(durable=True)
def operation_observe(*, operation_id: str, observed: Observation, source: str) -> AdapterOperation:
    """Apply what a call or a verified notification said. Terminal and held operations never
    change again, so late, duplicated and reordered news is harmless."""
    _, operation = operation_observe_within(
        operation_id=operation_id, observed=observed, source=source
    )
    return operation


def operation_observe_within(
    *, operation_id: str, observed: Observation, source: str
) -> tuple[str, AdapterOperation]:
    """``operation_observe`` inside the caller's transaction, for callers that apply many
    observations in one (they lock operations in id order, as this locks the one it changes).
    Returns the state the operation had under the lock, and the operation."""
    assert transaction.get_connection().in_atomic_block, "needs the caller's transaction"
    operation = (
        # Only the operation's row: locking the joined connection too would make every
        # observation of a connection wait for every other one (and deadlock batches).
        AdapterOperation.objects.select_for_update(of=("self",))
        .select_related("connection__participant")
        .get(pk=operation_id)
    )
    before = operation.state
    if operation.state in AdapterOperation.TERMINAL or operation.state == State.HELD:
        return before, operation
    now = timezone.now()
    if source == "sync":
        operation.sync_count += 1
        operation.last_synced_at = now
    if observed.provider_id and not operation.provider_id:
        operation.provider_id = observed.provider_id
    if observed.mismatch or _amount_differs(operation, observed.amount):
        _hold(operation, observed)
    elif observed.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
        operation.state = State.SUCCEEDED if observed.outcome == Outcome.SUCCEEDED else State.FAILED
        operation.failure_code = observed.failure_code if operation.state == State.FAILED else ""
        operation.failure_reason = (
            observed.failure_reason if operation.state == State.FAILED else ""
        )
        operation.next_sync_at = None
    else:
        if observed.outcome == Outcome.PENDING:
            operation.state = State.PENDING  # it has landed, whatever we thought before
            operation.failure_code = operation.failure_reason = ""
        else:
            if before == State.PENDING and source == "submit":
                operation.state = State.UNKNOWN
            if observed.failure_code:
                # Why the hub does not know yet: what the operator's queue and the API show.
                operation.failure_code = observed.failure_code
                operation.failure_reason = observed.failure_reason
        if source != "webhook":
            delay = _sync_delay(operation.sync_count)
            if delay is None:
                _escalate(operation, now)
            else:
                operation.next_sync_at = now + timedelta(seconds=delay)
    operation.updated_at = now
    operation.save()
    if operation.state != before:
        _event(operation, operation.state)
    return before, operation


def _escalate(operation: AdapterOperation, now: Any) -> None:
    operation.escalated_at = now
    operation.next_sync_at = None
    OperatorTask.objects.get_or_create(
        operation=operation,
        kind=OperatorTask.Kind.OPERATION_UNRESOLVED,
        status=OperatorTask.Status.OPEN,
        defaults={
            "participant": operation.connection.participant,
            "livemode": operation.connection.livemode,
            "summary": (
                f"{operation.kind} {operation.reference} is still {operation.state} after "
                f"{operation.sync_count} status syncs"
            ),
            "details": {
                "last_failure_code": operation.failure_code,
                "last_failure_reason": operation.failure_reason,
                "provider_id": operation.provider_id,
            },
        },
    )
    _event(operation, "escalated")


def _due() -> QuerySet[AdapterOperation]:
    return AdapterOperation.objects.filter(
        state__in=[State.PENDING, State.UNKNOWN],
        escalated_at__isnull=True,
        next_sync_at__lte=timezone.now(),
    ).order_by("next_sync_at")


def operations_due(*, limit: int = 500) -> list[str]:
    """The pending or unknown operations whose next status sync is due, longest due first."""
    return list(_due().values_list("pk", flat=True)[:limit])


def _sync_lease_seconds() -> float:
    """Long enough for one sync with all its attempts and backoff to finish."""
    per_attempt = hub_settings.ADAPTER_CONNECT_TIMEOUT + hub_settings.ADAPTER_READ_TIMEOUT
    return max(60.0, 2 * hub_settings.ADAPTER_MAX_ATTEMPTS * per_attempt)


def operations_claim_due(*, limit: int = 500) -> list[str]:
    """Claim the due operations for one repair sweep: each one's next sync moves a lease ahead,
    so that later sweeps do not send it again while its sync waits in the queue or runs (the
    sync then sets the real next time; if it is lost, the lease runs out and a sweep sends it
    again). A conditional update per row: of two concurrent sweeps only one claims a row."""
    lease_until = timezone.now() + timedelta(seconds=_sync_lease_seconds())
    claimed = []
    for pk, due_at in _due().values_list("pk", "next_sync_at")[:limit]:
        if (
            AdapterOperation.objects.filter(
                pk=pk,
                next_sync_at=due_at,
                state__in=[State.PENDING, State.UNKNOWN],
                escalated_at__isnull=True,
            ).update(next_sync_at=lease_until)
            == 1
        ):
            claimed.append(pk)
    return claimed


def operation_sync_soon(*, operation_id: str) -> None:
    """Make an operation due now (an unverifiable notification named it, or an operator asked)."""
    from hub.tasks_adapters import adapter_operation_sync_task

    with transaction.atomic():
        updated = AdapterOperation.objects.filter(
            pk=operation_id, state__in=[State.PENDING, State.UNKNOWN]
        ).update(next_sync_at=timezone.now())
        if updated:
            enqueue_after_commit(adapter_operation_sync_task, operation_id=operation_id)
