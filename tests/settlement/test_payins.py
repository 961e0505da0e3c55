"""Payins and refunds against the Stripe-like sandbox over real sockets: the payin is made at the
institution, the buyer pays, the merchant gets a pending credit; refunds are netted before the
payin settles and held after; every refusal leaves balances, rows and events as they were."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import F
from django.utils import timezone

from adapters.interface import Amount, PayinRequest
from adapters.sandbox.stripe_like import StripeLikeSandbox
from hub.models import AdapterConnection, AdapterOperation, Event
from hub.services.adapters.inbound import inbound_apply_due
from hub.services.adapters.operations import operation_sync
from settlement.models import Account, Transfer
from settlement.models_payins import Payin, Refund, SettlementRun
from settlement.runs import last_closed_day, settlement_run_execute, settlement_run_start
from tests.conftest import Api, Tenant, error_of
from tests.factories.ledger import columns
from tests.support.adapters import (
    PSP_SECRET_KEY,
    PSP_WEBHOOK_SECRET,
    SANDBOX_TIMEOUT,
    Control,
    connect,
    fast_adapters,
)
from tests.support.worker import wait_until


@dataclass
class Shop:
    """A merchant with a KRW settlement account, and the sandbox institution it sells through."""

    api: Api
    merchant: Tenant
    institution: Tenant
    operator: Tenant
    psp: StripeLikeSandbox
    ctl: Control
    conn: AdapterConnection
    account_id: str

    def account(self) -> Account:
        return Account.objects.get(pk=self.account_id)

    def receivable(self) -> Account:
        return Account.objects.get(
            kind=Account.Kind.INSTITUTION_RECEIVABLE, owner=self.institution.participant
        )

    def create(self, reference: str = "order-1", amount: str = "150000", **extra: Any) -> Any:
        body = {
            "account": self.account_id,
            "amount": {"amount": amount, "currency": "KRW"},
            "reference": reference,
            **extra,
        }
        return self.api.post("/v1/payins", body, key=self.merchant.key)

    def pay(self, payin: dict[str, Any], decline_code: str | None = None) -> dict[str, Any]:
        """The buyer pays at the institution; the hub learns it by a status sync."""
        body = {"decline_code": decline_code} if decline_code else {}
        self.ctl.post(f"/payment_intents/{payin['institution_payment_id']}/pay", body)
        operation_sync(operation_id=payin["institution_operation"])
        return self.get(payin["id"])

    def paid(self, reference: str = "order-1", amount: str = "150000") -> dict[str, Any]:
        created = self.create(reference, amount)
        assert created.status_code == 201, created.json()
        return self.pay(created.json())

    def get(self, payin_id: str) -> dict[str, Any]:
        response = self.api.get(f"/v1/payins/{payin_id}", key=self.merchant.key)
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    def refund(self, payin: dict[str, Any], amount: str, reference: str = "rf-1") -> Any:
        return self.api.post(
            "/v1/refunds",
            {
                "payin": payin["id"],
                "amount": {"amount": amount, "currency": "KRW"},
                "reference": reference,
            },
            key=self.merchant.key,
        )

    def settle(self, days_ago: int = 1) -> Any:
        """What is unsettled happened ``days_ago`` days ago (a payin paid yesterday, say): the
        institution's run for the business day after that, executed here."""
        shift = timedelta(days=days_ago)
        Payin.objects.filter(run__isnull=True).update(succeeded_at=F("succeeded_at") - shift)
        Refund.objects.filter(run__isnull=True).update(adjusted_at=F("adjusted_at") - shift)
        closed = last_closed_day("Asia/Seoul", timezone.now())
        day = closed - timedelta(days=days_ago - 1)
        run, _ = settlement_run_start(
            institution_id=self.institution.id,
            currency="KRW",
            business_date=day,
            livemode=False,
        )
        settlement_run_execute(run_id=run.pk)
        run.refresh_from_db()
        return run


