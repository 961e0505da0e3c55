"""The ledger's services on the real database: every transfer kind, every refusal with balances
and rows unchanged, idempotent ids, batches, expiry, balances at a past time, and the rules the
database keeps by itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from hub import errors
from settlement.ledger import (
    MAX_BATCH,
    BatchRefused,
    TransferSpec,
    account_balances_at,
    holds_expire_due,
    transfer_create,
    transfer_post,
    transfer_void,
    transfers_create_batch,
)
from settlement.models import Account, Transfer
from tests.factories.ledger import columns, move, open_account, replayed, spec

pytestmark = pytest.mark.django_db
Kind = Account.Kind


@pytest.fixture
def books() -> dict[str, Account]:
    """The hub's equity (free to go negative), two merchants, all in CNY, and a KRW merchant."""
    return {
        "equity": open_account(Kind.EQUITY),
        "alice": open_account(),
        "bob": open_account(),
        "won": open_account(currency="KRW"),
    }


def refused(debit: Account, credit: Account, amount: int, **fields: object) -> errors.HubError:
    before = (columns(debit), columns(credit), Transfer.objects.count())
    currency = fields.pop("currency", debit.currency)
    with pytest.raises(errors.HubError) as caught:
        transfer_create(
            livemode=False,
            spec=TransferSpec(
                debit_account_id=debit.pk,
                credit_account_id=credit.pk,
                amount=amount,
                currency=str(currency),
                **fields,  # type: ignore[arg-type]
            ),
        )
    assert (columns(debit), columns(credit), Transfer.objects.count()) == before
    return caught.value


# --- single transfers ---------------------------------------------------------------------------


def test_a_transfer_moves_money_between_two_accounts(books):
    equity, alice, bob = books["equity"], books["alice"], books["bob"]
    move(equity, alice, 100_00)
    transfer = move(alice, bob, 30_00, reference="order-1", metadata={"order": "1"})

    assert (transfer.type, transfer.id[:3], transfer.reference) == ("single", "tr_", "order-1")
    assert columns(equity) == (100_00, 0, 0, 0)
    assert columns(alice) == (30_00, 100_00, 0, 0)
    assert columns(bob) == (0, 30_00, 0, 0)
    alice.refresh_from_db()
    assert (alice.posted, alice.pending, alice.available, alice.version) == (70_00, 0, 70_00, 2)
    for account in books.values():
        assert columns(account) == replayed(account)


def test_an_overdraft_is_refused_and_changes_nothing(books):
    move(books["equity"], books["alice"], 10_00)
    error = refused(books["alice"], books["bob"], 10_01)
    assert (error.status, error.code, error.param) == (409, "insufficient_funds", "amount")
    # Exactly what is there may go.
    move(books["alice"], books["bob"], 10_00)
    assert columns(books["alice"]) == (10_00, 10_00, 0, 0)


def test_credits_must_not_exceed_debits(books):
    receivable = open_account(Kind.FX_POSITION, credits_must_not_exceed_debits=True)
    error = refused(books["equity"], receivable, 1)
    assert (error.code, error.param) == ("exceeds_debits", "amount")


@pytest.mark.parametrize(
    ("case", "code", "param"),
    [
        ("another currency", "currency_mismatch", "credit_account"),
        ("no such account", "account_missing", "credit_account"),
        ("the same account", "same_account", "credit_account"),
    ],
)
def test_accounts_that_cannot_take_the_transfer(books, case, code, param):
    equity = books["equity"]
    if case == "another currency":
        credit = books["won"]
    elif case == "no such account":
        credit = Account(pk="acct_00000000000000000000000000", currency="CNY")
    else:
        credit = equity
    before = columns(equity), Transfer.objects.count()
    with pytest.raises(errors.HubError) as caught:
        transfer_create(
            livemode=False,
            spec=TransferSpec(
                debit_account_id=equity.pk, credit_account_id=credit.pk, amount=1, currency="CNY"
            ),
        )
    assert (caught.value.status, caught.value.code, caught.value.param) == (400, code, param)
    assert (columns(equity), Transfer.objects.count()) == before


