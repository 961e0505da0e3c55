"""Verifications through the services and the API: outcomes, idempotency, the review queue,
batches and the list of denied parties; refusals change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fx.models_verification import DeniedParty, Verification, VerificationBatch
from fx.verification import verification_batch_create, verification_create, verification_payload
from hub.models import Event, Participant, Role
from tests.conftest import Api, Tenant, error_of, row_counts
from tests.factories import make_participant, principal_for
from tests.factories.trade import PaymentRecordFactory
from tests.fx.access_verification import make_documents, make_payin, make_payout
from trade.models import DocumentUpload

pytestmark = pytest.mark.django_db

URL = "/v1/fx/verifications"


def counts() -> dict[str, int]:
    return {
        **row_counts(),
        "Verification": Verification.objects.count(),
        "VerificationBatch": VerificationBatch.objects.count(),
        "DeniedParty": DeniedParty.objects.count(),
    }


def state() -> list[tuple[Any, ...]]:
    return list(
        Verification.objects.order_by("pk").values_list(
            "pk", "outcome", "review", "reviewed_by", "review_note", "updated_at"
        )
    )


@pytest.fixture
def merchant(tenants: dict[str, Tenant]) -> Tenant:
    return tenants["merchant"]


def ask(api: Api, tenant: Tenant, **body: Any) -> Any:
    return api.post(URL, body, key=tenant.key)


def events(type: str) -> list[Event]:
    return list(Event.objects.filter(type=type).order_by("pk"))


# --- one payin or payout -------------------------------------------------------------------------


def test_a_payin_backed_by_its_documents_is_verified(api, merchant):
    order = make_documents(merchant.participant)
    payin = make_payin(merchant.participant)

    response = ask(api, merchant, payin=payin.pk, order_no="ORD-1")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["object"] == "verification"
    assert body["subject"] == "payin"
    assert body["payin"] == payin.pk
    assert body["outcome"] == body["decision"] == "verified"
    assert body["reasons"] == []
    assert body["amount"] == {"amount": "150000", "currency": "KRW"}
    assert body["documents"]["order"] == order.pk
    assert body["documents"]["payment_record"] == order.payment_records.get().pk
    assert body["documents"]["waybill"] == order.waybills.get().pk
    assert body["documents"]["customs_declaration"] is None
    assert body["review"]["status"] == "none"
    [event] = events("verification.created")
    assert event.data == body
    assert event.participant_id == merchant.id


def test_asking_twice_gives_one_verification_and_one_event(api, merchant):
    make_documents(merchant.participant)
    payin = make_payin(merchant.participant)

    first = ask(api, merchant, payin=payin.pk, order_no="ORD-1")
    second = ask(api, merchant, payin=payin.pk, order_no="ORD-1")

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    assert Verification.objects.count() == 1
    assert len(events("verification.created")) == 1


def test_the_service_says_whether_it_created(merchant):
    make_documents(merchant.participant)
    payin = make_payin(merchant.participant)
    actor = principal_for(merchant.participant)
    made, created = verification_create(actor=actor, payin_id=payin.pk, order_no="ORD-1")
    again, created_again = verification_create(actor=actor, payin_id=payin.pk, order_no="ORD-1")
    assert (created, created_again) == (True, False)
    assert again.pk == made.pk


def test_the_same_payin_against_another_order_is_refused(api, merchant):
    make_documents(merchant.participant)
    payin = make_payin(merchant.participant)
    ask(api, merchant, payin=payin.pk, order_no="ORD-1")
    before, rows = counts(), state()

    response = ask(api, merchant, payin=payin.pk, order_no="ORD-2")

    assert response.status_code == 409
    assert error_of(response)["code"] == "verification_exists"
    assert (counts(), state()) == (before, rows)


def test_a_payout_is_verified_too(api, merchant):
    make_documents(merchant.participant)
    payout = make_payout(merchant.participant)
    response = ask(api, merchant, payout=payout.pk, order_no="ORD-1")
    assert response.status_code == 201
    assert response.json()["subject"] == "payout"
    assert response.json()["payout"] == payout.pk
    assert response.json()["outcome"] == "verified"


def test_another_currency_is_an_outcome_not_an_error(api, merchant):
    make_documents(merchant.participant)
    payin = make_payin(merchant.participant, amount=800_00, currency="CNY")
    response = ask(api, merchant, payin=payin.pk, order_no="ORD-1")
    assert response.status_code == 201
    assert response.json()["outcome"] == "rejected"
    assert response.json()["reasons"] == ["currency_mismatch"]


def test_an_unknown_order_is_an_outcome(api, merchant, tenants):
    # Another merchant's order of the same number is not this merchant's.
    make_documents(tenants["other_merchant"].participant, order_no="ORD-1")
    payin = make_payin(merchant.participant)
    response = ask(api, merchant, payin=payin.pk, order_no="ORD-1")
    assert response.status_code == 201
    body = response.json()
    assert (body["outcome"], body["reasons"]) == ("rejected", ["order_missing"])
    assert body["documents"] == {
        "order": None,
        "payment_record": None,
        "waybill": None,
        "customs_declaration": None,
    }


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"order_no": "ORD-1"}, 400, "parameter_missing", "payin"),
        ({"payin": "pay_x", "order_no": "ORD-1"}, 400, "invalid", "payin"),
        ({"payin": "PAYIN", "order_no": "ORD-1"}, 400, None, "payin"),
        ({"payin": "*", "order_no": ""}, 400, "parameter_missing", "order_no"),
        ({"payin": "*"}, 400, "parameter_missing", "order_no"),
        ({"payin": "*", "order_no": "x" * 65}, 400, None, "order_no"),
        ({"payin": "*", "order_no": 5}, 400, "parameter_invalid", "order_no"),
        ({"payin": "*", "order_no": "ORD-1", "extra": 1}, 400, "parameter_unknown", "extra"),
        ({"payin": "*", "payout": "po_" + "0" * 26, "order_no": "ORD-1"}, 400, None, "payin"),
        ({"payin": "pay_" + "0" * 26, "order_no": "ORD-1"}, 404, "resource_missing", "payin"),
        ({"payout": "po_" + "0" * 26, "order_no": "ORD-1"}, 404, "resource_missing", "payout"),
    ],
)
def test_bad_requests_change_nothing(api, merchant, body, status, code, param):
    make_documents(merchant.participant)
    payin = make_payin(merchant.participant)
    body = {k: (payin.pk if v == "*" else v) for k, v in body.items()}
    before = counts()
    response = ask(api, merchant, **body)
    assert response.status_code == status, response.content
    error = error_of(response)
    assert error["param"] == param
    if code is not None and code != "invalid":
        assert error["code"] == code
    assert counts() == before


def test_another_merchants_payin_is_404(api, merchant, tenants):
    theirs = make_payin(tenants["other_merchant"].participant)
    make_documents(tenants["other_merchant"].participant)
    before = counts()
    response = ask(api, merchant, payin=theirs.pk, order_no="ORD-1")
    assert response.status_code == 404
    assert error_of(response)["param"] == "payin"
    assert counts() == before


def test_the_operator_verifies_any_merchants_payin(api, merchant, tenants):
    make_documents(merchant.participant)
    payin = make_payin(merchant.participant)
    response = ask(api, tenants["operator"], payin=payin.pk, order_no="ORD-1")
    assert response.status_code == 201
    assert response.json()["merchant"] == merchant.id


# --- what the service reads beside the documents -------------------------------------------------


def test_an_order_backing_another_movement_is_flagged(api, merchant):
    make_documents(merchant.participant)
    first = ask(api, merchant, payin=make_payin(merchant.participant).pk, order_no="ORD-1")
    second = ask(api, merchant, payout=make_payout(merchant.participant).pk, order_no="ORD-1")
    assert first.json()["reasons"] == []
    assert (second.json()["outcome"], second.json()["reasons"]) == ("review", ["document_reused"])
    assert second.json()["review"]["status"] == "pending"


def test_a_rejected_verification_backs_nothing(api, merchant, tenants):
    make_documents(merchant.participant)
    first = ask(api, merchant, payin=make_payin(merchant.participant).pk, order_no="ORD-1")
    second = ask(api, merchant, payin=make_payin(merchant.participant).pk, order_no="ORD-1")
    # The officer rejects the first; the second still stands, and backs the order.
    Verification.objects.filter(pk=first.json()["id"]).update(review="rejected")
    third = ask(api, merchant, payin=make_payin(merchant.participant).pk, order_no="ORD-1")
    assert third.json()["reasons"] == ["document_reused"]
    Verification.objects.filter(pk=second.json()["id"]).update(outcome="rejected")
    fourth = ask(api, merchant, payin=make_payin(merchant.participant).pk, order_no="ORD-1")
    assert fourth.json()["reasons"] == ["document_reused"]  # the third is pending
    Verification.objects.exclude(pk=fourth.json()["id"]).update(outcome="rejected")
    Verification.objects.filter(pk=fourth.json()["id"]).update(review="rejected")
    fifth = ask(api, merchant, payin=make_payin(merchant.participant).pk, order_no="ORD-1")
    assert fifth.json()["reasons"] == []


def test_a_denied_buyer_is_refused(api, merchant, tenants):
    order = make_documents(merchant.participant)
    response = api.post(
        "/v1/fx/denied_parties",
        {"name": "anyone", "id_number": order.buyer_id, "country": "KR", "reason": "sanctions"},
        key=tenants["operator"].key,
    )
    assert response.status_code == 201
    party = response.json()
    assert (party["object"], party["id_number"], party["country"]) == (
        "denied_party",
        order.buyer_id,
        "KR",
    )
    verified = ask(api, merchant, payin=make_payin(merchant.participant).pk, order_no="ORD-1")
    assert verified.json()["outcome"] == "rejected"
    assert verified.json()["reasons"] == ["buyer_denied", "payer_denied"]


def test_a_denied_payer_by_name(api, merchant, tenants):
    make_documents(merchant.participant, payment={"payer_name": "Park Jisoo", "payer_id": ""})
    api.post(
        "/v1/fx/denied_parties",
        {"name": "PARK  jisoo", "reason": "fraud"},
        key=tenants["operator"].key,
    )
    verified = ask(api, merchant, payin=make_payin(merchant.participant).pk, order_no="ORD-1")
    assert verified.json()["reasons"] == ["payer_denied", "payer_not_buyer"]


def _paid_against(order: Any) -> None:
    """A payin of the order's merchant that its payment record backs, verified and standing."""
    record = order.payment_records.get()
    Verification.objects.create(
        livemode=False,
        merchant=order.merchant,
        subject="payin",
        payin=make_payin(order.merchant, amount=record.amount),
        order_no=order.order_no,
        order=order,
        payment_record=record,
        currency=record.currency,
        amount=record.amount,
        outcome="verified",
    )