@pytest.fixture
def shop(api: Api, tenants: dict[str, Tenant], settings: Any) -> Iterator[Shop]:
    fast_adapters(settings)
    with StripeLikeSandbox(
        timeout_seconds=SANDBOX_TIMEOUT, secret_keys=frozenset({PSP_SECRET_KEY})
    ) as psp:
        institution = tenants["payment_institution"]
        conn = connect(
            operator=tenants["operator"].participant,
            participant=institution.participant,
            adapter="stripe_like",
            base_url=psp.base_url,
        )
        merchant = tenants["merchant"]
        account = api.post(
            "/v1/accounts", {"currency": "KRW", "kind": "merchant_settlement"}, key=merchant.key
        ).json()
        ctl = Control(psp)
        yield Shop(api, merchant, institution, tenants["operator"], psp, ctl, conn, account["id"])
        ctl.close()


def state() -> tuple[Any, ...]:
    """Everything a refused request must leave as it was."""
    return (
        list(
            Account.objects.order_by("pk").values_list(
                "pk", "debits_posted", "credits_posted", "debits_pending", "credits_pending"
            )
        ),
        Transfer.objects.count(),
        list(Payin.objects.order_by("pk").values_list("pk", "status", "refunds_pending")),
        Refund.objects.count(),
        AdapterOperation.objects.count(),
        Event.objects.count(),
    )


# --- payins --------------------------------------------------------------------------------------


def test_a_payin_is_made_at_the_institution_and_nothing_moves_yet(shop: Shop):
    response = shop.create(description="2 x kimchi", metadata={"order": "A-1"})

    assert response.status_code == 201
    payin = response.json()
    assert payin["object"] == "payin"
    assert payin["status"] == "pending"
    assert payin["amount"] == {"amount": "150000", "currency": "KRW"}
    assert payin["institution"] == shop.institution.id
    assert payin["institution_payment_id"].startswith("pi_")
    assert payin["refunded"] == {"amount": "0", "currency": "KRW"}
    assert (payin["settlement_run"], payin["settled_amount"], payin["fee"]) == (None, None, None)
    [intent] = shop.ctl.intents()
    assert (intent["amount"], intent["currency"], intent["reference"]) == (
        150000,
        "krw",
        payin["id"],
    )
    assert columns(shop.account()) == (0, 0, 0, 0)
    assert Transfer.objects.count() == 0


def test_the_buyer_pays_and_the_merchant_gets_a_pending_credit(shop: Shop):
    payin = shop.paid()

    assert payin["status"] == "succeeded"
    assert payin["succeeded_at"] is not None
    assert columns(shop.account()) == (0, 0, 0, 150000)
    assert columns(shop.receivable()) == (0, 0, 150000, 0)
    credit = Transfer.objects.get(id=payin["credit_transfer"])
    assert (credit.type, credit.amount, credit.code, credit.reference) == (
        "pending",
        150000,
        "payin",
        payin["id"],
    )
    types = list(Event.objects.filter(type__startswith="payin.").values_list("type", flat=True))
    assert sorted(types) == ["payin.created", "payin.succeeded"]
    # The pending credit is the institution's to settle, not the operator's to post by hand.
    response = shop.api.post(f"/v1/transfers/{credit.id}/post", {}, key=shop.operator.key)
    assert (response.status_code, error_of(response)["code"]) == (409, "transfer_managed")


def test_a_declined_payment_fails_the_payin_and_moves_nothing(shop: Shop):
    payin = shop.pay(shop.create().json(), decline_code="card_declined")

    assert (payin["status"], payin["failure_code"]) == ("failed", "payment_declined")
    assert columns(shop.account()) == (0, 0, 0, 0)
    assert Transfer.objects.count() == 0
    assert shop.refund(payin, "1000").status_code == 409


@pytest.mark.django_db(transaction=True)
def test_the_institutions_notification_alone_credits_the_merchant(shop: Shop, live_server: Any):
    shop.ctl.configure(
        webhook_url=f"{live_server.url}/v1/inbound/{shop.conn.pk}",
        webhook_secret=PSP_WEBHOOK_SECRET,
    )
    payin = shop.create().json()
    shop.ctl.post(f"/payment_intents/{payin['institution_payment_id']}/pay", {})
    assert shop.psp.dispatcher.wait_idle(timeout=15)
    wait_until(lambda: inbound_apply_due() or Payin.objects.get().status == "succeeded")

    assert shop.get(payin["id"])["status"] == "succeeded"
    assert columns(shop.account()) == (0, 0, 0, 150000)


