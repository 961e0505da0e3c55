"""Payouts: hold, then the bank adapter, then post on success or void on refusal.

1. ``payout_create`` (one transaction): the payout, and a pending transfer from the merchant's
   settlement account to the hub's payout clearing account; the task that sends it is queued
   after commit.
2. ``payout_submit`` (a worker, no transaction open): the bank operation, whose reference is the
   payout's id (``operation_submit`` sends a reference once, however often it is called).
3. ``_on_operation`` (inside the transaction that records the bank's answer, whether it came
   with the call, from a notification or from a status sync): the hold is posted and the money
   leaves the hub's cash at that bank, or the hold is voided. An ``unknown`` answer changes
   nothing here: the adapter's repair sync keeps asking until the bank says.

The ledger transfers' ids follow from the payout's (``po_...-hold``, ``-post``, ``-paid``,
``-void``), so that replaying any step finds what was done instead of doing it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from adapters.interface import Amount, BankAccount, PayoutRequest
from adapters.manifest import Capability
from adapters.registry import get_adapter
from hub import errors
from hub.crypto import decrypt, encrypt, keyed_hash
from hub.jobs import enqueue_after_commit
from hub.models import AdapterConnection, AdapterOperation, Event, OperatorTask, Participant, Role
from hub.money import check_currency
from hub.principal import Principal
from hub.services.adapters.operations import operation_submit
from hub.services.events import event_emit, register_event_handler, register_event_types
from settlement.ledger import TransferSpec, transfer_create, transfer_post, transfer_void
from settlement.models import Account
from settlement.models_payouts import Payout, PayoutBankAccount

logger = logging.getLogger(__name__)
Kind = Account.Kind

register_event_types(
    "payout_bank_account.created", "payout.created", "payout.paid", "payout.failed"
)

# How long a payout may wait for its task before the sweep sends it (a lost task).
UNSENT_GRACE_SECONDS = 30


# --- bank accounts -------------------------------------------------------------------------------


def bank_account_payload(account: PayoutBankAccount) -> dict[str, object]:
    return {
        "id": account.pk,
        "object": "payout_bank_account",
        "livemode": account.livemode,
        "owner": account.owner_id,
        "account_number": "****" + account.account_number_last4,
        "account_name": account.account_name,
        "bank_code": account.bank_code,
        "country": account.country,
        "currency": account.currency,
        "metadata": account.metadata,
        "created_at": account.created_at.isoformat().replace("+00:00", "Z"),
    }


@transaction.atomic(durable=True)
def payout_bank_account_create(
    *,
    actor: Principal,
    account_number: str,
    account_name: str,
    bank_code: str,
    country: str,
    currency: str,
    metadata: Mapping[str, str] | None = None,
) -> tuple[PayoutBankAccount, bool]:
    """Register the caller's own bank account; the same account again returns the first."""
    number = account_number.replace(" ", "")
    if not (6 <= len(number) <= 34 and number.isascii() and number.isalnum()):
        raise errors.InvalidRequest(
            "An account number has 6 to 34 letters and digits.",
            code="parameter_invalid",
            param="account_number",
        )
    if country not in ("CN", "KR"):
        raise errors.InvalidRequest(
            "Payouts go to banks in CN or KR.", code="parameter_invalid", param="country"
        )
    currency = check_currency(currency)
    digest = keyed_hash(number.upper())
    found = PayoutBankAccount.objects.filter(
        owner=actor.participant,
        livemode=actor.livemode,
        account_number_hash=digest,
        bank_code=bank_code,
        currency=currency,
    ).first()
    if found is not None:
        return found, False
    try:
        with transaction.atomic():
            account = _new_bank_account(
                actor, number, digest, account_name, bank_code, country, currency, metadata
            )
    except IntegrityError:
        # The same account, registered by a concurrent request that committed first.
        return PayoutBankAccount.objects.get(
            owner=actor.participant,
            livemode=actor.livemode,
            account_number_hash=digest,
            bank_code=bank_code,
            currency=currency,
        ), False
    event_emit(
        type="payout_bank_account.created",
        owner=actor.participant,
        actor=actor,
        data=bank_account_payload(account),
    )
    return account, True


def _new_bank_account(
    actor: Principal,
    number: str,
    digest: str,
    account_name: str,
    bank_code: str,
    country: str,
    currency: str,
    metadata: Mapping[str, str] | None,
) -> PayoutBankAccount:
    return PayoutBankAccount.objects.create(
        livemode=actor.livemode,
        owner=actor.participant,
        account_number_encrypted=encrypt(number.upper()),
        account_number_last4=number[-4:],
        account_number_hash=digest,
        account_name=account_name,
        bank_code=bank_code,
        country=country,
        currency=currency,
        metadata=dict(metadata or {}),
    )