def test_the_annual_quota_counts_every_merchants_payments_of_the_year(api, merchant, tenants):
    shanghai_new_year = datetime(2025, 12, 31, 16, 0, tzinfo=UTC)
    other = tenants["other_merchant"].participant
    payer: dict[str, Any] = {"payer_id": "kr-payer-9", "payer_name": "Kim", "payer_country": "KR"}
    buyer: dict[str, Any] = {"buyer_id": "kr-payer-9", "buyer_name": "Kim"}
    # Last year (in Shanghai) 4,000,000 at another merchant, this year 4,200,000 at two.
    for n, (who, amount, at) in enumerate(
        [
            (other, 1_000_000, shanghai_new_year - timedelta(seconds=1)),
            (other, 1_000_000, shanghai_new_year - timedelta(days=2)),
            (other, 1_000_000, shanghai_new_year - timedelta(days=3)),
            (other, 1_000_000, shanghai_new_year - timedelta(days=4)),
            (other, 1_000_000, shanghai_new_year),
            (other, 1_000_000, shanghai_new_year + timedelta(days=1)),
            (merchant.participant, 1_000_000, shanghai_new_year + timedelta(days=2)),
            (merchant.participant, 1_000_000, shanghai_new_year + timedelta(days=3)),
            (other, 200_000, shanghai_new_year + timedelta(days=4)),
        ]
    ):
        filed = make_documents(
            who,
            order_no=f"PAST-{n}",
            amount=amount,
            goods_amount=amount,
            shipping_amount=0,
            ordered_at=at,
            payment={**payer, "amount": amount, "paid_at": at},
            **buyer,
        )
        if who == other:  # another merchant's records count where money moved against them
            _paid_against(filed)
    # A B2B payment and one in another mode count for nothing.
    make_documents(
        other,
        order_no="B2B",
        trade_type="B2B",
        amount=9_000_000,
        goods_amount=9_000_000,
        shipping_amount=0,
        ordered_at=shanghai_new_year,
        payment={**payer, "amount": 9_000_000, "paid_at": shanghai_new_year},
        **buyer,
    )
    paid = shanghai_new_year + timedelta(days=5)
    at_quota: dict[str, Any] = {
        "amount": 1_000_000,
        "goods_amount": 1_000_000,
        "shipping_amount": 0,
    }
    make_documents(
        merchant.participant,
        order_no="AT",
        ordered_at=paid,
        payment={**payer, "amount": 1_000_000, "paid_at": paid},
        waybill={"shipped_at": paid},
        **at_quota,
        **buyer,
    )
    make_documents(
        merchant.participant,
        order_no="BEYOND",
        ordered_at=paid,
        payment={**payer, "amount": 1, "paid_at": paid + timedelta(seconds=1)},
        waybill={"shipped_at": paid},
        amount=1,
        goods_amount=1,
        shipping_amount=0,
        **buyer,
    )
    at_payin = make_payin(merchant.participant, amount=1_000_000)
    at = ask(api, merchant, payin=at_payin.pk, order_no="AT")
    beyond = ask(
        api, merchant, payin=make_payin(merchant.participant, amount=1).pk, order_no="BEYOND"
    )
    assert at.json()["reasons"] == []
    assert beyond.json()["reasons"] == ["annual_quota_exceeded"]