def test_the_same_reference_returns_the_first_payin_and_another_is_refused(shop: Shop):
    first = shop.create().json()
    again = shop.create()
    assert (again.status_code, again.json()["id"]) == (200, first["id"])
    before = state()

    other = shop.create(amount="90000")

    assert (other.status_code, error_of(other)["code"]) == (409, "payin_reference_reused")
    assert state() == before
    assert len(shop.ctl.intents()) == 1


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"amount": {"amount": "0.5", "currency": "KRW"}}, 400, "amount_precision"),
        ({"amount": {"amount": "0", "currency": "KRW"}}, 400, "amount_too_small"),
        ({"amount": {"amount": "-100", "currency": "KRW"}}, 400, "amount_negative"),
        ({"amount": {"amount": "100.00", "currency": "CNY"}}, 400, "currency_mismatch"),
        # XXX is ISO 4217's "no currency": a real code that the hub does not settle.
        ({"amount": {"amount": "100", "currency": "XXX"}}, 400, "currency_unsupported"),
        ({"amount": {"amount": "100", "currency": "ABC"}}, 400, "currency_unknown"),
        ({"amount": {"amount": "100", "currency": "krw"}}, 400, "currency_invalid"),
        ({"account": "acct_00000000000000000000000000"}, 400, "account_missing"),
        ({"reference": "no spaces"}, 400, "parameter_invalid"),
        ({"institution": "par_00000000000000000000000000"}, 400, "no_payin_route"),
        ({"surprise": 1}, 400, "parameter_unknown"),
    ],
)
def test_bad_payins_are_refused_and_change_nothing(shop: Shop, change, status, code):
    body = {
        "account": shop.account_id,
        "amount": {"amount": "150000", "currency": "KRW"},
        "reference": "order-1",
        **change,
    }
    before = state()

    response = shop.api.post("/v1/payins", body, key=shop.merchant.key)

    assert (response.status_code, error_of(response)["code"]) == (status, code)
    if code != "parameter_unknown":
        assert error_of(response)["param"].split(".")[0] in body
    assert state() == before
    assert shop.ctl.intents() == []


def test_without_an_institution_for_the_currency_nothing_is_made(shop: Shop):
    AdapterConnection.objects.update(status="disabled")
    before = state()

    response = shop.create()

    assert (response.status_code, error_of(response)["code"]) == (409, "no_payin_route")
    assert state() == before


def test_who_may_see_and_make_payins(shop: Shop, tenants: dict[str, Tenant]):
    payin = shop.create().json()
    api = shop.api
    for role in ("payment_institution", "operator", "bank", "regulator"):
        response = api.post(
            "/v1/payins",
            {
                "account": shop.account_id,
                "amount": {"amount": "1", "currency": "KRW"},
                "reference": f"by-{role}",
            },
            key=tenants[role].key,
        )
        assert response.status_code == 403, role
    # The institution that collects it and the operator see it; another merchant does not.
    for name, expected in (
        ("payment_institution", 200),
        ("operator", 200),
        ("other_merchant", 404),
    ):
        assert api.get(f"/v1/payins/{payin['id']}", key=tenants[name].key).status_code == (
            expected
        ), name
    assert api.get("/v1/payins", key=tenants["other_merchant"].key).json()["data"] == []
    assert api.get("/v1/payins", key=tenants["regulator"].key).status_code == 403
    listed = api.get("/v1/payins?status=pending", key=shop.merchant.key).json()["data"]
    assert [p["id"] for p in listed] == [payin["id"]]


# --- refunds -------------------------------------------------------------------------------------


def test_a_refund_before_settlement_is_netted_and_the_run_posts_less(shop: Shop):
    payin = shop.paid()

    response = shop.refund(payin, "50000")

    assert response.status_code == 201
    refund = response.json()
    assert (refund["status"], refund["netted"], refund["hold_transfer"]) == (
        "processing",
        True,
        None,
    )
    # Nothing is held: the run will post less.
    assert columns(shop.account()) == (0, 0, 0, 150000)
    from settlement.payins import refund_submit

    assert refund_submit(refund_id=refund["id"]) == "succeeded"
    refund = shop.api.get(f"/v1/refunds/{refund['id']}", key=shop.merchant.key).json()
    assert refund["status"] == "succeeded"
    payin = shop.get(payin["id"])
    assert (payin["refunded"]["amount"], payin["refunds_pending"]["amount"]) == ("50000", "0")

    run = shop.settle()

    payin = shop.get(payin["id"])
    assert (payin["status"], payin["settled_amount"]["amount"], payin["fee"]["amount"]) == (
        "settled",
        "100000",
        "0",
    )
    assert columns(shop.account()) == (0, 100000, 0, 0)
    assert columns(shop.receivable()) == (100000, 0, 0, 0)
    assert (run.gross, run.refunds_netted, run.net, run.adjustments) == (150000, 50000, 100000, 0)