# --- the hub's own accounts ----------------------------------------------------------------------


def hub_account(
    *, kind: str, currency: str, livemode: bool, owner: Participant, shard: int = 0
) -> Account:
    """The hub's one account of ``kind`` in ``currency`` held for ``owner`` (or one of its
    ``shard``s: sub-accounts that share the writes of a busy account), opened on first use.
    Found without a lock; only opening one takes the owner's row (NO KEY UPDATE, which events
    naming the owner do not wait for) as the mutex, so that two first uses open one."""
    reference = _hub_reference(kind, shard)
    same = {
        "kind": kind,
        "currency": currency,
        "livemode": livemode,
        "owner": owner,
        "reference": reference,
    }
    account = Account.objects.filter(**same).first()
    if account is not None:
        return account
    with transaction.atomic():
        Participant.objects.select_for_update(no_key=True).filter(pk=owner.pk).first()
        account = Account.objects.filter(**same).first()
        if account is None:
            account = Account.objects.create(
                **same, debits_must_not_exceed_credits=kind == Kind.PAYOUT_CLEARING
            )
    return account


def _hub_reference(kind: str, shard: int) -> str:
    return f"hub:{kind}" if shard == 0 else f"hub:{kind}:{shard}"


# The hub's own account ids by (mode, shard, kind, currency), per process: an account is never
# deleted (the database refuses) and the hub's are never replaced, so an id, once committed,
# stays right. Filled after the commit that saw it (never with a row a rollback could undo);
# tests that empty the database clear it.
_HUB_ACCOUNT_IDS: dict[tuple[bool, int, str, str], str] = {}


def hub_account_ids_clear() -> None:
    _HUB_ACCOUNT_IDS.clear()


def hub_own_account_ids(
    *, wanted: Iterable[tuple[str, str]], livemode: bool, shard: int = 0
) -> dict[tuple[str, str], str]:
    """The ids of ``hub_own_accounts``, from the process's memory once known."""
    wanted = set(wanted)
    known = {
        (kind, currency): _HUB_ACCOUNT_IDS.get((livemode, shard, kind, currency))
        for kind, currency in wanted
    }
    if all(known.values()):
        return {key: value for key, value in known.items() if value is not None}
    ids = {
        key: account.pk
        for key, account in hub_own_accounts(wanted=wanted, livemode=livemode, shard=shard).items()
    }
    transaction.on_commit(
        lambda: _HUB_ACCOUNT_IDS.update(
            {(livemode, shard, kind, currency): pk for (kind, currency), pk in ids.items()}
        )
    )
    return ids


def hub_own_accounts(
    *, wanted: Iterable[tuple[str, str]], livemode: bool, shard: int = 0
) -> dict[tuple[str, str], Account]:
    """The hub's own accounts (held for its operator) of each (kind, currency) in ``wanted``,
    found with one query and opened on first use (``hub_account``)."""
    wanted = set(wanted)
    found = {
        (account.kind, account.currency): account
        for account in Account.objects.filter(
            livemode=livemode,
            kind__in={kind for kind, _ in wanted},
            currency__in={currency for _, currency in wanted},
            reference__in={_hub_reference(kind, shard) for kind, _ in wanted},
            # The hub's operator (the first one), as hub_account opens them.
            owner__in=Participant.objects.filter(role=Role.OPERATOR).order_by("created_at", "pk")[
                :1
            ],
        )
        if (account.kind, account.currency) in wanted
    }
    for kind, currency in wanted - set(found):
        found[(kind, currency)] = hub_account(
            kind=kind, currency=currency, livemode=livemode, owner=hub_operator(), shard=shard
        )
    return found


def hub_operator() -> Participant:
    operator = Participant.objects.filter(role=Role.OPERATOR).order_by("created_at", "pk").first()
    if operator is None:
        raise errors.Conflict("The hub has no operator yet.", code="no_operator")
    return operator