def test_another_merchants_records_without_a_payment_use_up_no_quota(api, merchant, tenants):
    """Records another merchant files and never paid against cannot exhaust (or probe) a
    payer's annual quota."""
    other = tenants["other_merchant"].participant
    payer: dict[str, Any] = {"payer_id": "kr-payer-9", "payer_name": "Kim", "payer_country": "KR"}
    buyer: dict[str, Any] = {"buyer_id": "kr-payer-9", "buyer_name": "Kim"}
    now = datetime.now(UTC)
    big: dict[str, Any] = {"amount": 5_200_000, "goods_amount": 5_200_000, "shipping_amount": 0}
    make_documents(
        other,
        order_no="FILED-ONLY",
        ordered_at=now - timedelta(days=3),
        payment={**payer, "amount": 5_200_000, "paid_at": now - timedelta(days=3)},
        **big,
        **buyer,
    )
    make_documents(
        merchant.participant,
        order_no="MINE",
        ordered_at=now - timedelta(hours=3),
        payment={**payer, "amount": 150000, "paid_at": now - timedelta(hours=2)},
        waybill={"shipped_at": now - timedelta(hours=1)},
        amount=150000,
        goods_amount=150000,
        shipping_amount=0,
        **buyer,
    )

    mine = ask(
        api, merchant, payin=make_payin(merchant.participant, amount=150000).pk, order_no="MINE"
    )

    assert (mine.json()["outcome"], mine.json()["reasons"]) == ("verified", [])


