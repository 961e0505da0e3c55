"""Ledger fixtures: accounts opened through the service, and what the tests compare."""

from __future__ import annotations

from hub.models import Participant, Role
from hub.principal import Principal
from settlement.ledger import TransferSpec, account_create, transfer_create
from settlement.models import Account, Transfer
from tests.factories.core import make_participant, principal_for


def operator() -> Principal:
    found = Participant.objects.filter(role=Role.OPERATOR).first()
    return principal_for(found or make_participant(role=Role.OPERATOR))


def open_account(
    kind: str = Account.Kind.MERCHANT_SETTLEMENT,
    currency: str = "CNY",
    *,
    owner: Participant | None = None,
    debits_must_not_exceed_credits: bool | None = None,
    credits_must_not_exceed_debits: bool | None = None,
    hot: bool = False,
) -> Account:
    """An account opened by the operator for ``owner`` (a new participant of the right role)."""
    if owner is None:
        roles: dict[str, str] = {
            Account.Kind.MERCHANT_SETTLEMENT: Role.MERCHANT,
            Account.Kind.INSTITUTION_RECEIVABLE: Role.PAYMENT_INSTITUTION,
            Account.Kind.INSURANCE_PREMIUM: Role.INSURER,
        }
        role = roles.get(kind, Role.OPERATOR)
        owner = operator().participant if role == Role.OPERATOR else make_participant(role=role)
    return account_create(
        actor=operator(),
        owner_id=owner.pk,
        currency=currency,
        kind=kind,
        debits_must_not_exceed_credits=debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=credits_must_not_exceed_debits,
        hot=hot,
    )


def columns(account: Account) -> tuple[int, int, int, int]:
    """(debits_posted, credits_posted, debits_pending, credits_pending) now: the account's
    columns with its deltas not yet folded, read by one statement. ``account`` is refreshed as
    well."""
    account.refresh_from_db()
    return Account.objects.with_balances().get(pk=account.pk).balance_columns


def replayed(account: Account) -> tuple[int, int, int, int]:
    """The same four columns summed from the account's transfers, independently of the
    database's trigger."""
    dp = cp = dpe = cpe = 0
    for t in Transfer.objects.filter(debit_account=account) | Transfer.objects.filter(
        credit_account=account
    ):
        posted = t.amount if t.type in ("single", "post") else 0
        pending = t.amount if t.type == "pending" else -(t.pending_amount or 0)
        if t.debit_account_id == account.pk:
            dp, dpe = dp + posted, dpe + pending
        else:
            cp, cpe = cp + posted, cpe + pending
    return dp, cp, dpe, cpe


def spec(debit: Account, credit: Account, amount: int, **fields: object) -> TransferSpec:
    """A transfer of ``amount`` in the debit account's currency."""
    return TransferSpec(
        debit_account_id=debit.pk,
        credit_account_id=credit.pk,
        amount=amount,
        currency=debit.currency,
        **fields,  # type: ignore[arg-type]
    )


def move(debit: Account, credit: Account, amount: int, **fields: object) -> Transfer:
    """A new transfer (``transfer_create``) of ``spec``."""
    transfer, created = transfer_create(livemode=False, spec=spec(debit, credit, amount, **fields))
    assert created
    return transfer