def payout_route(*, currency: str, livemode: bool) -> AdapterConnection:
    """The bank connection that pays out ``currency``: the oldest enabled one that can."""
    connections = AdapterConnection.objects.filter(
        status=AdapterConnection.Status.ENABLED,
        livemode=livemode,
        participant__role=Role.BANK,
    ).order_by("created_at", "pk")
    for connection in connections.select_related("participant"):
        manifest = get_adapter(connection.adapter).adapter_class.manifest
        if Capability.BANK_PAYOUTS in manifest.capabilities and currency in manifest.currencies:
            return connection
    raise errors.Conflict(
        f"No bank pays out {currency} through the hub now.", code="no_payout_route"
    )


# --- payouts -------------------------------------------------------------------------------------


def payout_payload(payout: Payout) -> dict[str, object]:
    return {
        "id": payout.pk,
        "status": payout.status,
        "amount": payout.amount,
        "currency": payout.currency,
        "reference": payout.reference,
        "failure_code": payout.failure_code or None,
    }


@transaction.atomic(durable=True)
def payout_create(
    *,
    actor: Principal,
    source_account_id: str,
    bank_account_id: str,
    amount: int,
    currency: str,
    reference: str,
    remittance_info: str = "",
    metadata: Mapping[str, str] | None = None,
) -> tuple[Payout, bool]:
    """Hold the amount and queue the payout; the same reference again returns the first."""
    merchant = actor.participant
    existing = Payout.objects.filter(
        merchant=merchant, livemode=actor.livemode, reference=reference
    ).first()
    if existing is not None:
        same = (existing.source_account_id, existing.bank_account_id, existing.amount) == (
            source_account_id,
            bank_account_id,
            amount,
        ) and existing.currency == currency
        if not same:
            raise errors.Conflict(
                f"The reference {reference!r} was used for another payout.",
                code="payout_reference_reused",
                param="reference",
            )
        return existing, False
    source = Account.objects.filter(
        pk=source_account_id,
        owner=merchant,
        livemode=actor.livemode,
        kind=Kind.MERCHANT_SETTLEMENT,
    ).first()
    if source is None:
        raise errors.InvalidRequest(
            "No such settlement account.", code="account_missing", param="source_account"
        )
    bank_account = PayoutBankAccount.objects.filter(
        pk=bank_account_id, owner=merchant, livemode=actor.livemode
    ).first()
    if bank_account is None:
        raise errors.InvalidRequest(
            "No such payout bank account.", code="bank_account_missing", param="bank_account"
        )
    for param, held in (
        ("source_account", source.currency),
        ("bank_account", bank_account.currency),
    ):
        if held != currency:
            raise errors.InvalidRequest(
                f"The {param.replace('_', ' ')} is in {held}, not {currency}.",
                code="currency_mismatch",
                param=param,
            )
    connection = payout_route(currency=currency, livemode=actor.livemode)
    clearing = hub_account(
        kind=Kind.PAYOUT_CLEARING, currency=currency, livemode=actor.livemode, owner=hub_operator()
    )
    try:
        with transaction.atomic():
            payout = Payout.objects.create(
                livemode=actor.livemode,
                merchant=merchant,
                source_account=source,
                bank_account=bank_account,
                amount=amount,
                currency=currency,
                reference=reference,
                remittance_info=remittance_info,
                connection=connection,
                metadata=dict(metadata or {}),
            )
    except IntegrityError:
        # The same reference, made by a concurrent request that committed first.
        raise errors.Conflict(
            "A payout with this reference is being made.", code="payout_in_progress"
        ) from None
    transfer_create(
        livemode=actor.livemode,
        spec=TransferSpec(
            id=payout.hold_id,
            debit_account_id=source.pk,
            credit_account_id=clearing.pk,
            amount=amount,
            currency=currency,
            pending=True,
            reference=payout.pk,
            code="payout",
        ),
    )
    event_emit(type="payout.created", owner=merchant, actor=actor, data=payout_payload(payout))
    from settlement.tasks import payout_submit_task

    enqueue_after_commit(payout_submit_task, payout_id=payout.pk)
    return payout, True


def payout_submit(*, payout_id: str) -> str:
    """Send a processing payout to its bank (again: the bank operation is made once)."""
    payout = Payout.objects.select_related("bank_account").filter(pk=payout_id).first()
    if payout is None or payout.status != Payout.Status.PROCESSING:
        return "skipped"
    account = payout.bank_account
    operation = operation_submit(
        connection_id=payout.connection_id,
        request=PayoutRequest(
            reference=payout.pk,
            amount=Amount(payout.amount, payout.currency),
            beneficiary=BankAccount(
                account_number=decrypt(account.account_number_encrypted),
                account_name=account.account_name,
                bank_code=account.bank_code,
                country=account.country,
            ),
            remittance_info=payout.remittance_info,
        ),
    )
    Payout.objects.filter(pk=payout.pk, operation__isnull=True).update(operation=operation)
    return operation.state