# --- review --------------------------------------------------------------------------------------


@pytest.fixture
def in_review(api: Api, merchant: Tenant, tenants: dict[str, Tenant]) -> dict[str, Any]:
    """A payin in review, of a merchant the bank pays out for (the bank serves it)."""
    make_payout(merchant.participant, bank=tenants["bank"].participant)
    make_documents(merchant.participant, payment={"payer_id": "someone-else"})
    response = ask(api, merchant, payin=make_payin(merchant.participant).pk, order_no="ORD-1")
    assert response.json()["outcome"] == "review"
    body: dict[str, Any] = response.json()
    return body


def test_a_bank_officer_approves_from_the_queue(api, tenants, in_review):
    bank = tenants["bank"]
    queue = api.get(URL, key=bank.key, params={"review": "pending"}).json()["data"]
    assert [v["id"] for v in queue] == [in_review["id"]]

    response = api.post(
        f"{URL}/{in_review['id']}/approve", {"note": "gift paid by a relative"}, key=bank.key
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["outcome"], body["decision"]) == ("review", "verified")
    assert body["review"]["status"] == "approved"
    assert body["review"]["reviewed_by"] == bank.id
    assert body["review"]["note"] == "gift paid by a relative"
    assert body["reasons"] == ["payer_not_buyer"]
    [event] = events("verification.reviewed")
    assert event.data == body
    assert event.participant_id == in_review["merchant"]
    assert Verification.objects.get(pk=in_review["id"]).decision == "verified"
    # The deciding bank still sees it; another bank no longer does; the merchant does.
    assert api.get(f"{URL}/{in_review['id']}", key=bank.key).status_code == 200
    assert api.get(f"{URL}/{in_review['id']}", key=tenants["other_bank"].key).status_code == 404
    merchant_view = api.get(f"{URL}/{in_review['id']}", key=tenants["merchant"].key)
    assert merchant_view.json()["decision"] == "verified"


