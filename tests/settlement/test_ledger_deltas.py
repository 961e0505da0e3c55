"""Moves that wait for no lock (``AccountDelta``), on PostgreSQL: a credit to a hot account
that another transaction holds is kept beside it, counts in every balance read at once, and is
folded into the columns by the next transfer that takes the account; a move that a flag could
refuse (or on an account not opened hot) still waits for the lock, and is checked against
everything the account holds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from hub import errors
from settlement.ledger import (
    transfer_void,
    transfers_create_batch,
)
from settlement.models import Account, AccountDelta, Transfer
from tests.conftest import Api, Tenant, needs_postgres
from tests.factories.ledger import columns, move, open_account, replayed, spec

pytestmark = [needs_postgres, pytest.mark.django_db(transaction=True)]
Kind = Account.Kind


@contextmanager
def held(account: Account) -> Iterator[None]:
    """``account`` locked by another connection, as a transfer in flight holds it."""
    with psycopg.connect(**connection.get_connection_params()) as other:
        other.execute(
            "SELECT 1 FROM settlement_account WHERE id = %s FOR NO KEY UPDATE", [account.pk]
        )
        yield
        other.rollback()


def stored(account: Account) -> tuple[int, int, int, int, int]:
    """The account's own columns and version, without its deltas."""
    account.refresh_from_db()
    return (
        account.debits_posted,
        account.credits_posted,
        account.debits_pending,
        account.credits_pending,
        account.version,
    )


def deltas(account: Account) -> list[tuple[int, int, int, int, int]]:
    return list(
        AccountDelta.objects.filter(account=account)
        .order_by("pk")
        .values_list(
            "debits_posted", "credits_posted", "debits_pending", "credits_pending", "transfers"
        )
    )


@pytest.fixture
def books(tenants: dict[str, Tenant]) -> dict[str, Account]:
    equity = open_account(Kind.EQUITY)
    payer = open_account()
    move(equity, payer, 100_00)
    return {"equity": equity, "payer": payer, "hot": open_account(hot=True)}


def test_a_credit_to_a_held_account_is_kept_beside_it_and_read_at_once(books, api: Api, tenants):
    payer, hot = books["payer"], books["hot"]
    with held(hot):
        with connection.cursor() as cursor:
            # Were the credit to wait for the lock, this would fail it.
            cursor.execute("SET lock_timeout = '2s'")
            try:
                move(payer, hot, 30_00)
            finally:
                cursor.execute("RESET lock_timeout")
        # The account's row is untouched; the debited account was updated in place.
        assert stored(hot) == (0, 0, 0, 0, 0)
        assert deltas(hot) == [(0, 30_00, 0, 0, 1)]
        assert stored(payer) == (30_00, 100_00, 0, 0, 2)
        # Every balance read counts it.
        assert columns(hot) == (0, 30_00, 0, 0)
        assert (hot.posted, hot.available) == (30_00, 30_00)
        response = api.get(f"/v1/accounts/{hot.pk}", key=tenants["operator"].key)
        assert response.status_code == 200
        body = response.json()
        assert (body["version"], body["balances"]["posted"]) == (1, "30.00")
        listed = api.get("/v1/accounts?limit=100", key=tenants["operator"].key).json()["data"]
        assert {a["id"]: a["balances"]["credits_posted"] for a in listed}[hot.pk] == "30.00"
    # The next transfer that takes the account folds what waited beside it.
    move(payer, hot, 5_00)
    assert deltas(hot) == []
    assert stored(hot) == (0, 35_00, 0, 0, 2)
    assert columns(hot) == replayed(hot) == (0, 35_00, 0, 0)


def test_a_debit_spends_credits_waiting_beside_the_account(books):
    payer, hot = books["payer"], books["hot"]
    with held(hot):
        move(payer, hot, 20_00)
    assert stored(hot) == (0, 0, 0, 0, 0)

    # One minor unit more than the account holds: refused, the delta still unfolded.
    with pytest.raises(errors.Conflict) as refused:
        move(hot, payer, 20_01)
    assert refused.value.code == "insufficient_funds"
    assert stored(hot) == (0, 0, 0, 0, 0)
    assert deltas(hot) == [(0, 20_00, 0, 0, 1)]
    assert Transfer.objects.filter(debit_account=hot).count() == 0

    move(hot, payer, 20_00)
    assert deltas(hot) == []
    assert stored(hot) == (20_00, 20_00, 0, 0, 2)
    assert columns(payer) == replayed(payer) == (20_00, 120_00, 0, 0)


def test_a_batch_spends_credits_waiting_beside_its_accounts(books):
    payer, hot = books["payer"], books["hot"]
    with held(hot):
        move(payer, hot, 12_00)
    results = transfers_create_batch(
        livemode=False,
        atomic=False,
        specs=[
            spec(hot, payer, 7_00),
            spec(hot, payer, 5_01),
            spec(hot, payer, 5_00),
        ],
    )
    assert [(r.status, r.error and r.error.code) for r in results] == [
        ("created", None),
        ("failed", "insufficient_funds"),
        ("created", None),
    ]
    assert deltas(hot) == []
    assert stored(hot) == (12_00, 12_00, 0, 0, 3)