def test_a_live_transfer_cannot_touch_test_accounts(books):
    with pytest.raises(errors.HubError) as caught:
        transfer_create(
            livemode=True,
            spec=TransferSpec(
                debit_account_id=books["equity"].pk,
                credit_account_id=books["alice"].pk,
                amount=1,
                currency="CNY",
            ),
        )
    assert (caught.value.code, caught.value.param) == ("account_missing", "debit_account")
    assert Transfer.objects.count() == 0


def test_the_callers_id_makes_a_retry_safe(books):
    spec = TransferSpec(
        id="order-42-funding",
        debit_account_id=books["equity"].pk,
        credit_account_id=books["alice"].pk,
        amount=5_00,
        currency="CNY",
        metadata={"order": "42"},
    )
    first, created = transfer_create(livemode=False, spec=spec)
    again, created_again = transfer_create(livemode=False, spec=spec)

    assert (created, created_again) == (True, False)
    assert again.seq == first.seq
    assert columns(books["alice"]) == (0, 5_00, 0, 0)
    # The same id asking for something else is refused.
    for changed, param in (({"amount": 6_00}, "amount"), ({"reference": "x"}, "reference")):
        with pytest.raises(errors.Conflict) as caught:
            transfer_create(livemode=False, spec=TransferSpec(**{**spec.__dict__, **changed}))
        assert (caught.value.code, caught.value.param) == ("transfer_exists", param)
    assert columns(books["alice"]) == (0, 5_00, 0, 0)
    assert Transfer.objects.count() == 1


def test_a_correction_names_what_it_corrects(books):
    wrong = move(books["equity"], books["alice"], 7_00)
    fix = move(books["alice"], books["equity"], 7_00, corrects=wrong.id)
    assert fix.corrects_id == wrong.seq
    assert columns(books["alice"]) == (7_00, 7_00, 0, 0)
    error = refused(books["alice"], books["equity"], 1, corrects="tr_nothing")
    assert (error.code, error.param) == ("transfer_missing", "corrects")


# --- two-phase ----------------------------------------------------------------------------------


def test_a_pending_transfer_holds_then_posts_in_part(books):
    alice, bob = books["alice"], books["bob"]
    move(books["equity"], alice, 100_00)
    hold = move(alice, bob, 60_00, pending=True)

    alice.refresh_from_db()
    assert (alice.posted, alice.available, alice.pending) == (100_00, 40_00, -60_00)
    assert columns(bob) == (0, 0, 0, 60_00)
    # The hold counts against what else may go.
    assert refused(alice, bob, 40_01).code == "insufficient_funds"

    posted, created = transfer_post(livemode=False, pending_id=hold.id, amount=45_00)

    assert (created, posted.type, posted.amount, posted.pending_amount) == (
        True,
        "post",
        45_00,
        60_00,
    )
    assert columns(alice) == (45_00, 100_00, 0, 0)
    assert columns(bob) == (0, 45_00, 0, 0)
    for account in books.values():
        assert columns(account) == replayed(account)


def test_a_hold_is_resolved_once(books):
    alice, bob = books["alice"], books["bob"]
    move(books["equity"], alice, 10_00)
    hold = move(alice, bob, 10_00, pending=True)
    transfer_post(livemode=False, pending_id=hold.id)
    after = columns(alice), columns(bob), Transfer.objects.count()

    for attempt, code in (
        (lambda: transfer_post(livemode=False, pending_id=hold.id), "pending_transfer_posted"),
        (lambda: transfer_void(livemode=False, pending_id=hold.id), "pending_transfer_posted"),
    ):
        with pytest.raises(errors.Conflict) as caught:
            attempt()
        assert caught.value.code == code
    assert (columns(alice), columns(bob), Transfer.objects.count()) == after