def test_a_bank_that_does_not_serve_the_merchant_neither_sees_nor_decides(api, tenants, in_review):
    other_bank = tenants["other_bank"]
    before, rows = counts(), state()

    queue = api.get(URL, key=other_bank.key, params={"review": "pending"}).json()["data"]
    decided = api.post(f"{URL}/{in_review['id']}/approve", {"note": "x"}, key=other_bank.key)

    assert queue == []
    assert (decided.status_code, error_of(decided)["code"]) == (404, "resource_missing")
    assert (counts(), state()) == (before, rows)


def test_the_operator_rejects(api, tenants, in_review):
    response = api.post(
        f"{URL}/{in_review['id']}/reject", {"note": "no relation"}, key=tenants["operator"].key
    )
    assert response.status_code == 200
    assert response.json()["decision"] == "rejected"
    assert Verification.objects.get(pk=in_review["id"]).decision == "rejected"


def test_a_decided_review_cannot_be_decided_again(api, tenants, in_review):
    bank = tenants["bank"]
    api.post(f"{URL}/{in_review['id']}/approve", {"note": "ok"}, key=bank.key)
    before, rows = counts(), state()
    for action in ("approve", "reject"):
        response = api.post(f"{URL}/{in_review['id']}/{action}", {"note": "again"}, key=bank.key)
        assert response.status_code == 409
        assert error_of(response)["code"] == "verification_not_in_review"
    assert (counts(), state()) == (before, rows)


def test_what_was_not_sent_to_review_cannot_be_reviewed(api, tenants, merchant):
    make_documents(merchant.participant)
    verified = ask(api, merchant, payin=make_payin(merchant.participant).pk, order_no="ORD-1")
    before, rows = counts(), state()
    operator = tenants["operator"]
    response = api.post(f"{URL}/{verified.json()['id']}/approve", {"note": "x"}, key=operator.key)
    assert response.status_code == 409
    assert error_of(response)["code"] == "verification_not_in_review"
    # A bank does not even see it.
    response = api.post(
        f"{URL}/{verified.json()['id']}/approve", {"note": "x"}, key=tenants["bank"].key
    )
    assert response.status_code == 404
    assert (counts(), state()) == (before, rows)


@pytest.mark.parametrize("body", [{}, {"note": ""}, {"note": "   "}, {"note": "x" * 1001}])
def test_a_review_needs_a_note(api, tenants, in_review, body):
    before, rows = counts(), state()
    response = api.post(f"{URL}/{in_review['id']}/approve", body, key=tenants["bank"].key)
    assert response.status_code == 400
    assert error_of(response)["param"] == "note"
    assert (counts(), state()) == (before, rows)