@pytest.mark.parametrize("side", ["debit_guarded", "credit_guarded", "hold_released", "not_hot"])
def test_a_move_a_flag_could_refuse_waits_for_the_lock(books, side):
    payer, equity = books["payer"], books["equity"]
    work: tuple[Account, Account, int, dict[str, object]] | None
    if side == "debit_guarded":
        # A debit to an account that may not be overdrawn.
        account = open_account(hot=True)
        move(equity, account, 10_00)
        work = (account, equity, 1_00, {})
    elif side == "credit_guarded":
        # A credit to an account whose credits may not exceed its debits.
        account = open_account(Kind.SUSPENSE, credits_must_not_exceed_debits=True, hot=True)
        move(account, equity, 10_00)
        work = (equity, account, 1_00, {})
    elif side == "hold_released":
        # A release of what a pending transfer holds on an account with no flag.
        account = open_account(Kind.SUSPENSE, debits_must_not_exceed_credits=False, hot=True)
        pending = move(payer, account, 3_00, pending=True)
        work = None
    elif side == "not_hot":
        # Any move on an account not opened hot.
        account = open_account()
        work = (payer, account, 1_00, {})
    before = stored(account)
    finished = threading.Event()

    def transfer() -> None:
        try:
            if work is None:
                transfer_void(livemode=False, pending_id=pending.id)
            else:
                debit, credit, amount, extra = work
                move(debit, credit, amount, **extra)
        finally:
            connection.close()
            finished.set()

    with ThreadPoolExecutor(1) as pool:
        with held(account):
            done = pool.submit(transfer)
            assert not finished.wait(0.5)
            assert stored(account) == before
        done.result(timeout=10)
    assert deltas(account) == []
    assert stored(account)[4] == before[4] + 1
    assert columns(account) == replayed(account)


def test_one_account_credited_and_debited_from_many_threads_loses_nothing(books):
    equity, hot = books["equity"], books["hot"]
    sources = [open_account() for _ in range(8)]
    for source in sources:
        move(equity, source, 100_00)
    move(equity, hot, 50_00)

    def work(index: int) -> list[str]:
        try:
            outcomes = []
            for n in range(25):
                if index < 8:
                    move(sources[index], hot, 1_00 + n)
                else:
                    try:
                        move(hot, equity, 1_00)
                        outcomes.append("ok")
                    except errors.Conflict as exc:
                        outcomes.append(exc.code)
            return outcomes
        finally:
            connection.close()

    with ThreadPoolExecutor(12) as pool:
        debits = [o for outcomes in pool.map(work, range(12)) for o in outcomes]

    # 4 x 25 debits of 1.00 from 50.00 and 8 x (25 x 1.00 + 3.00) coming in: some may have
    # found the credits not yet made, but never more went out than was there.
    made = debits.count("ok")
    assert set(debits) <= {"ok", "insufficient_funds"}
    credited = 50_00 + 8 * sum(1_00 + n for n in range(25))
    assert columns(hot) == replayed(hot) == (made * 1_00, credited, 0, 0)
    hot.refresh_from_db()
    assert hot.current_version == 1 + 8 * 25 + made
    for account in (equity, *sources):
        assert columns(account) == replayed(account)
    # Per currency, debits equal credits with every delta counted.
    totals: dict[str, list[int]] = {}
    for account in Account.objects.with_balances():
        sums = totals.setdefault(account.currency, [0, 0, 0, 0])
        for i, value in enumerate(account.balance_columns):
            sums[i] += value
    assert {c: (t[0] - t[1], t[2] - t[3]) for c, t in totals.items()} == {"CNY": (0, 0)}


def test_an_account_is_opened_hot_over_the_api(api: Api, tenants):
    key = tenants["merchant"].key
    response = api.post(
        "/v1/accounts", {"currency": "CNY", "kind": "merchant_settlement", "hot": True}, key=key
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["hot"], body["version"], body["balances"]["posted"]) == (True, 0, "0.00")
    assert Account.objects.get(pk=body["id"]).hot is True

    before = Account.objects.count()
    refused = api.post(
        "/v1/accounts", {"currency": "CNY", "kind": "merchant_settlement", "hot": "maybe"}, key=key
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "hot"
    assert Account.objects.count() == before


def test_deltas_and_the_flags_that_decide_them_are_the_ledgers_alone(books):
    hot = books["hot"]
    with held(hot):
        move(books["payer"], hot, 4_00)
    [delta] = AccountDelta.objects.filter(account=hot)
    for write in (
        lambda: AccountDelta.objects.create(
            account=hot,
            debits_posted=0,
            credits_posted=1_00,
            debits_pending=0,
            credits_pending=0,
            transfers=1,
        ),
        lambda: AccountDelta.objects.filter(pk=delta.pk).update(credits_posted=9_00),
        lambda: AccountDelta.objects.filter(pk=delta.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="delta_written_directly"), transaction.atomic():
            write()
    for flags in ({"hot": False}, {"debits_must_not_exceed_credits": False}):
        with pytest.raises(DatabaseError, match="account_flags_immutable"), transaction.atomic():
            Account.objects.filter(pk=hot.pk).update(**flags)
    assert deltas(hot) == [(0, 4_00, 0, 0, 1)]
    assert stored(hot) == (0, 0, 0, 0, 0)
    assert Account.objects.get(pk=hot.pk).hot is True