def test_posting_more_than_held_is_refused(books):
    move(books["equity"], books["alice"], 10_00)
    hold = move(books["alice"], books["bob"], 5_00, pending=True)
    before = columns(books["alice"]), Transfer.objects.count()
    with pytest.raises(errors.InvalidRequest) as caught:
        transfer_post(livemode=False, pending_id=hold.id, amount=5_01)
    assert (caught.value.code, caught.value.param) == ("exceeds_pending_amount", "amount")
    assert (columns(books["alice"]), Transfer.objects.count()) == before


def test_a_void_releases_the_hold(books):
    move(books["equity"], books["alice"], 10_00)
    hold = move(books["alice"], books["bob"], 8_00, pending=True)
    voided, _ = transfer_void(livemode=False, pending_id=hold.id, id="void-1")
    assert (voided.type, voided.amount, voided.id) == ("void", 8_00, "void-1")
    assert columns(books["alice"]) == (0, 10_00, 0, 0)
    assert columns(books["bob"]) == (0, 0, 0, 0)
    # A retry of the same void returns it; posting now is refused.
    again, created = transfer_void(livemode=False, pending_id=hold.id, id="void-1")
    assert (again.seq, created) == (voided.seq, False)
    with pytest.raises(errors.Conflict) as caught:
        transfer_post(livemode=False, pending_id=hold.id)
    assert caught.value.code == "pending_transfer_voided"


def test_only_a_pending_transfer_is_posted(books):
    plain = move(books["equity"], books["alice"], 1_00)
    with pytest.raises(errors.Conflict) as caught:
        transfer_post(livemode=False, pending_id=plain.id)
    assert caught.value.code == "transfer_not_pending"
    with pytest.raises(errors.NotFound):
        transfer_void(livemode=False, pending_id="tr_missing")


def test_a_hold_expires_at_its_timeout(books, monkeypatch):
    alice, bob = books["alice"], books["bob"]
    move(books["equity"], alice, 10_00)
    hold = move(alice, bob, 4_00, pending=True, timeout_seconds=60)
    assert hold.expires_at == hold.created_at + timedelta(seconds=60)

    assert holds_expire_due(now=hold.created_at + timedelta(seconds=59)) == 0
    assert columns(alice) == (0, 10_00, 4_00, 0)
    # A minute later, before the sweep: posting is refused all the same.
    later = hold.created_at + timedelta(seconds=61)
    monkeypatch.setattr("settlement.ledger.timezone.now", lambda: later)
    with pytest.raises(errors.Conflict) as caught:
        transfer_post(livemode=False, pending_id=hold.id)
    assert caught.value.code == "pending_transfer_expired"
    assert columns(alice) == (0, 10_00, 4_00, 0)

    assert holds_expire_due() == 1

    expiry = Transfer.objects.get(type="expire")
    assert (expiry.pending_id, expiry.amount, expiry.pending_amount) == (hold.seq, 4_00, 4_00)
    assert expiry.created_at == later
    assert columns(alice) == (0, 10_00, 0, 0)
    assert columns(bob) == (0, 0, 0, 0)
    assert holds_expire_due() == 0
    with pytest.raises(errors.Conflict) as caught:
        transfer_void(livemode=False, pending_id=hold.id)
    assert caught.value.code == "pending_transfer_expired"


def test_the_database_refuses_to_post_an_expired_hold(books):
    move(books["equity"], books["alice"], 10_00)
    hold = move(books["alice"], books["bob"], 4_00, pending=True, timeout_seconds=60)
    late = Transfer(
        id="late-post",
        livemode=False,
        type="post",
        debit_account_id=hold.debit_account_id,
        credit_account_id=hold.credit_account_id,
        amount=4_00,
        currency="CNY",
        pending=hold,
        pending_amount=4_00,
        created_at=hold.created_at + timedelta(seconds=60),
    )
    with pytest.raises(DatabaseError, match="resolution_mismatch"), transaction.atomic():
        late.save(force_insert=True)
    assert columns(books["alice"]) == (0, 10_00, 4_00, 0)