def test_a_merchant_cannot_review_its_own(api, merchant, in_review):
    before, rows = counts(), state()
    response = api.post(f"{URL}/{in_review['id']}/approve", {"note": "mine"}, key=merchant.key)
    assert response.status_code == 403
    assert (counts(), state()) == (before, rows)


# --- lists ---------------------------------------------------------------------------------------


def test_merchants_see_their_own_and_filters_apply(api, merchant, tenants, in_review):
    other = tenants["other_merchant"]
    make_documents(other.participant)
    ask(api, other, payin=make_payin(other.participant).pk, order_no="ORD-1")
    mine = api.get(URL, key=merchant.key).json()["data"]
    assert [v["id"] for v in mine] == [in_review["id"]]
    assert len(api.get(URL, key=tenants["operator"].key).json()["data"]) == 2
    assert api.get(URL, key=merchant.key, params={"outcome": "verified"}).json()["data"] == []
    for name, value in (
        ("outcome", "maybe"),
        ("review", "x"),
        ("subject", "y"),
        ("batch", "vbt_x"),
        ("payin", "po_" + "0" * 26),
    ):
        response = api.get(URL, key=merchant.key, params={name: value})
        assert response.status_code == 400
        assert error_of(response)["param"] == name


# --- batches -------------------------------------------------------------------------------------


def upload_of(merchant: Participant, kind: str = "order") -> DocumentUpload:
    return DocumentUpload.objects.create(
        livemode=False,
        merchant=merchant,
        kind=kind,
        format="csv",
        status="accepted",
        sha256="0" * 64,
    )


def test_a_batch_verifies_every_order_of_an_upload(api, merchant):
    upload = upload_of(merchant.participant)
    make_documents(merchant.participant, order_no="A", upload=upload)
    make_documents(merchant.participant, order_no="B", upload=upload, with_waybill=False)
    make_documents(merchant.participant, order_no="C", upload=upload, payment={"payer_id": "other"})
    make_documents(merchant.participant, order_no="NOT-IN-THE-FILE")

    response = api.post("/v1/fx/verification_batches", {"upload": upload.pk}, key=merchant.key)

    assert response.status_code == 201, response.content
    batch = response.json()
    assert batch["object"] == "verification_batch"
    assert batch["upload"] == upload.pk
    assert (batch["orders_count"], batch["verified_count"]) == (3, 1)
    assert (batch["rejected_count"], batch["review_count"]) == (1, 1)
    listed = api.get(URL, key=merchant.key, params={"batch": batch["id"], "limit": 10}).json()
    by_order = {v["order_no"]: v for v in listed["data"]}
    assert sorted(by_order) == ["A", "B", "C"]
    assert by_order["A"]["reasons"] == []
    assert by_order["B"]["reasons"] == ["waybill_missing"]
    assert by_order["C"]["reasons"] == ["payer_not_buyer"]
    # Checks made before money moved are nobody's to review.
    assert {v["subject"] for v in listed["data"]} == {"order"}
    assert by_order["C"]["review"]["status"] == "none"
    assert by_order["A"]["amount"] == {"amount": "150000", "currency": "KRW"}
    [event] = events("verification_batch.created")
    assert event.data == batch
    assert events("verification.created") == []
    detail = api.get(f"/v1/fx/verification_batches/{batch['id']}", key=merchant.key)
    assert detail.json() == batch


def test_an_upload_of_payment_records_names_its_orders(merchant):
    upload = upload_of(merchant.participant, "payment_record")
    order = make_documents(merchant.participant, order_no="A", with_payment=False)
    make_documents(merchant.participant, order_no="B")
    PaymentRecordFactory.create(
        merchant=merchant.participant,
        order=order,
        upload=upload,
        payer_id=order.buyer_id,
        payer_name=order.buyer_name,
    )
    batch = verification_batch_create(
        actor=principal_for(merchant.participant), upload_id=upload.pk
    )
    assert (batch.orders_count, batch.verified_count) == (1, 1)