def test_a_refund_after_settlement_is_held_then_posted(shop: Shop):
    payin = shop.paid()
    shop.settle(days_ago=2)
    assert columns(shop.account()) == (0, 150000, 0, 0)

    refund = shop.refund(payin, "40000").json()

    assert (refund["netted"], refund["hold_transfer"]) == (False, f"{refund['id']}-hold")
    assert columns(shop.account()) == (0, 150000, 40000, 0)
    from settlement.payins import refund_submit

    refund_submit(refund_id=refund["id"])
    assert columns(shop.account()) == (40000, 150000, 0, 0)
    assert columns(shop.receivable()) == (150000, 40000, 0, 0)
    stored = Refund.objects.get(pk=refund["id"])
    assert (stored.status, stored.adjustment) == ("succeeded", -40000)

    # The institution's next run counts it against what it owes.
    run = shop.settle(days_ago=1)
    assert (run.payins_count, run.adjustments_count, run.adjustments, run.net, run.direction) == (
        0,
        1,
        -40000,
        -40000,
        "hub_pays_institution",
    )


def test_a_refused_refund_after_settlement_releases_the_hold(shop: Shop):
    payin = shop.paid()
    shop.settle()
    shop.ctl.configure(refund_status="pending")
    refund = shop.refund(payin, "40000").json()
    from settlement.payins import refund_submit

    assert refund_submit(refund_id=refund["id"]) == "pending"
    [at_institution] = shop.ctl.refunds()
    shop.ctl.post(f"/refunds/{at_institution['id']}/settle", {"failure_reason": "expired_card"})
    operation_sync(operation_id=str(Refund.objects.get().operation_id))

    stored = Refund.objects.get()
    assert (stored.status, stored.adjustment) == ("failed", 0)
    assert columns(shop.account()) == (0, 150000, 0, 0)
    assert Payin.objects.get().refunds_pending == 0


def test_a_netted_refund_refused_after_settlement_gives_the_money_back(shop: Shop):
    payin = shop.paid()
    shop.ctl.configure(refund_status="pending")
    refund = shop.refund(payin, "30000").json()
    from settlement.payins import refund_submit

    refund_submit(refund_id=refund["id"])
    run = shop.settle()
    assert (run.refunds_netted, run.net) == (30000, 120000)
    assert columns(shop.account()) == (0, 120000, 0, 0)

    [at_institution] = shop.ctl.refunds()
    shop.ctl.post(f"/refunds/{at_institution['id']}/settle", {"failure_reason": "closed"})
    operation_sync(operation_id=str(Refund.objects.get().operation_id))

    assert columns(shop.account()) == (0, 150000, 0, 0)
    assert columns(shop.receivable()) == (150000, 0, 0, 0)
    stored = Refund.objects.get()
    assert (stored.status, stored.adjustment) == ("failed", 30000)


def test_bad_refunds_are_refused_and_change_nothing(shop: Shop, tenants: dict[str, Tenant]):
    payin = shop.paid()
    pending_payin = shop.create("order-2").json()
    before = state()

    cases = [
        (shop.refund(payin, "150001"), 400, "refund_exceeds_payin"),
        (shop.refund(pending_payin, "1"), 409, "payin_not_refundable"),
        (shop.refund(payin, "0"), 400, "amount_too_small"),
        (shop.refund(payin, "0.5"), 400, "amount_precision"),
        (
            shop.api.post(
                "/v1/refunds",
                {
                    "payin": payin["id"],
                    "amount": {"amount": "1.00", "currency": "CNY"},
                    "reference": "rf-x",
                },
                key=shop.merchant.key,
            ),
            400,
            "currency_mismatch",
        ),
        (
            shop.api.post(
                "/v1/refunds",
                {
                    "payin": payin["id"],
                    "amount": {"amount": "1", "currency": "KRW"},
                    "reference": "rf-y",
                },
                key=tenants["other_merchant"].key,
            ),
            404,
            "resource_missing",
        ),
    ]
    for response, status, code in cases:
        assert (response.status_code, error_of(response)["code"]) == (status, code)
    assert state() == before


