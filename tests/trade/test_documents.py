"""Filing one document at a time, through the API and the services: exactly what is stored and
shown, and every refusal changing nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from hub.models import Event
from tests.conftest import error_of, row_counts
from tests.factories import principal_for
from tests.factories.trade import (
    BODIES,
    DAY,
    ContractFactory,
    OrderFactory,
    contract_body,
    customs_declaration_body,
    invoice_body,
    order_body,
    payment_record_body,
    waybill_body,
)
from trade.models import (
    Contract,
    CustomsDeclaration,
    DocumentUpload,
    Invoice,
    Order,
    PaymentRecord,
    Waybill,
)
from trade.rules import CLOCK_SKEW, DocumentError
from trade.services import (
    contract_create,
    customs_declaration_create,
    invoice_create,
    order_create,
    payment_record_create,
    waybill_create,
)

MODELS = (Order, PaymentRecord, Waybill, CustomsDeclaration, Contract, Invoice, DocumentUpload)
PATHS = {
    "order": "/v1/trade/orders",
    "payment_record": "/v1/trade/payment_records",
    "waybill": "/v1/trade/waybills",
    "customs_declaration": "/v1/trade/customs_declarations",
    "contract": "/v1/trade/contracts",
    "invoice": "/v1/trade/invoices",
}


def state() -> dict[str, int]:
    """Rows of the core tables and of every trade table."""
    counts = row_counts()
    counts.update({model.__name__: model.objects.count() for model in MODELS})
    return counts


def file(api: Any, tenant: Any, kind: str, **over: Any) -> Any:
    return api.post(PATHS[kind], BODIES[kind](**over), key=tenant.key)


@pytest.fixture
def merchant(tenants):
    return tenants["merchant"]


@pytest.fixture
def filed_order(api, merchant):
    response = file(api, merchant, "order")
    assert response.status_code == 201, response.json()
    return response.json()


# --- what is stored and shown --------------------------------------------------------------------


def test_an_order_is_stored_in_minor_units_and_shown_in_decimal_strings(api, merchant):
    response = file(api, merchant, "order", metadata={"shop": "weihai-1"})

    assert response.status_code == 201, response.json()
    body = response.json()
    order = Order.objects.get()
    assert body == {
        "id": order.pk,
        "object": "order",
        "livemode": False,
        "merchant": merchant.id,
        "order_no": "ORD-2026-0001",
        "trade_type": "B2C",
        "customs_mode": "9610",
        "buyer_name": "Kim Minjun",
        "buyer_id": "kr-buyer-77",
        "buyer_country": "KR",
        "currency": "KRW",
        "amount": "150000",
        "goods_amount": "140000",
        "shipping_amount": "10000",
        "tax_amount": "0",
        "ordered_at": "2026-11-02T01:00:00Z",
        "upload": None,
        "metadata": {"shop": "weihai-1"},
        "created_at": body["created_at"],
    }
    assert order.pk.startswith("ord_")
    assert (order.amount, order.goods_amount, order.shipping_amount, order.tax_amount) == (
        150_000,
        140_000,
        10_000,
        0,
    )
    assert order.ordered_at == datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    event = Event.objects.get(type="order.created")
    assert (event.participant_id, event.data) == (merchant.id, body)


def test_a_cny_order_keeps_its_two_decimals_and_defaults_shipping_and_tax(api, merchant):
    body = order_body(currency="CNY", amount="1234.50", goods_amount="1234.5")
    del body["shipping_amount"], body["tax_amount"]

    response = api.post(PATHS["order"], body, key=merchant.key)

    assert response.status_code == 201, response.json()
    shown = response.json()
    assert (shown["amount"], shown["goods_amount"]) == ("1234.50", "1234.50")
    assert (shown["shipping_amount"], shown["tax_amount"]) == ("0.00", "0.00")
    assert Order.objects.get().amount == 1234_50


def test_a_payment_record_links_to_its_order_even_in_another_currency(api, merchant, filed_order):
    response = file(api, merchant, "payment_record", currency="CNY", amount="800.00")

    assert response.status_code == 201, response.json()
    body = response.json()
    record = PaymentRecord.objects.get()
    assert body == {
        "id": record.pk,
        "object": "payment_record",
        "livemode": False,
        "merchant": merchant.id,
        "payment_no": "PAY-2026-0001",
        "order_no": "ORD-2026-0001",
        "order": filed_order["id"],
        "payer_name": "Kim Minjun",
        "payer_id": "kr-payer-77",
        "payer_country": "KR",
        "institution_name": "Toss Payments",
        "currency": "CNY",
        "amount": "800.00",
        "paid_at": "2026-11-02T01:05:00Z",
        "upload": None,
        "metadata": {},
        "created_at": body["created_at"],
    }
    assert (record.order_id, record.amount) == (filed_order["id"], 800_00)
    assert Event.objects.filter(type="payment_record.created").count() == 1


def test_a_waybill_and_a_customs_declaration_link_to_the_order(api, merchant, filed_order):
    waybill = file(api, merchant, "waybill")
    declaration = file(api, merchant, "customs_declaration", customs_mode="1210")

    assert waybill.status_code == 201, waybill.json()
    assert declaration.status_code == 201, declaration.json()
    assert waybill.json()["order"] == declaration.json()["order"] == filed_order["id"]
    assert waybill.json()["shipped_at"] == "2026-11-03T01:00:00Z"
    assert waybill.json()["destination_country"] == "KR"
    # The declared mode may differ from the order's: verification judges it.
    assert declaration.json()["customs_mode"] == "1210"
    assert declaration.json()["waybill_no"] == "WB0000000001"
    assert declaration.json()["amount"] == "140000"
    stored = CustomsDeclaration.objects.get()
    assert (stored.order_id, stored.amount, stored.currency) == (filed_order["id"], 140_000, "KRW")


def test_a_contract_and_its_invoice(api, merchant, filed_order):
    contract = file(api, merchant, "contract")
    invoice = file(api, merchant, "invoice", order_no="ORD-2026-0001")

    assert contract.status_code == 201, contract.json()
    assert contract.json()["amount"] == "500000.00"
    assert invoice.status_code == 201, invoice.json()
    body = invoice.json()
    assert (body["contract_no"], body["contract"]) == ("CT-2026-01", contract.json()["id"])
    assert (body["order_no"], body["order"]) == ("ORD-2026-0001", filed_order["id"])
    stored = Invoice.objects.get()
    assert (stored.contract_id, stored.order_id, stored.amount) == (
        contract.json()["id"],
        filed_order["id"],
        100_000_00,
    )


def test_an_invoice_may_bill_an_order_alone(api, merchant, filed_order):
    response = file(api, merchant, "invoice", contract_no="", order_no="ORD-2026-0001")

    assert response.status_code == 201, response.json()
    assert (response.json()["contract"], response.json()["order"]) == (None, filed_order["id"])


def test_the_operator_files_for_a_merchant_it_names(api, tenants):
    response = api.post(
        PATHS["order"], order_body(merchant=tenants["merchant"].id), key=tenants["operator"].key
    )

    assert response.status_code == 201, response.json()
    assert Order.objects.get().merchant_id == tenants["merchant"].id
    assert Event.objects.get(type="order.created").participant_id == tenants["merchant"].id


def test_times_in_any_offset_are_stored_in_utc(api, merchant):
    response = file(api, merchant, "order", ordered_at="2026-11-01T23:30:00.5-05:00")

    assert response.status_code == 201, response.json()
    assert Order.objects.get().ordered_at == datetime(2026, 11, 2, 4, 30, 0, 500000, tzinfo=UTC)
    assert response.json()["ordered_at"] == "2026-11-02T04:30:00.500000Z"


def test_a_time_just_inside_the_clock_skew_allowance_is_accepted(api, merchant):
    soon = (timezone.now() + CLOCK_SKEW - timedelta(seconds=30)).isoformat()

    assert file(api, merchant, "order", ordered_at=soon).status_code == 201


def test_the_same_number_in_the_other_mode_or_for_another_merchant_is_another_document(
    api, tenants
):
    OrderFactory.create(merchant=tenants["other_merchant"].participant, order_no="ORD-2026-0001")
    OrderFactory.create(
        merchant=tenants["merchant"].participant, order_no="ORD-2026-0001", livemode=True
    )

    assert file(api, tenants["merchant"], "order").status_code == 201


# --- services, typed -----------------------------------------------------------------------------


def test_the_services_take_minor_units_and_aware_times(tenants):
    actor = principal_for(tenants["merchant"].participant)
    order = order_create(
        actor=actor,
        order_no="S-1",
        trade_type="B2B",
        customs_mode="9810",
        buyer_name="Busan Trading",
        buyer_id="brn-1",
        buyer_country="KR",
        currency="CNY",
        amount=1000_00,
        goods_amount=900_00,
        shipping_amount=50_00,
        tax_amount=50_00,
        ordered_at=DAY,
    )
    record = payment_record_create(
        actor=actor,
        payment_no="P-1",
        order_no="S-1",
        payer_name="Busan Trading",
        payer_id="brn-1",
        payer_country="KR",
        currency="CNY",
        amount=1000_00,
        paid_at=DAY,
    )
    waybill = waybill_create(
        actor=actor,
        waybill_no="W-1",
        order_no="S-1",
        carrier="EMS",
        consignee_name="Busan Trading",
        destination_country="KR",
        shipped_at=DAY,
    )
    declaration = customs_declaration_create(
        actor=actor,
        declaration_no="D-1",
        order_no="S-1",
        customs_mode="9810",
        currency="CNY",
        amount=900_00,
        declared_at=DAY,
    )
    contract = contract_create(
        actor=actor,
        contract_no="C-1",
        buyer_name="Busan Trading",
        buyer_country="KR",
        currency="CNY",
        amount=10_000_00,
        signed_at=DAY,
    )
    invoice = invoice_create(
        actor=actor,
        invoice_no="I-1",
        contract_no="C-1",
        currency="CNY",
        amount=1000_00,
        issued_at=DAY,
    )

    assert (order.amount, order.trade_type, order.customs_mode) == (1000_00, "B2B", "9810")
    assert record.order_id == waybill.order_id == declaration.order_id == order.pk
    assert (invoice.contract_id, invoice.order_id, invoice.contract_no) == (
        contract.pk,
        None,
        "C-1",
    )
    assert Event.objects.filter(type__endswith=".created").count() == 6


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        (0, "amount_too_small"),
        (-5, "amount_negative"),
        (10**17, "amount_too_large"),
        (2**53, "amount_too_large"),
    ],
)
def test_the_services_refuse_bad_minor_units(tenants, amount, code):
    actor = principal_for(tenants["merchant"].participant)
    before = state()

    with pytest.raises(DocumentError) as raised:
        contract_create(
            actor=actor,
            contract_no="C-1",
            buyer_name="Busan Trading",
            buyer_country="KR",
            currency="CNY",
            amount=amount,
            signed_at=DAY,
        )

    assert raised.value.code == code
    assert state() == before


def test_the_services_refuse_a_naive_time(tenants):
    actor = principal_for(tenants["merchant"].participant)

    with pytest.raises(DocumentError) as raised:
        contract_create(
            actor=actor,
            contract_no="C-1",
            buyer_name="Busan Trading",
            buyer_country="KR",
            currency="CNY",
            amount=1,
            signed_at=datetime(2026, 1, 1),  # noqa: DTZ001
        )

    assert raised.value.code == "timestamp_invalid"


# --- refusals ------------------------------------------------------------------------------------

REFUSALS = [
    # kind, fields, status, code, param
    ("order", {"amount": "150000.5"}, 400, "amount_precision", "amount"),
    (
        "order",
        {"currency": "CNY", "amount": "1.234", "goods_amount": "1.234"},
        400,
        "amount_precision",
        "amount",
    ),
    (
        "order",
        {"amount": "0", "goods_amount": "0", "shipping_amount": "0"},
        400,
        "amount_too_small",
        "amount",
    ),
    ("order", {"amount": "-150000"}, 400, "amount_negative", "amount"),
    ("order", {"amount": "1e5"}, 400, "amount_invalid", "amount"),
    ("order", {"amount": "NaN"}, 400, "amount_invalid", "amount"),
    ("order", {"shipping_amount": "-1"}, 400, "amount_negative", "shipping_amount"),
    ("order", {"amount": "150001"}, 400, "amount_mismatch", "amount"),
    ("order", {"tax_amount": "1"}, 400, "amount_mismatch", "amount"),
    ("order", {"currency": "XYZ"}, 400, "currency_unknown", "currency"),
    ("order", {"currency": "EUR"}, 400, "currency_unsupported", "currency"),
    ("order", {"currency": "krw"}, 400, "currency_invalid", "currency"),
    ("order", {"trade_type": "B2B"}, 400, "customs_mode_mismatch", "customs_mode"),
    ("order", {"customs_mode": "9710"}, 400, "customs_mode_mismatch", "customs_mode"),
    ("order", {"customs_mode": "9810"}, 400, "customs_mode_mismatch", "customs_mode"),
    (
        "order",
        {"trade_type": "B2B", "customs_mode": "1210"},
        400,
        "customs_mode_mismatch",
        "customs_mode",
    ),
    ("order", {"customs_mode": "0110"}, 400, "parameter_invalid", "customs_mode"),
    ("order", {"buyer_country": "kr"}, 400, "country_invalid", "buyer_country"),
    ("order", {"buyer_country": "KOR"}, 400, "country_invalid", "buyer_country"),
    ("order", {"buyer_country": "XK"}, 400, "country_invalid", "buyer_country"),
    ("order", {"order_no": "ORD 1"}, 400, "document_number_invalid", "order_no"),
    ("order", {"order_no": "=HYPERLINK(1)"}, 400, "document_number_invalid", "order_no"),
    ("order", {"order_no": "-1"}, 400, "document_number_invalid", "order_no"),
    ("order", {"order_no": "A" * 65}, 400, "document_number_invalid", "order_no"),
    ("order", {"order_no": "주문-1"}, 400, "document_number_invalid", "order_no"),
    ("order", {"buyer_name": "Kim\x07"}, 400, "parameter_invalid", "buyer_name"),
    ("order", {"buyer_name": "   "}, 400, "parameter_missing", "buyer_name"),
    ("order", {"buyer_name": "K" * 201}, 400, "parameter_invalid", "buyer_name"),
    ("order", {"ordered_at": "2099-01-01T00:00:00Z"}, 400, "timestamp_in_future", "ordered_at"),
    ("order", {"ordered_at": "2026-11-02T10:00:00"}, 400, "timestamp_invalid", "ordered_at"),
    ("order", {"ordered_at": "2026-11-02"}, 400, "timestamp_invalid", "ordered_at"),
    ("order", {"ordered_at": "2026-02-30T10:00:00Z"}, 400, "timestamp_invalid", "ordered_at"),
    ("order", {"ordered_at": "1999-12-31T23:59:59Z"}, 400, "timestamp_too_early", "ordered_at"),
    ("order", {"amount": 150000}, 400, "parameter_invalid", "amount"),
    ("order", {"unknown": "x"}, 400, "parameter_unknown", "unknown"),
    ("payment_record", {"order_no": "ORD-NOPE"}, 400, "order_missing", "order_no"),
    ("payment_record", {"amount": "0"}, 400, "amount_too_small", "amount"),
    (
        "payment_record",
        {"paid_at": "2099-01-01T00:00:00+09:00"},
        400,
        "timestamp_in_future",
        "paid_at",
    ),
    ("payment_record", {"payer_country": "Korea"}, 400, "country_invalid", "payer_country"),
    ("waybill", {"order_no": "ORD-NOPE"}, 400, "order_missing", "order_no"),
    ("waybill", {"destination_country": "ZZ"}, 400, "country_invalid", "destination_country"),
    ("waybill", {"waybill_no": "WB#1"}, 400, "document_number_invalid", "waybill_no"),
    ("customs_declaration", {"order_no": "ORD-NOPE"}, 400, "order_missing", "order_no"),
    ("customs_declaration", {"waybill_no": "WB 1"}, 400, "document_number_invalid", "waybill_no"),
    ("customs_declaration", {"amount": "1.5"}, 400, "amount_precision", "amount"),
    ("contract", {"amount": "100.001"}, 400, "amount_precision", "amount"),
    (
        "contract",
        {"signed_at": "2099-01-01T00:00:00+08:00"},
        400,
        "timestamp_in_future",
        "signed_at",
    ),
    ("invoice", {"contract_no": "CT-NOPE"}, 400, "contract_missing", "contract_no"),
    ("invoice", {"contract_no": "", "order_no": "ORD-NOPE"}, 400, "order_missing", "order_no"),
    ("invoice", {"contract_no": "", "order_no": ""}, 400, "parameter_missing", "contract_no"),
]


@pytest.mark.parametrize(
    ("kind", "fields", "status", "code", "param"),
    REFUSALS,
    ids=[f"{kind}-{code}-{param}-{n}" for n, (kind, _, _, code, param) in enumerate(REFUSALS)],
)
def test_a_refused_document_changes_nothing(api, merchant, kind, fields, status, code, param):
    OrderFactory.create(merchant=merchant.participant, order_no="ORD-2026-0001")
    ContractFactory.create(merchant=merchant.participant, contract_no="CT-2026-01")
    before = state()

    response = file(api, merchant, kind, **fields)

    assert response.status_code == status, response.json()
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param), error
    assert state() == before


@pytest.mark.parametrize("kind", list(BODIES))
def test_a_number_filed_before_is_409_and_changes_nothing(api, merchant, kind):
    OrderFactory.create(merchant=merchant.participant, order_no="ORD-2026-0001")
    ContractFactory.create(merchant=merchant.participant, contract_no="CT-2026-01")
    if kind != "order" and kind != "contract":
        assert file(api, merchant, kind).status_code == 201
    before = state()

    response = file(api, merchant, kind)

    assert response.status_code == 409
    error = error_of(response)
    number = {
        "order": "order_no",
        "payment_record": "payment_no",
        "waybill": "waybill_no",
        "customs_declaration": "declaration_no",
        "contract": "contract_no",
        "invoice": "invoice_no",
    }[kind]
    assert (error["code"], error["param"]) == ("document_exists", number)
    assert state() == before


def test_a_merchant_cannot_link_to_another_merchants_order(api, tenants):
    OrderFactory.create(merchant=tenants["other_merchant"].participant, order_no="ORD-2026-0001")
    before = state()

    response = file(api, tenants["merchant"], "payment_record")

    assert error_of(response)["code"] == "order_missing"
    assert state() == before


def test_a_merchant_cannot_file_for_another(api, tenants):
    before = state()

    response = file(api, tenants["merchant"], "order", merchant=tenants["other_merchant"].id)

    assert response.status_code == 400
    assert error_of(response)["param"] == "merchant"
    assert state() == before


@pytest.mark.parametrize(
    ("merchant", "code"),
    [(None, "parameter_missing"), ("par_nope", "merchant_missing"), ("bank", "merchant_missing")],
)
def test_the_operator_must_name_a_merchant(api, tenants, merchant, code):
    body = order_body()
    if merchant is not None:
        body["merchant"] = tenants[merchant].id if merchant in tenants else merchant
    before = state()

    response = api.post(PATHS["order"], body, key=tenants["operator"].key)

    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["param"]) == (code, "merchant")
    assert state() == before


def test_a_suspended_merchant_files_nothing(api, tenants):
    merchant = tenants["merchant"].participant
    merchant.status = "suspended"
    merchant.save(update_fields=["status"])
    before = state()

    response = api.post(
        PATHS["order"], order_body(merchant=merchant.pk), key=tenants["operator"].key
    )

    assert response.status_code == 403
    assert state() == before


def test_a_missing_field_is_named(api, merchant):
    body = contract_body()
    del body["signed_at"]
    before = state()

    response = api.post(PATHS["contract"], body, key=merchant.key)

    assert (error_of(response)["code"], error_of(response)["param"]) == (
        "parameter_missing",
        "signed_at",
    )
    assert state() == before


def test_bodies_of_every_kind_build(api, merchant):
    """The fixtures' bodies file in order, each 201 (a sanity check of the fixtures)."""
    for kind, body in (
        ("order", order_body()),
        ("contract", contract_body()),
        ("payment_record", payment_record_body()),
        ("waybill", waybill_body()),
        ("customs_declaration", customs_declaration_body()),
        ("invoice", invoice_body()),
    ):
        response = api.post(PATHS[kind], body, key=merchant.key)
        assert response.status_code == 201, (kind, response.json())


def test_the_largest_document_amount_is_one_below_2_to_the_53(api, tenants):
    """Verification's vectorised pass holds amounts in float columns, exact below 2**53."""
    merchant = tenants["merchant"]
    largest = "90071992547409.91"  # 2**53 - 1 minor units of CNY
    body = {
        "contract_no": "C-BIG",
        "buyer_name": "Busan Trading",
        "buyer_country": "KR",
        "currency": "CNY",
        "amount": largest,
        "signed_at": "2026-10-01T09:00:00+08:00",
    }

    filed = api.post("/v1/trade/contracts", body, key=merchant.key)
    over = api.post(
        "/v1/trade/contracts",
        {**body, "contract_no": "C-BIGGER", "amount": "90071992547409.92"},
        key=merchant.key,
    )

    assert (filed.status_code, filed.json()["amount"]) == (201, largest)
    assert (over.status_code, error_of(over)["code"], error_of(over)["param"]) == (
        400,
        "amount_too_large",
        "amount",
    )
