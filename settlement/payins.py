"""Payins and refunds: a buyer pays a merchant through a payment institution.

1. ``payin_create``: the payin is recorded (one per merchant reference), then sent to the
   institution as a payment intent whose reference is the payin's id (``operation_submit``
   sends a reference once however often it is called). Nothing moves in the ledger yet.
2. When the institution says the buyer paid (a verified notification or a status sync),
   ``_on_operation`` credits the merchant with a pending transfer from the institution's
   receivable account: the money is the institution's to hand over at its next settlement run
   (``settlement.runs``), which posts it.
3. ``refund_create``: before the payin settles, a refund is netted (the run posts that much
   less; nothing is held); after, the amount is held on the merchant's account until the
   institution confirms (posted) or refuses (voided). A netted refund refused after the payin
   settled gives the merchant its money back with a transfer of its own.

Transfer ids follow from the objects' ids (``pay_...-credit``, ``rf_...-hold``, ...), so that
replaying any step finds what was done instead of doing it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from adapters.interface import Amount, PayinRequest, RefundRequest
from adapters.manifest import Capability
from adapters.registry import get_adapter
from hub import errors
from hub.jobs import enqueue_after_commit
from hub.models import AdapterConnection, Event, Participant, Role
from hub.money import format_amount, money_payload
from hub.principal import Principal
from hub.services.adapters.operations import operation_submit
from hub.services.events import event_emit, register_event_handler, register_event_types
from settlement.ledger import TransferSpec, transfer_create, transfer_post, transfer_void
from settlement.models import Account
from settlement.models_payins import Payin, Refund
from settlement.payouts import hub_account, unsent

Kind = Account.Kind

register_event_types(
    "payin.created",
    "payin.succeeded",
    "payin.failed",
    "refund.created",
    "refund.succeeded",
    "refund.failed",
)


def payin_payload(payin: Payin) -> dict[str, Any]:
    return {
        "id": payin.pk,
        "status": payin.status,
        "amount": money_payload(payin.amount, payin.currency),
        "reference": payin.reference,
        "account": payin.account_id,
        "institution": payin.connection.participant_id,
        "failure_code": payin.failure_code or None,
    }


def refund_payload(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.pk,
        "payin": refund.payin_id,
        "status": refund.status,
        "amount": money_payload(refund.amount, refund.currency),
        "reference": refund.reference,
        "failure_code": refund.failure_code or None,
    }


def payin_route(*, currency: str, livemode: bool, institution_id: str | None) -> AdapterConnection:
    """The connection that collects ``currency``: the named institution's, or else the oldest
    enabled one that can."""
    connections = AdapterConnection.objects.filter(
        status=AdapterConnection.Status.ENABLED,
        livemode=livemode,
        participant__role=Role.PAYMENT_INSTITUTION,
        participant__status=Participant.Status.ACTIVE,
    ).order_by("created_at", "pk")
    if institution_id is not None:
        connections = connections.filter(participant_id=institution_id)
    for connection in connections.select_related("participant"):
        manifest = get_adapter(connection.adapter).adapter_class.manifest
        if Capability.PAYMENT_INSTITUTION in manifest.capabilities and (
            currency in manifest.currencies
        ):
            return connection
    if institution_id is not None:
        raise errors.InvalidRequest(
            f"That institution does not collect {currency} through the hub.",
            code="no_payin_route",
            param="institution",
        )
    raise errors.Conflict(
        f"No payment institution collects {currency} through the hub now.", code="no_payin_route"
    )


# --- payins --------------------------------------------------------------------------------------


def payin_create(
    *,
    actor: Principal,
    account_id: str,
    amount: int,
    currency: str,
    reference: str,
    description: str = "",
    institution_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> tuple[Payin, bool]:
    """Record the payin and send it to its institution. The same reference again returns the
    first (sent now if its first call never reached the institution); with other fields it is
    refused."""
    payin, created = _payin_record(
        actor=actor,
        account_id=account_id,
        amount=amount,
        currency=currency,
        reference=reference,
        description=description,
        institution_id=institution_id,
        metadata=metadata,
    )
    if payin.operation_id is None:
        payin_submit(payin_id=payin.pk)
        payin.refresh_from_db()
    return payin, created


@transaction.atomic(durable=True)
def _payin_record(
    *,
    actor: Principal,
    account_id: str,
    amount: int,
    currency: str,
    reference: str,
    description: str,
    institution_id: str | None,
    metadata: Mapping[str, str] | None,
) -> tuple[Payin, bool]:
    merchant = actor.participant
    existing = (
        Payin.objects.select_related("connection")
        .filter(merchant=merchant, livemode=actor.livemode, reference=reference)
        .first()
    )
    if existing is not None:
        same = (
            existing.account_id == account_id
            and existing.amount == amount
            and existing.currency == currency
            and institution_id in (None, existing.connection.participant_id)
        )
        if not same:
            raise errors.Conflict(
                f"The reference {reference!r} was used for another payin.",
                code="payin_reference_reused",
                param="reference",
            )
        return existing, False
    account = Account.objects.filter(
        pk=account_id, owner=merchant, livemode=actor.livemode, kind=Kind.MERCHANT_SETTLEMENT
    ).first()
    if account is None:
        raise errors.InvalidRequest(
            "No such settlement account.", code="account_missing", param="account"
        )
    if account.currency != currency:
        raise errors.InvalidRequest(
            f"The account is in {account.currency}, not {currency}.",
            code="currency_mismatch",
            param="account",
        )
    connection = payin_route(
        currency=currency, livemode=actor.livemode, institution_id=institution_id
    )
    try:
        with transaction.atomic():
            payin = Payin.objects.create(
                livemode=actor.livemode,
                merchant=merchant,
                account=account,
                connection=connection,
                amount=amount,
                currency=currency,
                reference=reference,
                description=description,
                metadata=dict(metadata or {}),
            )
    except IntegrityError:
        raise errors.Conflict(
            "A payin with this reference is being made.", code="payin_in_progress"
        ) from None
    event_emit(type="payin.created", owner=merchant, actor=actor, data=payin_payload(payin))
    return payin, True


def payin_submit(*, payin_id: str) -> str:
    """Send a pending payin to its institution (again: the operation is made once)."""
    payin = Payin.objects.filter(pk=payin_id).first()
    if payin is None or payin.status != Payin.Status.PENDING:
        return "skipped"
    operation = operation_submit(
        connection_id=payin.connection_id,
        request=PayinRequest(
            reference=payin.pk,
            amount=Amount(payin.amount, payin.currency),
            description=payin.description,
            metadata={"merchant": payin.merchant_id, "order": payin.reference},
        ),
    )
    Payin.objects.filter(pk=payin.pk, operation__isnull=True).update(operation=operation)
    return operation.state


def payins_unsent(*, limit: int = 500) -> list[str]:
    """Pending payins never sent (the process that made them stopped before its call)."""
    return unsent(Payin.objects.all(), limit=limit, status=Payin.Status.PENDING)


def _receivable(payin: Payin) -> Account:
    """What the institution owes the hub for the payins it collected, in their currency."""
    return hub_account(
        kind=Kind.INSTITUTION_RECEIVABLE,
        currency=payin.currency,
        livemode=payin.livemode,
        owner=payin.connection.participant,
    )


def _on_payin(event: Event, succeeded: bool) -> None:
    payin = (
        Payin.objects.select_for_update(of=("self",))
        .select_related("connection", "merchant")
        .filter(pk=event.data.get("reference"), livemode=event.livemode)
        .first()
    )
    if payin is None or payin.status != Payin.Status.PENDING:
        return
    payin.operation_id = str(event.data["id"])
    now = timezone.now()
    if succeeded:
        transfer_create(
            livemode=payin.livemode,
            spec=TransferSpec(
                id=payin.credit_id,
                debit_account_id=_receivable(payin).pk,
                credit_account_id=payin.account_id,
                amount=payin.amount,
                currency=payin.currency,
                pending=True,
                reference=payin.pk,
                code="payin",
            ),
        )
        payin.status = Payin.Status.SUCCEEDED
        payin.succeeded_at = now
    else:
        payin.status = Payin.Status.FAILED
        payin.failure_code = str(event.data.get("failure_code") or "payin_failed")
    payin.updated_at = now
    payin.save(update_fields=["status", "operation", "succeeded_at", "failure_code", "updated_at"])
    event_emit(
        type="payin.succeeded" if succeeded else "payin.failed",
        owner=payin.merchant,
        livemode=payin.livemode,
        data=payin_payload(payin),
    )


# --- refunds -------------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def refund_create(
    *,
    actor: Principal,
    payin_id: str,
    amount: int,
    currency: str,
    reference: str,
    reason: str = "",
) -> tuple[Refund, bool]:
    """Refund (part of) a paid payin. The same reference again returns the first refund; with
    other fields it is refused."""
    merchant = actor.participant
    existing = Refund.objects.filter(
        merchant=merchant, livemode=actor.livemode, reference=reference
    ).first()
    if existing is not None:
        if (existing.payin_id, existing.amount, existing.currency) != (payin_id, amount, currency):
            raise errors.Conflict(
                f"The reference {reference!r} was used for another refund.",
                code="refund_reference_reused",
                param="reference",
            )
        return existing, False
    # The payin's row is the lock every refund of it and its settlement run take first.
    payin = (
        Payin.objects.select_for_update(of=("self",))
        .select_related("connection")
        .filter(pk=payin_id, merchant=merchant, livemode=actor.livemode)
        .first()
    )
    if payin is None:
        raise errors.NotFound()
    if payin.status not in (Payin.Status.SUCCEEDED, Payin.Status.SETTLED):
        raise errors.Conflict(
            f"The payin is {payin.status}; only a paid payin is refunded.",
            code="payin_not_refundable",
        )
    if currency != payin.currency:
        raise errors.InvalidRequest(
            f"The payin is in {payin.currency}.", code="currency_mismatch", param="amount"
        )
    left = payin.amount - payin.refunded - payin.refunds_pending
    if amount > left:
        raise errors.InvalidRequest(
            f"{format_amount(left, currency)} {currency} of the payin is left to refund.",
            code="refund_exceeds_payin",
            param="amount",
        )
    netted = payin.status == Payin.Status.SUCCEEDED
    try:
        with transaction.atomic():
            refund = Refund.objects.create(
                livemode=actor.livemode,
                payin=payin,
                merchant=merchant,
                amount=amount,
                currency=currency,
                reference=reference,
                reason=reason,
                netted=netted,
            )
    except IntegrityError:
        raise errors.Conflict(
            "A refund with this reference is being made.", code="refund_in_progress"
        ) from None
    if not netted:
        # Settled: the money is the merchant's now, so it is held until the institution pays
        # the buyer back (insufficient_funds refuses the refund and keeps nothing).
        transfer_create(
            livemode=actor.livemode,
            spec=TransferSpec(
                id=refund.hold_id,
                debit_account_id=payin.account_id,
                credit_account_id=_receivable(payin).pk,
                amount=amount,
                currency=currency,
                pending=True,
                reference=refund.pk,
                code="refund",
            ),
        )
    Payin.objects.filter(pk=payin.pk).update(
        refunds_pending=F("refunds_pending") + amount, updated_at=timezone.now()
    )
    event_emit(type="refund.created", owner=merchant, actor=actor, data=refund_payload(refund))
    from settlement.tasks import refund_submit_task

    enqueue_after_commit(refund_submit_task, refund_id=refund.pk)
    return refund, True


def refund_submit(*, refund_id: str) -> str:
    """Send a processing refund to the payin's institution (again: it is made once)."""
    refund = Refund.objects.select_related("payin__operation").filter(pk=refund_id).first()
    if refund is None or refund.status != Refund.Status.PROCESSING:
        return "skipped"
    payin = refund.payin
    assert payin.operation is not None, payin.pk  # a paid payin was made at its institution
    operation = operation_submit(
        connection_id=payin.connection_id,
        request=RefundRequest(
            reference=refund.pk,
            payin_provider_id=payin.operation.provider_id,
            amount=Amount(refund.amount, refund.currency),
            reason=refund.reason,
        ),
    )
    Refund.objects.filter(pk=refund.pk, operation__isnull=True).update(operation=operation)
    return operation.state