def test_without_an_upload_every_order_not_yet_verified(api, merchant):
    make_documents(merchant.participant, order_no="A")
    make_documents(merchant.participant, order_no="B")
    ask(api, merchant, payin=make_payin(merchant.participant).pk, order_no="A")
    first = api.post("/v1/fx/verification_batches", {}, key=merchant.key).json()
    second = api.post("/v1/fx/verification_batches", {}, key=merchant.key).json()
    assert (first["orders_count"], second["orders_count"]) == (1, 0)
    assert first["upload"] is None


def test_a_batch_flags_orders_backing_movements(api, merchant):
    upload = upload_of(merchant.participant)
    make_documents(merchant.participant, order_no="A", upload=upload)
    ask(api, merchant, payin=make_payin(merchant.participant).pk, order_no="A")
    batch = api.post("/v1/fx/verification_batches", {"upload": upload.pk}, key=merchant.key)
    [row] = api.get(URL, key=merchant.key, params={"batch": batch.json()["id"]}).json()["data"]
    assert row["reasons"] == ["document_reused"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"upload": "upl_" + "0" * 26}, 404, "resource_missing"),
        ({"upload": "nope"}, 400, None),
        ({"upload": 7}, 400, "parameter_invalid"),
        ({"orders": []}, 400, "parameter_unknown"),
    ],
)
def test_bad_batches_change_nothing(api, merchant, body, status, code):
    make_documents(merchant.participant)
    before = counts()
    response = api.post("/v1/fx/verification_batches", body, key=merchant.key)
    assert response.status_code == status
    if code:
        assert error_of(response)["code"] == code
    assert counts() == before


def test_another_merchants_upload_is_404_and_an_upload_of_contracts_400(api, merchant, tenants):
    theirs = upload_of(tenants["other_merchant"].participant)
    contracts = upload_of(merchant.participant, "contract")
    before = counts()
    response = api.post("/v1/fx/verification_batches", {"upload": theirs.pk}, key=merchant.key)
    assert response.status_code == 404
    assert error_of(response)["param"] == "upload"
    response = api.post("/v1/fx/verification_batches", {"upload": contracts.pk}, key=merchant.key)
    assert response.status_code == 400
    assert error_of(response)["code"] == "upload_kind_unsupported"
    assert counts() == before


# --- denied parties ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"reason": "x"}, "name"),
        ({"name": "A"}, "reason"),
        ({"name": " ", "reason": "x"}, "name"),
        ({"name": "A", "reason": "x", "country": "kr"}, "country"),
        ({"name": "A", "reason": "x", "country": "KOR"}, "country"),
        ({"name": "A", "reason": "x", "id_number": "1" * 65}, "id_number"),
        ({"name": "A\x00", "reason": "x"}, "name"),
    ],
)
def test_bad_denied_parties_change_nothing(api, tenants, body, param):
    before = counts()
    response = api.post("/v1/fx/denied_parties", body, key=tenants["operator"].key)
    assert response.status_code == 400
    assert error_of(response)["param"] == param
    assert counts() == before


def test_the_operator_lists_denied_parties(api, tenants):
    operator = tenants["operator"]
    api.post("/v1/fx/denied_parties", {"name": "A", "reason": "x"}, key=operator.key)
    listed = api.get("/v1/fx/denied_parties", key=operator.key).json()
    assert [p["name"] for p in listed["data"]] == ["A"]
    assert listed["data"][0]["id_number"] is None


def test_the_payload_is_json_ready(merchant):
    make_documents(merchant.participant)
    made, _ = verification_create(
        actor=principal_for(merchant.participant),
        payin_id=make_payin(merchant.participant).pk,
        order_no="ORD-1",
    )
    payload = verification_payload(made)
    assert payload["created_at"].endswith("Z")
    assert payload["review"]["reviewed_at"] is None


def test_roles_that_may_not_ask_are_refused_by_the_service(tenants):
    from hub import errors

    bank = principal_for(make_participant(role=Role.BANK))
    with pytest.raises(errors.PermissionDenied):
        verification_create(actor=bank, payin_id="pay_x", order_no="x")
    with pytest.raises(errors.PermissionDenied):
        verification_batch_create(actor=bank, upload_id=None)
