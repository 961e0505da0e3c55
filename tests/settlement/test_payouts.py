"""Payouts end to end against the bank sandbox over real sockets: hold, bank, post or void;
never two payouts for one request; the account number never stored or shown in clear."""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from adapters.sandbox.bank import BankSandbox
from hub.models import AdapterConnection, AdapterOperation
from hub.services.adapters.operations import operation_sync
from settlement.ledger import TransferSpec, transfer_create
from settlement.models import Account, Transfer
from settlement.models_payouts import Payout
from settlement.payouts import payout_submit
from settlement.tasks import payouts_send_unsent_task
from tests.conftest import Api, Tenant, error_of
from tests.factories.ledger import columns, open_account
from tests.support.adapters import (
    connect,
    fast_adapters,
)
from tests.support.worker import wait_until

NUMBER = "6217000010001234567"


@pytest.fixture
def desk(api: Api, tenants: dict[str, Tenant], bank: BankSandbox, settings: Any) -> dict[str, Any]:
    """A bank connection, a merchant's funded CNY account and its registered bank account."""
    fast_adapters(settings)
    conn = connect(
        operator=tenants["operator"].participant,
        participant=tenants["bank"].participant,
        adapter="bank",
        base_url=bank.base_url,
    )
    merchant = tenants["merchant"]
    account = api.post(
        "/v1/accounts", {"currency": "CNY", "kind": "merchant_settlement"}, key=merchant.key
    ).json()
    equity = open_account(Account.Kind.EQUITY)
    transfer_create(
        livemode=False,
        spec=TransferSpec(
            debit_account_id=equity.pk,
            credit_account_id=account["id"],
            amount=1_000_00,
            currency="CNY",
        ),
    )
    bank_account = api.post(
        "/v1/payout_bank_accounts",
        {
            "account_number": NUMBER,
            "account_name": "Weihai Haiyang Trading Co., Ltd.",
            "bank_code": "CCBCCNBJ",
            "country": "CN",
            "currency": "CNY",
        },
        key=merchant.key,
    )
    assert bank_account.status_code == 201, bank_account.content
    return {"conn": conn, "account": account, "bank_account": bank_account.json()}


def request_payout(api: Api, tenant: Tenant, desk: dict[str, Any], **changes: Any) -> Any:
    body = {
        "source_account": desk["account"]["id"],
        "bank_account": desk["bank_account"]["id"],
        "amount": {"amount": "300.00", "currency": "CNY"},
        "reference": "withdraw-1",
        **changes,
    }
    return api.post("/v1/payouts", body, key=tenant.key)


def merchant_account(desk: dict[str, Any]) -> Account:
    return Account.objects.get(pk=desk["account"]["id"])