def test_a_timeout_belongs_to_a_pending_transfer(books):
    error = refused(books["equity"], books["alice"], 1, timeout_seconds=60)
    assert (error.code, error.param) == ("parameter_invalid", "timeout")
    error = refused(books["equity"], books["alice"], 1, pending=True, timeout_seconds=0)
    assert (error.code, error.param) == ("parameter_invalid", "timeout")


# --- batches ------------------------------------------------------------------------------------


def test_a_batch_applies_in_order_with_one_answer_per_item(books):
    equity, alice, bob, won = books["equity"], books["alice"], books["bob"], books["won"]
    results = transfers_create_batch(
        livemode=False,
        atomic=False,
        specs=[
            spec(equity, alice, 10_00, id="b-1"),
            spec(alice, bob, 6_00, id="b-2", metadata={"order": "B-2"}),
            spec(alice, bob, 6_00, id="b-3"),  # only 4.00 left
            spec(alice, won, 1_00, id="b-4"),
            spec(alice, bob, 4_00, id="b-5", pending=True),
            spec(equity, bob, 1_00, id="b-1"),
        ],
    )

    assert [(r.index, r.id, r.status, r.error and r.error.code) for r in results] == [
        (0, "b-1", "created", None),
        (1, "b-2", "created", None),
        (2, "b-3", "failed", "insufficient_funds"),
        (3, "b-4", "failed", "currency_mismatch"),
        (4, "b-5", "created", None),
        (5, "b-1", "failed", "id_repeated"),
    ]
    assert columns(alice) == (6_00, 10_00, 4_00, 0)
    assert columns(bob) == (0, 6_00, 0, 4_00)
    assert sorted(Transfer.objects.values_list("id", flat=True)) == ["b-1", "b-2", "b-5"]
    assert Transfer.objects.get(id="b-2").metadata == {"order": "B-2"}
    assert Transfer.objects.get(id="b-5").metadata == {}
    for account in books.values():
        assert columns(account) == replayed(account)

    # The same batch again: what was made exists, nothing moves twice.
    again = transfers_create_batch(
        livemode=False, atomic=False, specs=[spec(equity, alice, 10_00, id="b-1")]
    )
    assert [(r.status, r.error) for r in again] == [("exists", None)]
    assert columns(alice) == (6_00, 10_00, 4_00, 0)


def test_an_atomic_batch_with_one_bad_item_makes_nothing(books):
    equity, alice, bob = books["equity"], books["alice"], books["bob"]
    before = [columns(a) for a in books.values()], Transfer.objects.count()
    with pytest.raises(BatchRefused) as caught:
        transfers_create_batch(
            livemode=False,
            atomic=True,
            specs=[
                spec(equity, alice, 10_00),
                spec(alice, bob, 10_00),
                spec(alice, bob, 1),
            ],
        )
    refusal = caught.value
    assert (refusal.status, refusal.code, refusal.param) == (
        409,
        "batch_refused",
        "transfers[2].amount",
    )
    assert [r.status for r in refusal.results] == ["skipped", "skipped", "failed"]
    assert ([columns(a) for a in books.values()], Transfer.objects.count()) == before


def test_a_batch_is_bounded(books):
    with pytest.raises(errors.InvalidRequest):
        transfers_create_batch(livemode=False, atomic=True, specs=[])
    too_many = [spec(books["equity"], books["alice"], 1)] * (MAX_BATCH + 1)
    with pytest.raises(errors.InvalidRequest):
        transfers_create_batch(livemode=False, atomic=True, specs=too_many)
    assert Transfer.objects.count() == 0


def test_a_full_batch_of_8000_over_many_accounts(books):
    merchants = [open_account() for _ in range(50)]
    results = transfers_create_batch(
        livemode=False,
        atomic=True,
        specs=[spec(books["equity"], merchants[n % 50], 1 + n % 7) for n in range(MAX_BATCH)],
    )
    assert {r.status for r in results} == {"created"}
    assert Transfer.objects.count() == MAX_BATCH
    total = sum(1 + n % 7 for n in range(MAX_BATCH))
    assert columns(books["equity"]) == (total, 0, 0, 0)
    for n, merchant in enumerate(merchants[:3]):
        assert columns(merchant) == replayed(merchant)
        assert merchant.version == MAX_BATCH // 50, n


