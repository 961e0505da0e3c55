"""Ledger reads as the caller may see them: the operator sees every account and transfer of its
mode; any other participant its own accounts and the transfers that touch them."""

from __future__ import annotations

from django.db.models import OuterRef, Q, QuerySet, Subquery

from hub import errors
from hub.principal import Principal
from settlement.models import Account, AccountQuerySet, Transfer


def accounts_visible(*, actor: Principal) -> AccountQuerySet:
    queryset = Account.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.filter(owner=actor.participant)


def account_get(*, actor: Principal, account_id: str, balances: bool = False) -> Account:
    """``balances``: read with what waits beside it (``AccountQuerySet.with_balances``)."""
    queryset = accounts_visible(actor=actor)
    if balances:
        queryset = queryset.with_balances()
    account = queryset.filter(pk=account_id).first()
    if account is None:
        raise errors.NotFound()
    return account


def transfers_visible(*, actor: Principal) -> QuerySet[Transfer]:
    queryset = Transfer.objects.filter(livemode=actor.livemode)
    if not actor.is_operator:
        mine = actor.participant
        queryset = queryset.filter(Q(debit_account__owner=mine) | Q(credit_account__owner=mine))
    resolution = Transfer.objects.filter(pending=OuterRef("pk"), type__in=Transfer.RESOLUTIONS)
    return queryset.select_related("pending", "corrects").annotate(
        resolved_as=Subquery(resolution.values("type")[:1]),
        resolved_amount=Subquery(resolution.values("amount")[:1]),
    )


def transfer_get(*, actor: Principal, transfer_id: str) -> Transfer:
    transfer = transfers_visible(actor=actor).filter(id=transfer_id).first()
    if transfer is None:
        raise errors.NotFound()
    return transfer