def database_holds(text: str) -> list[str]:
    """The tables where ``text`` appears anywhere, as text."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (names from the schema)
            if any(text in str(value) for row in cursor.fetchall() for value in row):
                found.append(table)
    return found


def test_a_bank_account_is_kept_encrypted_and_shown_masked(api, tenants, desk):
    shown = desk["bank_account"]
    assert shown["account_number"] == "****4567"
    assert shown["id"].startswith("pba_")
    again = api.post(
        "/v1/payout_bank_accounts",
        {
            "account_number": NUMBER,
            "account_name": "Weihai Haiyang Trading Co., Ltd.",
            "bank_code": "CCBCCNBJ",
            "country": "CN",
            "currency": "CNY",
        },
        key=tenants["merchant"].key,
    )
    assert (again.status_code, again.json()["id"]) == (200, shown["id"])
    listed = api.get("/v1/payout_bank_accounts", key=tenants["operator"].key).json()
    assert [a["account_number"] for a in listed["data"]] == ["****4567"]
    assert database_holds(NUMBER) == []


def test_a_payout_is_held_sent_and_posted_when_the_bank_completes_it(api, tenants, desk, ctl):
    merchant = tenants["merchant"]
    response = request_payout(api, merchant, desk)
    assert response.status_code == 201, response.content
    payout = response.json()
    assert (payout["status"], payout["hold_transfer"]) == ("processing", f"{payout['id']}-hold")
    # Held at once: 300.00 of 1,000.00 is no longer available.
    assert columns(merchant_account(desk)) == (0, 1_000_00, 300_00, 0)

    assert payout_submit(payout_id=payout["id"]) == "pending"  # what the task does

    [at_bank] = ctl.payouts()
    assert (at_bank["end_to_end_id"], at_bank["amount"], at_bank["currency"]) == (
        payout["id"],
        "300.00",
        "CNY",
    )
    assert at_bank["status"] == "accepted"
    assert database_holds(NUMBER) == []
    ctl.post(f"/payouts/{at_bank['id']}/complete")
    operation = AdapterOperation.objects.get(reference=payout["id"])
    from hub.services.adapters.operations import operation_sync

    operation_sync(operation_id=operation.pk)

    done = api.get(f"/v1/payouts/{payout['id']}", key=merchant.key).json()
    assert (done["status"], done["bank_operation"]) == ("paid", operation.pk)
    assert columns(merchant_account(desk)) == (300_00, 1_000_00, 0, 0)
    ids = sorted(Transfer.objects.filter(reference=payout["id"]).values_list("id", "type"))
    assert ids == [
        (f"{payout['id']}-hold", "pending"),
        (f"{payout['id']}-paid", "single"),
        (f"{payout['id']}-post", "post"),
    ]
    cash = Account.objects.get(kind="bank_cash", owner=tenants["bank"].participant)
    assert columns(cash) == (0, 300_00, 0, 0)
    # Sending it again changes nothing: the payout is settled.
    assert payout_submit(payout_id=payout["id"]) == "skipped"
    assert len(ctl.payouts()) == 1


def test_a_payout_the_bank_rejects_releases_the_hold(api, tenants, desk, ctl):
    payout = request_payout(api, tenants["merchant"], desk).json()
    payout_submit(payout_id=payout["id"])
    [at_bank] = ctl.payouts()
    ctl.post(f"/payouts/{at_bank['id']}/reject", {"reason_code": "AC04"})
    from hub.services.adapters.operations import operation_sync

    operation_sync(operation_id=AdapterOperation.objects.get(reference=payout["id"]).pk)

    failed = api.get(f"/v1/payouts/{payout['id']}", key=tenants["merchant"].key).json()
    assert (failed["status"], failed["failure_code"], failed["failure_reason"]) == (
        "failed",
        "beneficiary_account_closed",
        "AC04 ClosedAccountNumber",
    )
    assert columns(merchant_account(desk)) == (0, 1_000_00, 0, 0)
    assert Transfer.objects.filter(id=f"{payout['id']}-void", type="void").exists()


def test_an_unknown_outcome_is_resolved_by_a_sync_and_paid_once(api, tenants, desk, ctl):
    payout = request_payout(api, tenants["merchant"], desk).json()
    ctl.fault("payout_create", "timeout_after")  # the bank takes it but the answer is lost
    assert payout_submit(payout_id=payout["id"]) == "unknown"
    assert Payout.objects.get(pk=payout["id"]).status == "processing"
    assert columns(merchant_account(desk)) == (0, 1_000_00, 300_00, 0)
    [at_bank] = ctl.payouts()
    ctl.post(f"/payouts/{at_bank['id']}/complete")
    from hub.services.adapters.operations import operation_sync

    operation_sync(operation_id=AdapterOperation.objects.get(reference=payout["id"]).pk)

    assert Payout.objects.get(pk=payout["id"]).status == "paid"
    assert len(ctl.payouts()) == 1
    assert columns(merchant_account(desk)) == (300_00, 1_000_00, 0, 0)


def test_one_request_makes_one_payout(api, tenants, desk, ctl):
    merchant = tenants["merchant"]
    first = request_payout(api, merchant, desk)
    again = request_payout(api, merchant, desk)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other = request_payout(api, merchant, desk, amount={"amount": "1.00", "currency": "CNY"})
    assert (other.status_code, error_of(other)["code"]) == (409, "payout_reference_reused")
    for _ in range(3):
        payout_submit(payout_id=first.json()["id"])
    assert len(ctl.payouts()) == 1
    assert Payout.objects.count() == 1
    assert columns(merchant_account(desk)) == (0, 1_000_00, 300_00, 0)


@pytest.mark.parametrize(
    ("changes", "status", "code", "param"),
    [
        ({"amount": {"amount": "1000.01", "currency": "CNY"}}, 409, "insufficient_funds", "amount"),
        (
            {"amount": {"amount": "300", "currency": "KRW"}},
            400,
            "currency_mismatch",
            "source_account",
        ),
        (
            {"source_account": "acct_00000000000000000000000000"},
            400,
            "account_missing",
            "source_account",
        ),
        (
            {"bank_account": "pba_00000000000000000000000000"},
            400,
            "bank_account_missing",
            "bank_account",
        ),
        ({"reference": "has space"}, 400, "parameter_invalid", "reference"),
    ],
)
def test_refused_payouts_hold_nothing(api, tenants, desk, ctl, changes, status, code, param):
    before = columns(merchant_account(desk)), Transfer.objects.count()
    response = request_payout(api, tenants["merchant"], desk, **changes)
    assert response.status_code == status, response.content
    assert (error_of(response)["code"], error_of(response)["param"]) == (code, param)
    assert (columns(merchant_account(desk)), Transfer.objects.count()) == before
    assert Payout.objects.count() == 0
    assert ctl.payouts() == []


def test_another_merchant_cannot_use_or_see_them(api, tenants, desk):
    other = tenants["other_merchant"]
    response = request_payout(api, other, desk)
    assert (response.status_code, error_of(response)["code"]) == (400, "account_missing")
    mine = request_payout(api, tenants["merchant"], desk).json()
    assert api.get(f"/v1/payouts/{mine['id']}", key=other.key).status_code == 404
    bank_account = desk["bank_account"]["id"]
    assert api.get(f"/v1/payout_bank_accounts/{bank_account}", key=other.key).status_code == 404


def test_without_a_bank_that_pays_out_nothing_is_held(api, tenants, desk):
    AdapterConnection.objects.update(status="disabled")
    before = columns(merchant_account(desk))
    response = request_payout(api, tenants["merchant"], desk)
    assert (response.status_code, error_of(response)["code"]) == (409, "no_payout_route")
    assert columns(merchant_account(desk)) == before


# --- a real worker, killed in the middle of a run of payouts -----------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_run_leaves_no_payout_lost_or_doubled(
    api, tenants, desk, ctl, celery_worker_factory, monkeypatch, settings
):
    merchant = tenants["merchant"]
    # The bank answers slowly, so that the worker dies with payouts in flight.
    ctl.fault("payout_create", "latency:150", count=100)
    # No task is sent when the payouts are made: the sweep finds them, as after a lost task.
    monkeypatch.setattr("settlement.tasks.payout_submit_task.apply_async", lambda **kw: None)
    payouts = [
        request_payout(
            api,
            merchant,
            desk,
            reference=f"batch-{n}",
            amount={"amount": "10.00", "currency": "CNY"},
        ).json()["id"]
        for n in range(12)
    ]
    monkeypatch.undo()
    long_ago = timezone.now() - timedelta(days=1)
    Payout.objects.update(created_at=long_ago)
    worker = celery_worker_factory()
    assert payouts_send_unsent_task.delay() is not None

    wait_until(lambda: len(ctl.payouts()) >= 3, timeout=30, what="a few payouts at the bank")
    assert worker.proc is not None
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(timeout=10)
    sent_before_restart = len(ctl.payouts())
    assert sent_before_restart < 12

    # A payout whose operation the killed worker recorded but whose call it never finished
    # (it may or may not have reached the bank) is not sent again: its status sync settles it.
    in_flight = set(
        AdapterOperation.objects.filter(provider_id="").values_list("reference", flat=True)
    )

    # Running it again (a fresh worker, a fresh sweep) completes the run.
    Payout.objects.filter(operation__isnull=True).update(created_at=long_ago)
    restarted = celery_worker_factory()
    payouts_send_unsent_task.delay()

    def all_sent() -> bool:
        unsent = Payout.objects.filter(operation__isnull=True).exists()
        unanswered = AdapterOperation.objects.filter(provider_id="").exclude(
            reference__in=in_flight
        )
        return not unsent and not unanswered.exists()

    wait_until(all_sent, timeout=60, what="every payout sent", log=restarted.log)
    monkeypatch.setitem(settings.HUB, "ADAPTER_NOT_FOUND_GRACE_SECONDS", 0)
    for operation in AdapterOperation.objects.filter(reference__in=in_flight):
        operation_sync(operation_id=operation.pk)

    at_bank = [p["end_to_end_id"] for p in ctl.payouts()]
    failed = Payout.objects.filter(status="failed")
    assert len(set(at_bank)) == len(at_bank)  # none twice
    assert sorted(at_bank + [p.pk for p in failed]) == sorted(payouts)  # none lost
    assert set(p.pk for p in failed) <= in_flight
    assert {p.failure_code for p in failed} <= {"counterparty_never_received"}
    assert Transfer.objects.filter(type="pending").count() == 12
    # The holds of the payouts at the bank stand; those of the ones it never got are released.
    assert columns(merchant_account(desk)) == (0, 1_000_00, 10_00 * len(at_bank), 0)


def test_a_payouts_hold_is_not_resolved_by_hand(api, tenants, desk):
    payout = request_payout(api, tenants["merchant"], desk).json()
    for action in ("post", "void"):
        response = api.post(
            f"/v1/transfers/{payout['hold_transfer']}/{action}", {}, key=tenants["operator"].key
        )
        assert (response.status_code, error_of(response)["code"]) == (409, "transfer_managed")
    assert columns(merchant_account(desk)) == (0, 1_000_00, 300_00, 0)


def test_when_the_ledger_refuses_the_banks_answer_still_stands(api, tenants, desk, ctl):
    from hub.models import OperatorTask
    from hub.services.adapters.operations import operation_sync
    from settlement.ledger import transfer_void

    payout = request_payout(api, tenants["merchant"], desk).json()
    payout_submit(payout_id=payout["id"])
    # The hold is released by someone who should not have (the service, not the API).
    transfer_void(livemode=False, pending_id=payout["hold_transfer"])
    [at_bank] = ctl.payouts()
    ctl.post(f"/payouts/{at_bank['id']}/complete")

    operation = operation_sync(operation_id=AdapterOperation.objects.get(reference=payout["id"]).pk)

    assert operation.state == "succeeded"  # what the bank said is kept
    stored = Payout.objects.get(pk=payout["id"])
    assert (stored.status, stored.operation_id) == ("processing", operation.pk)
    task = OperatorTask.objects.get(kind="integrity_mismatch", status="open")
    assert task.details["payout"] == payout["id"]
    assert task.details["error"] == "pending_transfer_voided"
    assert not Transfer.objects.filter(id=f"{payout['id']}-paid").exists()
