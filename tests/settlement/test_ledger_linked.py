"""Linked transfers as one INSERT: all made or none, each refusal with its own code."""

from __future__ import annotations

import pytest
from django.db import transaction

from hub import errors
from settlement.ledger import TransferSpec, transfer_create, transfers_create_linked
from settlement.models import Account, Transfer
from tests.factories.ledger import columns, open_account, replayed

Kind = Account.Kind


@pytest.fixture
def books(db: None) -> dict[str, Account]:
    equity = open_account(Kind.EQUITY)
    merchant = open_account()
    transfer_create(
        livemode=False,
        spec=TransferSpec(
            debit_account_id=equity.pk,
            credit_account_id=merchant.pk,
            amount=100_00,
            currency="CNY",
        ),
    )
    return {
        "equity": equity,
        "merchant": merchant,
        "position": open_account(Kind.FX_POSITION),
        "fees": open_account(Kind.FEES),
        "krw": open_account(Kind.FX_POSITION, "KRW"),
    }


def linked(
    books: dict[str, Account], *, amount: int = 60_00, fee: int = 1_00
) -> list[TransferSpec]:
    return [
        TransferSpec(
            id="l-1",
            debit_account_id=books["merchant"].pk,
            credit_account_id=books["position"].pk,
            amount=amount,
            currency="CNY",
        ),
        TransferSpec(
            id="l-2",
            debit_account_id=books["merchant"].pk,
            credit_account_id=books["fees"].pk,
            amount=fee,
            currency="CNY",
        ),
    ]


def test_linked_transfers_are_made_together(books):
    with transaction.atomic():
        made = transfers_create_linked(livemode=False, specs=linked(books))

    assert [t.id for t in made] == ["l-1", "l-2"]
    assert all(t.seq for t in made)
    assert columns(books["merchant"]) == (61_00, 100_00, 0, 0)
    assert columns(books["merchant"]) == replayed(books["merchant"])
    assert columns(books["fees"]) == (0, 1_00, 0, 0)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount": 99_50, "fee": 1_00}, "insufficient_funds"),
    ],
)
def test_one_refused_makes_none(books, change, code):
    before = Transfer.objects.count()
    with pytest.raises(errors.HubError) as refused, transaction.atomic():
        transfers_create_linked(livemode=False, specs=linked(books, **change))
    assert refused.value.code == code
    assert Transfer.objects.count() == before
    assert columns(books["merchant"]) == (0, 100_00, 0, 0)


def test_a_wrong_currency_or_a_used_id_is_refused(books):
    specs = linked(books)
    wrong = [specs[0], TransferSpec(**{**specs[1].__dict__, "credit_account_id": books["krw"].pk})]
    with pytest.raises(errors.HubError) as refused, transaction.atomic():
        transfers_create_linked(livemode=False, specs=wrong)
    assert (refused.value.code, refused.value.param) == ("currency_mismatch", "credit_account")
    with transaction.atomic():
        transfers_create_linked(livemode=False, specs=specs)
    with pytest.raises(errors.HubError) as again, transaction.atomic():
        transfers_create_linked(livemode=False, specs=specs)
    assert again.value.code == "transfer_exists"
    assert Transfer.objects.filter(id__in=["l-1", "l-2"]).count() == 2


def test_without_savepoints_a_refusal_spoils_the_callers_transaction(books):
    from django.db import connection
    from django.db.transaction import TransactionManagementError

    from settlement.ledger import savepoints_off

    too_much = TransferSpec(
        debit_account_id=books["merchant"].pk,
        credit_account_id=books["position"].pk,
        amount=500_00,
        currency="CNY",
    )
    # With its savepoint (the default) the caller's transaction goes on after a refusal.
    with transaction.atomic():
        with pytest.raises(errors.HubError):
            transfer_create(livemode=False, spec=too_much)
        assert Transfer.objects.count() == 1

    # Without, it must be rolled back whole, as a settlement run's chunk is.
    def spoiled() -> None:
        with transaction.atomic(), savepoints_off():
            with pytest.raises(errors.HubError):
                transfer_create(livemode=False, spec=too_much)
            Transfer.objects.count()

    with pytest.raises(TransactionManagementError):
        spoiled()
    assert not connection.needs_rollback
    assert columns(books["merchant"]) == (0, 100_00, 0, 0)