def test_a_refund_of_a_settled_payin_needs_the_money_on_the_account(shop: Shop):
    payin = shop.paid()
    shop.settle()
    # The merchant moved its money out (a payout's hold would do the same).
    from settlement.ledger import TransferSpec, transfer_create
    from tests.factories.ledger import open_account

    elsewhere = open_account(Account.Kind.SUSPENSE, "KRW")
    transfer_create(
        livemode=False,
        spec=TransferSpec(
            debit_account_id=shop.account_id,
            credit_account_id=elsewhere.pk,
            amount=120000,
            currency="KRW",
        ),
    )
    before = state()

    response = shop.refund(payin, "40000")

    assert (response.status_code, error_of(response)["code"]) == (409, "insufficient_funds")
    assert state() == before


def test_refunds_reference_is_their_idempotency_key(shop: Shop):
    payin = shop.paid()
    first = shop.refund(payin, "1000").json()
    again = shop.refund(payin, "1000")
    assert (again.status_code, again.json()["id"]) == (200, first["id"])
    before = state()
    other = shop.refund(payin, "2000")
    assert (other.status_code, error_of(other)["code"]) == (409, "refund_reference_reused")
    assert state() == before
    assert Payin.objects.get().refunds_pending == 1000


# --- end to end, with a real worker --------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_payin_notified_refunded_and_settled_by_a_real_worker(
    shop: Shop, live_server: Any, celery_worker: Any, monkeypatch: Any
):
    """The institution notifies a live hub; the worker applies the notification (a pending
    credit), sends the refund, and executes the day's settlement run that beat starts."""
    from hub.services.adapters import inbound as inbound_module
    from settlement.tasks import settlement_runs_task

    monkeypatch.setattr(inbound_module, "_ask_for_apply", inbound_module._Nudge())
    shop.ctl.configure(
        webhook_url=f"{live_server.url}/v1/inbound/{shop.conn.pk}",
        webhook_secret=PSP_WEBHOOK_SECRET,
    )
    payin = shop.create().json()
    shop.ctl.post(f"/payment_intents/{payin['institution_payment_id']}/pay", {})
    wait_until(
        lambda: Payin.objects.get().status == "succeeded",
        timeout=30,
        what="the notification applied",
        log=celery_worker.log,
    )
    refund = shop.refund(shop.get(payin["id"]), "20000").json()
    wait_until(
        lambda: Refund.objects.get().status == "succeeded",
        timeout=30,
        what="the refund made",
        log=celery_worker.log,
    )
    assert [r["reference"] for r in shop.ctl.refunds()] == [refund["id"]]
    # Paid yesterday, for the last closed business day's run.
    Payin.objects.update(succeeded_at=F("succeeded_at") - timedelta(days=1))

    settlement_runs_task.delay()

    wait_until(
        lambda: Payin.objects.get().status == "settled",
        timeout=30,
        what="the run",
        log=celery_worker.log,
    )
    run = SettlementRun.objects.get(currency="KRW")
    wait_until(lambda: SettlementRun.objects.get(pk=run.pk).status == "completed", timeout=30)
    run.refresh_from_db()
    assert (run.gross, run.refunds_netted, run.net, run.direction) == (
        150000,
        20000,
        130000,
        "institution_pays_hub",
    )
    assert columns(shop.account()) == (0, 130000, 0, 0)
    assert columns(shop.receivable()) == (130000, 0, 0, 0)
    assert shop.get(payin["id"])["settlement_run"] == run.pk


