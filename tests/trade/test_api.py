"""Reading documents back: each merchant its own, the operator everyone's, per mode; lists page
and filter like every list; a replayed create files once."""

from __future__ import annotations

import pytest

from tests.conftest import error_of
from tests.factories import issue_key
from tests.factories.trade import (
    OrderFactory,
    PaymentRecordFactory,
    WaybillFactory,
    order_body,
)
from trade.models import Order


@pytest.fixture
def documents(tenants):
    mine = tenants["merchant"].participant
    theirs = tenants["other_merchant"].participant
    return {
        "mine": [OrderFactory.create(merchant=mine) for _ in range(3)],
        "theirs": [OrderFactory.create(merchant=theirs)],
        "live": [OrderFactory.create(merchant=mine, livemode=True)],
    }


def ids(response):
    assert response.status_code == 200, response.json()
    return [item["id"] for item in response.json()["data"]]


def test_a_merchant_lists_its_own_documents_of_its_mode(api, tenants, documents):
    listed = ids(api.get("/v1/trade/orders", key=tenants["merchant"].key))

    assert listed == [o.pk for o in reversed(documents["mine"])]


def test_a_live_key_sees_live_documents_only(api, tenants, documents):
    live_key = issue_key(tenants["merchant"].participant, livemode=True)

    assert ids(api.get("/v1/trade/orders", key=live_key)) == [documents["live"][0].pk]


def test_the_operator_sees_every_merchants_and_may_filter_by_merchant(api, tenants, documents):
    operator = tenants["operator"].key

    every = ids(api.get("/v1/trade/orders", key=operator))
    theirs = ids(
        api.get("/v1/trade/orders", key=operator, params={"merchant": tenants["other_merchant"].id})
    )

    assert set(every) == {o.pk for o in documents["mine"] + documents["theirs"]}
    assert theirs == [documents["theirs"][0].pk]


def test_another_merchants_document_is_404(api, tenants, documents):
    theirs = documents["theirs"][0].pk

    response = api.get(f"/v1/trade/orders/{theirs}", key=tenants["merchant"].key)

    assert (response.status_code, error_of(response)["code"]) == (404, "resource_missing")
    assert api.get(f"/v1/trade/orders/{theirs}", key=tenants["operator"].key).status_code == 200


def test_a_document_of_another_kind_is_not_found_under_this_kind(api, tenants):
    order = OrderFactory.create(merchant=tenants["merchant"].participant)

    response = api.get(f"/v1/trade/waybills/{order.pk}", key=tenants["merchant"].key)

    assert response.status_code == 404


def test_lists_page_with_cursors(api, tenants, documents):
    key = tenants["merchant"].key
    newest_first = [o.pk for o in reversed(documents["mine"])]

    first = api.get("/v1/trade/orders", key=key, params={"limit": 2}).json()
    rest = api.get(
        "/v1/trade/orders", key=key, params={"limit": 2, "starting_after": first["data"][-1]["id"]}
    ).json()

    assert ([d["id"] for d in first["data"]], first["has_more"]) == (newest_first[:2], True)
    assert ([d["id"] for d in rest["data"]], rest["has_more"]) == (newest_first[2:], False)
    assert first["url"] == "/v1/trade/orders"
    bad = api.get("/v1/trade/orders", key=key, params={"limit": 0})
    assert error_of(bad)["param"] == "limit"


def test_documents_filter_by_number_and_by_order(api, tenants):
    merchant = tenants["merchant"].participant
    record = PaymentRecordFactory.create(merchant=merchant)
    PaymentRecordFactory.create(merchant=merchant)
    waybill = WaybillFactory.create(merchant=merchant, order=record.order, order_no=record.order_no)
    key = tenants["merchant"].key

    by_order = ids(
        api.get("/v1/trade/payment_records", key=key, params={"order_no": record.order_no})
    )
    by_number = ids(
        api.get("/v1/trade/payment_records", key=key, params={"payment_no": record.payment_no})
    )
    waybills = ids(api.get("/v1/trade/waybills", key=key, params={"order_no": record.order_no}))

    assert by_order == by_number == [record.pk]
    assert waybills == [waybill.pk]


def test_a_list_is_a_fixed_number_of_queries(api, tenants, django_assert_max_num_queries):
    merchant = tenants["merchant"].participant
    for _ in range(20):
        PaymentRecordFactory.create(merchant=merchant)

    with django_assert_max_num_queries(3):
        response = api.get(
            "/v1/trade/payment_records", key=tenants["merchant"].key, params={"limit": 20}
        )

    assert len(response.json()["data"]) == 20


def test_a_replayed_create_files_once(api, tenants):
    key = tenants["merchant"].key

    first = api.post("/v1/trade/orders", order_body(), key=key, idempotency_key="ord-1")
    again = api.post("/v1/trade/orders", order_body(), key=key, idempotency_key="ord-1")

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Order.objects.count() == 1