def refunds_unsent(*, limit: int = 500) -> list[str]:
    return unsent(Refund.objects.all(), limit=limit)


def _on_refund(event: Event, succeeded: bool) -> None:
    refund = Refund.objects.filter(pk=event.data.get("reference"), livemode=event.livemode).first()
    if refund is None:
        return
    payin = (
        Payin.objects.select_for_update(of=("self",))
        .select_related("connection")
        .get(pk=refund.payin_id)
    )
    refund = Refund.objects.select_for_update().get(pk=refund.pk)
    if refund.status != Refund.Status.PROCESSING:
        return
    now = timezone.now()
    refund.operation_id = str(event.data["id"])
    refund.updated_at = now
    if succeeded:
        refund.status = Refund.Status.SUCCEEDED
        refund.succeeded_at = now
        if not refund.netted:
            transfer_post(
                livemode=refund.livemode, pending_id=refund.hold_id, id=f"{refund.pk}-post"
            )
            # The institution paid the buyer back out of what it owes the hub.
            refund.adjustment, refund.adjusted_at = -refund.amount, now
        payin.refunded += refund.amount
    else:
        refund.status = Refund.Status.FAILED
        refund.failure_code = str(event.data.get("failure_code") or "refund_failed")
        if not refund.netted:
            transfer_void(
                livemode=refund.livemode, pending_id=refund.hold_id, id=f"{refund.pk}-void"
            )
        elif payin.status == Payin.Status.SETTLED:
            # The run took this refund off the payin, but the buyer was not paid back: the
            # merchant gets it, and the institution owes it at its next run.
            transfer_create(
                livemode=refund.livemode,
                spec=TransferSpec(
                    id=f"{refund.pk}-restore",
                    debit_account_id=_receivable(payin).pk,
                    credit_account_id=payin.account_id,
                    amount=refund.amount,
                    currency=refund.currency,
                    reference=refund.pk,
                    code="refund",
                ),
            )
            refund.adjustment, refund.adjusted_at = refund.amount, now
    payin.refunds_pending -= refund.amount
    payin.updated_at = now
    payin.save(update_fields=["refunded", "refunds_pending", "updated_at"])
    refund.save(
        update_fields=[
            "status",
            "operation",
            "succeeded_at",
            "failure_code",
            "adjustment",
            "adjusted_at",
            "updated_at",
        ]
    )
    event_emit(
        type="refund.succeeded" if succeeded else "refund.failed",
        owner=refund.merchant,
        livemode=refund.livemode,
        data=refund_payload(refund),
    )


# --- the institution's answers -------------------------------------------------------------------


def _on_operation(event: Event) -> None:
    """A payin or refund operation is settled at its institution, one way or the other (inside
    the transaction that recorded it)."""
    kind = event.data.get("kind")
    succeeded = event.type == "adapter_operation.succeeded"
    if kind == "payin":
        _on_payin(event, succeeded)
    elif kind == "refund":
        _on_refund(event, succeeded)


def register_handlers() -> None:
    for kind in ("adapter_operation.succeeded", "adapter_operation.failed"):
        register_event_handler(kind, _on_operation)
