"""Many writers at once on PostgreSQL: the ledger's locks (taken by its trigger, in account id
order) neither lose money, nor let an account be overdrawn, nor deadlock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from hub import errors
from settlement.ledger import (
    TransferSpec,
    transfer_create,
    transfer_post,
    transfer_void,
    transfers_create_batch,
)
from settlement.models import Account, Transfer
from tests.conftest import needs_postgres
from tests.factories.ledger import columns, open_account, replayed

pytestmark = [needs_postgres, pytest.mark.django_db(transaction=True)]
Kind = Account.Kind


def run_together(count: int, work: Callable[[int], str]) -> list[str]:
    barrier = threading.Barrier(count)

    def one(index: int) -> str:
        barrier.wait()
        try:
            return work(index)
        except errors.HubError as exc:
            return exc.code
        finally:
            connection.close()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_64_withdrawals_from_an_account_funded_for_20(tenants):
    equity = open_account(Kind.EQUITY)
    merchant = open_account()
    payouts = open_account(Kind.PAYOUT_CLEARING)
    transfer_create(
        livemode=False,
        spec=TransferSpec(
            debit_account_id=equity.pk,
            credit_account_id=merchant.pk,
            amount=20 * 5_00,
            currency="CNY",
        ),
    )

    def withdraw(index: int) -> str:
        _, created = transfer_create(
            livemode=False,
            spec=TransferSpec(
                id=f"withdrawal-{index}",
                debit_account_id=merchant.pk,
                credit_account_id=payouts.pk,
                amount=5_00,
                currency="CNY",
            ),
        )
        return "ok" if created else "repeat"

    outcomes = run_together(64, withdraw)

    assert sorted(set(outcomes)) == ["insufficient_funds", "ok"]
    assert outcomes.count("ok") == 20
    assert columns(merchant) == (100_00, 100_00, 0, 0)
    assert columns(payouts) == (0, 100_00, 0, 0)
    for account in (equity, merchant, payouts):
        assert columns(account) == replayed(account)


def test_crossing_transfers_and_batches_do_not_deadlock(tenants):
    equity = open_account(Kind.EQUITY)
    accounts = [open_account() for _ in range(6)]
    transfers_create_batch(
        livemode=False,
        atomic=True,
        specs=[
            TransferSpec(
                debit_account_id=equity.pk,
                credit_account_id=a.pk,
                amount=1_000_00,
                currency="CNY",
            )
            for a in accounts
        ],
    )

    def shuffle(index: int) -> str:
        # Each worker moves money around the ring in its own direction and order.
        ring = accounts if index % 2 else list(reversed(accounts))
        specs = [
            TransferSpec(
                debit_account_id=ring[n].pk,
                credit_account_id=ring[(n + 1) % len(ring)].pk,
                amount=1_00 + index,
                currency="CNY",
            )
            for n in range(len(ring))
        ]
        if index % 3 == 0:
            transfers_create_batch(livemode=False, atomic=True, specs=specs)
        else:
            for spec in specs:
                transfer_create(livemode=False, spec=spec)
        return "ok"

    outcomes = run_together(16, shuffle)

    assert outcomes == ["ok"] * 16
    for account in accounts:
        # Every ring pass takes out what it puts in.
        assert columns(account) == replayed(account)
        account.refresh_from_db()
        assert account.posted == 1_000_00


def test_posts_and_voids_racing_for_one_hold_resolve_it_once(tenants):
    equity = open_account(Kind.EQUITY)
    merchant = open_account()
    other = open_account()
    transfer_create(
        livemode=False,
        spec=TransferSpec(
            debit_account_id=equity.pk, credit_account_id=merchant.pk, amount=50_00, currency="CNY"
        ),
    )
    hold, _ = transfer_create(
        livemode=False,
        spec=TransferSpec(
            debit_account_id=merchant.pk,
            credit_account_id=other.pk,
            amount=30_00,
            currency="CNY",
            pending=True,
        ),
    )

    def resolve(index: int) -> str:
        if index % 2:
            transfer_post(livemode=False, pending_id=hold.id, amount=20_00)
            return "posted"
        transfer_void(livemode=False, pending_id=hold.id)
        return "voided"

    outcomes = run_together(16, resolve)

    winners = [o for o in outcomes if o in ("posted", "voided")]
    assert len(winners) == 1
    losers = set(outcomes) - {winners[0]}
    assert losers <= {"pending_transfer_posted", "pending_transfer_voided"}
    assert Transfer.objects.filter(pending=hold).count() == 1
    if winners == ["posted"]:
        assert columns(merchant) == (20_00, 50_00, 0, 0)
    else:
        assert columns(merchant) == (0, 50_00, 0, 0)
    for account in (equity, merchant, other):
        assert columns(account) == replayed(account)


def test_a_batch_and_single_transfers_with_the_same_ids_make_each_once(tenants):
    equity = open_account(Kind.EQUITY)
    merchant = open_account()
    specs = [
        TransferSpec(
            id=f"same-{n}",
            debit_account_id=equity.pk,
            credit_account_id=merchant.pk,
            amount=1_00,
            currency="CNY",
        )
        for n in range(20)
    ]

    def make(index: int) -> str:
        if index % 2:
            transfers_create_batch(livemode=False, atomic=True, specs=specs)
        else:
            for spec in specs:
                transfer_create(livemode=False, spec=spec)
        return "ok"

    outcomes = run_together(8, make)

    assert set(outcomes) <= {"ok", "transfer_id_race"}
    assert Transfer.objects.filter(id__startswith="same-").count() == 20
    assert columns(merchant) == (0, 20_00, 0, 0)