# --- reads --------------------------------------------------------------------------------------


def test_balances_at_a_past_time(books):
    alice, bob = books["alice"], books["bob"]
    start = timezone.now()
    move(books["equity"], alice, 50_00)
    after_funding = timezone.now()
    hold = move(alice, bob, 20_00, pending=True)
    after_hold = timezone.now()
    transfer_post(livemode=False, pending_id=hold.id, amount=15_00)

    def at(moment):
        b = account_balances_at(account=alice, at=moment)
        return (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)

    assert at(start) == (0, 0, 0, 0)
    assert at(after_funding) == (0, 50_00, 0, 0)
    assert at(after_hold) == (0, 50_00, 20_00, 0)
    assert at(timezone.now()) == columns(alice) == (15_00, 50_00, 0, 0)


# --- what the database refuses by itself ---------------------------------------------------


def test_a_transfer_is_never_updated(books):
    transfer = move(books["equity"], books["alice"], 1_00)
    with pytest.raises(DatabaseError, match="transfer_immutable"), transaction.atomic():
        Transfer.objects.filter(pk=transfer.pk).update(amount=2_00)
    assert Transfer.objects.get(pk=transfer.pk).amount == 1_00


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_transfer_is_never_deleted_and_balances_are_never_written(books):
    transfer = move(books["equity"], books["alice"], 1_00)
    with pytest.raises(DatabaseError, match="transfer_immutable"), transaction.atomic():
        Transfer.objects.filter(pk=transfer.pk).delete()
    with pytest.raises(DatabaseError, match="balance_written_directly"), transaction.atomic():
        Account.objects.filter(pk=books["alice"].pk).update(credits_posted=1_000_00)
    assert columns(books["alice"]) == (0, 1_00, 0, 0)


def test_an_accounts_currency_never_changes(books):
    with pytest.raises(DatabaseError, match="account_identity_immutable"), transaction.atomic():
        Account.objects.filter(pk=books["alice"].pk).update(currency="KRW")


def test_the_database_refuses_a_resolution_that_does_not_match_its_hold(books):
    move(books["equity"], books["alice"], 10_00)
    hold = move(books["alice"], books["bob"], 5_00, pending=True)
    forged = Transfer(
        id="forged",
        livemode=False,
        type="post",
        debit_account_id=books["alice"].pk,
        credit_account_id=books["equity"].pk,  # not the hold's credit account
        amount=5_00,
        currency="CNY",
        pending=hold,
        pending_amount=5_00,
    )
    with pytest.raises(DatabaseError, match="resolution_mismatch"), transaction.atomic():
        forged.save(force_insert=True)
    assert columns(books["alice"]) == (0, 10_00, 5_00, 0)


def test_per_currency_debits_equal_credits(books):
    move(books["equity"], books["alice"], 10_00)
    move(books["alice"], books["bob"], 3_00, pending=True)
    move(open_account(Kind.EQUITY, "KRW"), books["won"], 5_000)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT currency, sum(debits_posted) - sum(credits_posted),"
            " sum(debits_pending) - sum(credits_pending) FROM settlement_account GROUP BY currency"
        )
        assert sorted(cursor.fetchall()) == [("CNY", 0, 0), ("KRW", 0, 0)]


def test_a_batch_item_with_an_id_that_cannot_be_one_fails_alone(books):
    results = transfers_create_batch(
        livemode=False,
        atomic=False,
        specs=[
            spec(books["equity"], books["alice"], 1_00, id="has space"),
            spec(books["equity"], books["alice"], 2_00, id="fine-1"),
        ],
    )
    assert [(r.status, r.error and (r.error.code, r.error.param)) for r in results] == [
        ("failed", ("parameter_invalid", "id")),
        ("created", None),
    ]
    assert columns(books["alice"]) == (0, 2_00, 0, 0)
