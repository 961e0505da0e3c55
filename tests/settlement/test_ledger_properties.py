"""Property tests: any sequence of transfers, holds, posts, voids, expiries and batches (atomic
or item by item) keeps the ledger's invariants, and a refused step changes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import errors
from settlement.ledger import (
    TransferSpec,
    account_balances_at,
    holds_expire_due,
    transfer_create,
    transfer_post,
    transfer_void,
    transfers_create_batch,
)
from settlement.models import Account, Transfer
from tests.factories.ledger import columns, open_account, replayed

pytestmark = pytest.mark.django_db
Kind = Account.Kind

# (kind, currency, flags) of the accounts every example starts with.
SHAPES: list[tuple[str, str, dict[str, bool]]] = [
    (Kind.EQUITY, "CNY", {}),
    (Kind.MERCHANT_SETTLEMENT, "CNY", {}),  # may not be overdrawn
    (Kind.MERCHANT_SETTLEMENT, "CNY", {}),
    (Kind.FX_POSITION, "CNY", {"credits_must_not_exceed_debits": True}),
    (Kind.EQUITY, "KRW", {}),
    (Kind.MERCHANT_SETTLEMENT, "KRW", {}),
]

moves = st.tuples(
    st.just("move"),
    st.integers(0, len(SHAPES) - 1),
    st.integers(0, len(SHAPES) - 1),
    st.integers(1, 5_000),
    st.booleans(),
    st.none() | st.integers(1, 300),
)
resolutions = st.tuples(
    st.sampled_from(["post", "void"]), st.integers(0, 20), st.none() | st.integers(1, 5_000)
)
waits = st.tuples(st.just("wait"), st.integers(1, 400))
batches = st.tuples(st.just("batch"), st.booleans(), st.lists(moves, min_size=1, max_size=6))
steps = st.lists(st.one_of(moves, moves, resolutions, waits, batches), min_size=1, max_size=25)


class Clock:
    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self) -> datetime:
        return self.now


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
def test_any_sequence_keeps_the_ledgers_invariants(plan, monkeypatch):
    clock = Clock()
    monkeypatch.setattr("settlement.ledger.timezone.now", clock)
    with transaction.atomic():
        accounts = [
            open_account(kind, currency, **flags)  # type: ignore[arg-type]
            for kind, currency, flags in SHAPES
        ]
        holds: list[Transfer] = []
        history: list[tuple[datetime, list[tuple[int, int, int, int]]]] = []
        for step in plan:
            clock.now += timedelta(seconds=1)
            before = [columns(a) for a in accounts], Transfer.objects.count()
            try:
                if step[0] == "move":
                    _, d, c, amount, pending, timeout = step
                    transfer, _ = transfer_create(
                        livemode=False,
                        spec=TransferSpec(
                            debit_account_id=accounts[d].pk,
                            credit_account_id=accounts[c].pk,
                            amount=amount,
                            currency=accounts[d].currency,
                            pending=pending,
                            timeout_seconds=timeout if pending else None,
                        ),
                    )
                    if pending:
                        holds.append(transfer)
                elif step[0] in ("post", "void") and holds:
                    hold = holds[step[1] % len(holds)]
                    if step[0] == "post":
                        transfer_post(livemode=False, pending_id=hold.id, amount=step[2])
                    else:
                        transfer_void(livemode=False, pending_id=hold.id)
                elif step[0] == "wait":
                    clock.now += timedelta(seconds=step[1])
                    holds_expire_due()
                elif step[0] == "batch":
                    _, atomic, items = step
                    specs = [
                        TransferSpec(
                            debit_account_id=accounts[d].pk,
                            credit_account_id=accounts[c].pk,
                            amount=amount,
                            currency=accounts[d].currency,
                            pending=pending,
                            timeout_seconds=timeout if pending else None,
                        )
                        for _, d, c, amount, pending, timeout in items
                    ]
                    results = transfers_create_batch(livemode=False, atomic=atomic, specs=specs)
                    made = [r for r in results if r.status == "created"]
                    # Exactly the items answered "created" were made, and nothing else.
                    assert Transfer.objects.count() == before[1] + len(made)
                    for result in made:
                        made_transfer = Transfer.objects.get(id=result.id)
                        if made_transfer.type == "pending":
                            holds.append(made_transfer)
            except errors.HubError:
                # A refusal changes nothing at all.
                assert ([columns(a) for a in accounts], Transfer.objects.count()) == before
            history.append((clock.now, [columns(a) for a in accounts]))

        _check(accounts)
        for moment, snapshot in history:
            assert [_at(a, moment) for a in accounts] == snapshot
        transaction.set_rollback(True)


def _at(account: Account, moment: datetime) -> tuple[int, int, int, int]:
    b = account_balances_at(account=account, at=moment)
    return (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)


def _check(accounts: list[Account]) -> None:
    totals: dict[str, list[int]] = {}
    for account in accounts:
        dp, cp, dpe, cpe = columns(account)
        # Every balance is the sum of its transfers...
        assert (dp, cp, dpe, cpe) == replayed(account)
        assert min(dp, cp, dpe, cpe) >= 0
        # ...no flagged account is overdrawn...
        if account.debits_must_not_exceed_credits:
            assert dp + dpe <= cp
        if account.credits_must_not_exceed_debits:
            assert cp + cpe <= dp
        sums = totals.setdefault(account.currency, [0, 0, 0, 0])
        for n, value in enumerate((dp, cp, dpe, cpe)):
            sums[n] += value
    # ...and per currency, debits equal credits, posted and pending.
    for dp, cp, dpe, cpe in totals.values():
        assert (dp, dpe) == (cp, cpe)
