"""Payins already paid by their buyers, made straight in the database (with their pending
credits, through the ledger) for tests about what happens to them next."""

from __future__ import annotations

from datetime import datetime

from hub.models import AdapterConnection
from settlement.ledger import TransferSpec, transfers_create_batch
from settlement.models import Account
from settlement.models_payins import Payin
from settlement.payouts import hub_account


def paid_payins(
    *,
    connection: AdapterConnection,
    account: Account,
    amounts: list[int],
    succeeded_at: datetime,
    prefix: str = "order",
) -> list[Payin]:
    payins = Payin.objects.bulk_create(
        [
            Payin(
                livemode=False,
                merchant=account.owner,
                account=account,
                connection=connection,
                amount=amount,
                currency=account.currency,
                reference=f"{prefix}-{n}",
                status=Payin.Status.SUCCEEDED,
                succeeded_at=succeeded_at,
            )
            for n, amount in enumerate(amounts)
        ]
    )
    receivable = hub_account(
        kind=Account.Kind.INSTITUTION_RECEIVABLE,
        currency=account.currency,
        livemode=False,
        owner=connection.participant,
    )
    for start in range(0, len(payins), 8000):
        transfers_create_batch(
            livemode=False,
            specs=[
                TransferSpec(
                    id=payin.credit_id,
                    debit_account_id=receivable.pk,
                    credit_account_id=account.pk,
                    amount=payin.amount,
                    currency=payin.currency,
                    pending=True,
                    reference=payin.pk,
                    code="payin",
                )
                for payin in payins[start : start + 8000]
            ],
            atomic=True,
        )
    return payins