def unsent(queryset: QuerySet[Any], *, limit: int, status: str = "processing") -> list[str]:
    """The ids of ``queryset``'s objects (payouts, payins, refunds) still in ``status`` and never
    sent to their institution a while after they were made (their call or task was lost),
    oldest first."""
    before = timezone.now() - timedelta(seconds=UNSENT_GRACE_SECONDS)
    return list(
        queryset.filter(status=status, operation__isnull=True, created_at__lte=before)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def payouts_unsent(*, limit: int = 500) -> list[str]:
    return unsent(Payout.objects.all(), limit=limit)


def _on_operation(event: Event) -> None:
    """The bank has settled a payout's operation one way or the other. If the ledger refuses
    (someone resolved the hold by hand), the bank's answer still stands: the payout waits for
    an operator instead."""
    data = event.data
    if data.get("kind") != "payout":
        return
    payout = (
        Payout.objects.select_for_update(of=("self",))
        .select_related("connection__participant", "merchant")
        .filter(pk=data.get("reference"), livemode=event.livemode)
        .first()
    )
    if payout is None or payout.status != Payout.Status.PROCESSING:
        return
    payout.operation_id = str(data["id"])
    payout.updated_at = timezone.now()
    succeeded = event.type == "adapter_operation.succeeded"
    # The accounts first (no ledger lock yet), then all three locked at once in id order.
    clearing = hub_account(
        kind=Kind.PAYOUT_CLEARING,
        currency=payout.currency,
        livemode=payout.livemode,
        owner=hub_operator(),
    )
    cash = hub_account(
        kind=Kind.BANK_CASH,
        currency=payout.currency,
        livemode=payout.livemode,
        owner=payout.connection.participant,
    )
    try:
        with transaction.atomic():
            list(
                Account.objects.select_for_update(no_key=True)
                .filter(pk__in=[payout.source_account_id, clearing.pk, cash.pk])
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            if succeeded:
                _paid(payout, clearing, cash)
            else:
                _refused(payout)
    except errors.HubError as exc:
        logger.error("payout %s: the ledger refused the bank's answer: %s", payout.pk, exc)
        OperatorTask.objects.get_or_create(
            operation_id=payout.operation_id,
            kind=OperatorTask.Kind.INTEGRITY_MISMATCH,
            status=OperatorTask.Status.OPEN,
            defaults={
                "participant": payout.merchant,
                "livemode": payout.livemode,
                "summary": (
                    f"payout {payout.pk} was {'paid' if succeeded else 'refused'} by the bank "
                    f"but its hold could not be settled: {exc.code}"
                ),
                "details": {"payout": payout.pk, "error": exc.code, "message": exc.message},
            },
        )
        Payout.objects.filter(pk=payout.pk).update(
            operation_id=payout.operation_id, updated_at=payout.updated_at
        )
        return
    payout.save(
        update_fields=["status", "operation", "failure_code", "failure_reason", "updated_at"]
    )
    kind = "payout.paid" if succeeded else "payout.failed"
    event_emit(
        type=kind, owner=payout.merchant, livemode=payout.livemode, data=payout_payload(payout)
    )


def _paid(payout: Payout, clearing: Account, cash: Account) -> None:
    transfer_post(livemode=payout.livemode, pending_id=payout.hold_id, id=f"{payout.pk}-post")
    # The money leaves the hub's account at the bank that paid it.
    transfer_create(
        livemode=payout.livemode,
        spec=TransferSpec(
            id=f"{payout.pk}-paid",
            debit_account_id=clearing.pk,
            credit_account_id=cash.pk,
            amount=payout.amount,
            currency=payout.currency,
            reference=payout.pk,
            code="payout",
        ),
    )
    payout.status = Payout.Status.PAID


def _refused(payout: Payout) -> None:
    transfer_void(livemode=payout.livemode, pending_id=payout.hold_id, id=f"{payout.pk}-void")
    operation = AdapterOperation.objects.filter(pk=payout.operation_id).first()
    payout.status = Payout.Status.FAILED
    payout.failure_code = (operation.failure_code if operation else "") or "bank_refused"
    payout.failure_reason = operation.failure_reason if operation is not None else ""


def register_handlers() -> None:
    for kind in ("adapter_operation.succeeded", "adapter_operation.failed"):
        register_event_handler(kind, _on_operation)