def test_a_refund_whose_task_was_lost_is_found_by_the_sweep(shop: Shop, monkeypatch: Any):
    from settlement.payins import refund_submit, refunds_unsent

    payin = shop.paid()
    monkeypatch.setattr("settlement.payins.enqueue_after_commit", lambda *a, **kw: None)
    refund = shop.refund(payin, "1000").json()
    assert refunds_unsent() == []  # too young: its task may still come

    Refund.objects.update(created_at=timezone.now() - timedelta(minutes=5))

    assert refunds_unsent() == [refund["id"]]
    refund_submit(refund_id=refund["id"])
    assert refunds_unsent() == []
    assert [r["reference"] for r in shop.ctl.refunds()] == [refund["id"]]


def test_a_payin_whose_first_call_never_happened_is_sent_by_the_sweep(shop: Shop, monkeypatch: Any):
    from settlement.payins import payin_submit, payins_unsent

    monkeypatch.setattr("settlement.payins.payin_submit", lambda **kw: "skipped")
    payin = shop.create().json()
    monkeypatch.undo()
    assert (payin["status"], payin["institution_operation"]) == ("pending", None)
    assert payins_unsent() == []
    Payin.objects.update(created_at=timezone.now() - timedelta(minutes=5))

    assert payins_unsent() == [payin["id"]]
    assert payin_submit(payin_id=payin["id"]) == "pending"
    assert payins_unsent() == []
    assert [i["reference"] for i in shop.ctl.intents()] == [payin["id"]]


class Died(BaseException):
    """The process ends where it is raised (no handler of the hub's catches it)."""


def test_a_payin_the_institution_never_received_is_sent_again_by_its_sync(
    shop: Shop, monkeypatch: Any, settings: Any
):
    """The worker recorded the operation and died before its call. The institution's creates
    are idempotent (its manifest says so), so the status sync sends it again under the same
    reference, once no first call can still be on its way; it is made there once."""
    import hub.services.adapters.operations as operations
    from settlement.payins import payin_submit

    monkeypatch.setattr("settlement.payins.payin_submit", lambda **kw: "skipped")
    payin = shop.create().json()
    monkeypatch.undo()

    def die(*args: Any, **kwargs: Any) -> Any:
        raise Died

    monkeypatch.setattr(operations, "build_adapter", die)
    with pytest.raises(Died):
        payin_submit(payin_id=payin["id"])
    monkeypatch.undo()
    operation = AdapterOperation.objects.get(reference=payin["id"])
    assert shop.ctl.intents() == []

    # Too young: a first call may still be on its way.
    state = operation.state
    operation = operation_sync(operation_id=operation.pk)
    assert (operation.state, operation.provider_id, operation.sync_count) == (state, "", 1)
    assert shop.ctl.intents() == []

    fast_adapters(settings, ADAPTER_RESEND_AFTER_SECONDS=0)
    operation = operation_sync(operation_id=operation.pk)
    [intent] = shop.ctl.intents()
    assert (operation.state, operation.provider_id) == ("pending", intent["id"])
    assert (intent["amount"], intent["currency"]) == (150000, "krw")

    operation = operation_sync(operation_id=operation.pk)  # found: not sent a third time
    assert [i["id"] for i in shop.ctl.intents()] == [intent["id"]]
    assert payin_submit(payin_id=payin["id"]) == "pending"  # the sweep links it
    assert shop.get(payin["id"])["institution_operation"] == operation.pk


def test_only_an_idempotent_create_of_a_payin_or_refund_is_sent_again():
    """A payout never is (its beneficiary is stored masked); a payin or refund only where the
    institution's manifest declares its create idempotent."""
    from types import SimpleNamespace

    from hub.services.adapters.operations import _request_again

    def adapter(idempotent: bool) -> Any:
        return SimpleNamespace(manifest=SimpleNamespace(is_idempotent=lambda name: idempotent))

    payin = AdapterOperation(
        kind=AdapterOperation.Kind.PAYIN,
        reference="pin_1",
        request={"amount": {"minor": 5, "currency": "KRW"}, "metadata": {"order": "A-1"}},
    )
    payout = AdapterOperation(kind=AdapterOperation.Kind.PAYOUT, reference="po_1", request={})

    assert _request_again(payout, adapter(True)) is None
    assert _request_again(payin, adapter(False)) is None
    again = _request_again(payin, adapter(True))
    assert again == PayinRequest(
        reference="pin_1", amount=Amount(5, "KRW"), description="", metadata={"order": "A-1"}
    )
