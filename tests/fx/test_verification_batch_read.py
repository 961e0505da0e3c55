"""How a batch reads the documents and stores its verifications: the fast paths give exactly what
the plain ones give (times to the microsecond, text with any character, missing documents), and
the verification table keeps only the indexes and foreign keys its lookups and integrity need."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from django.db import connection

import fx.verification as service
from fx.models_verification import Verification
from fx.verification import documents_frame, verification_batch_create
from tests.conftest import Tenant, needs_postgres
from tests.factories import principal_for
from tests.factories.trade import CustomsDeclarationFactory, PaymentRecordFactory
from tests.fx.access_verification import make_documents
from trade.models import Order, PaymentRecord

pytestmark = pytest.mark.django_db

AT = datetime(2026, 11, 2, 1, 2, 3, 456_789, tzinfo=UTC)


@pytest.fixture
def merchant(tenants: dict[str, Tenant]) -> Tenant:
    return tenants["merchant"]


def awkward_orders(merchant: Tenant) -> list[Order]:
    """Orders whose text holds COPY's special characters and the packed read's separators,
    whose times have microseconds, with a second payment record filed, a waybill missing and a
    declaration on one of them."""
    participant = merchant.participant
    tabbed = make_documents(
        participant,
        order_no="A\tB\\C",
        ordered_at=AT,
        payment={"paid_at": AT + timedelta(microseconds=1)},
        waybill={"shipped_at": AT + timedelta(days=1, microseconds=7)},
    )
    PaymentRecordFactory.create(
        merchant=participant,
        order=tabbed,
        payer_id=tabbed.buyer_id,
        payer_name=tabbed.buyer_name,
        amount=1,
        paid_at=AT,
    )
    separated = make_documents(
        participant,
        order_no="D\x1fE",
        buyer_name="Kim\x1eMinjun NA",
        with_waybill=False,
        ordered_at=AT - timedelta(microseconds=1),
    )
    CustomsDeclarationFactory.create(
        merchant=participant, order=separated, declared_at=AT + timedelta(hours=1)
    )
    plain = make_documents(participant, order_no="F\nG", with_payment=False)
    return [tabbed, separated, plain]


def first_payment(order: Order) -> str:
    """The id of the order's first filed payment record."""
    return str(
        PaymentRecord.objects.filter(order=order).order_by("pk").values_list("pk", flat=True)[0]
    )


def read_plainly(monkeypatch: pytest.MonkeyPatch, orders: object) -> pd.DataFrame:
    with monkeypatch.context() as patched:
        patched.setattr(service, "_read_packed", lambda *args, **kwargs: None)
        return documents_frame(orders)  # type: ignore[arg-type]


def assert_same(fast: pd.DataFrame, plain: pd.DataFrame) -> None:
    """The same values; times may differ in unit only (the rules read them as nanoseconds)."""
    for frame in (fast, plain):
        for name in ("ordered_at", "paid_at", "shipped_at", "declared_at"):
            frame[name] = frame[name].astype("datetime64[ns, UTC]")
    pd.testing.assert_frame_equal(fast, plain)


def test_the_fast_read_gives_what_the_plain_read_gives(merchant, monkeypatch):
    made = awkward_orders(merchant)
    orders = Order.objects.filter(pk__in=[order.pk for order in made])
    fast = documents_frame(orders)
    assert_same(fast, read_plainly(monkeypatch, orders))
    by_no = fast.set_index("order_no")
    assert by_no.loc["A\tB\\C", "ordered_at"] == pd.Timestamp(AT)
    assert by_no.loc["A\tB\\C", "paid_at"] == pd.Timestamp(AT + timedelta(microseconds=1))
    assert by_no.loc["A\tB\\C", "payment_id"] == first_payment(made[0])
    assert by_no.loc["D\x1fE", "buyer_name"] == "Kim\x1eMinjun NA"
    assert pd.isna(by_no.loc["D\x1fE", "waybill_id"])
    assert pd.isna(by_no.loc["D\x1fE", "shipped_at"])
    assert pd.isna(by_no.loc["F\nG", "payment_id"])
    assert pd.isna(by_no.loc["F\nG", "payment_amount"])


def test_a_read_of_orders_with_one_document_each_is_as_plain(merchant, monkeypatch):
    for n in range(3):
        make_documents(merchant.participant, order_no=f"N-{n}", ordered_at=AT)
    orders = Order.objects.filter(merchant=merchant.participant)
    assert_same(documents_frame(orders), read_plainly(monkeypatch, orders))


def test_nothing_to_read_is_an_empty_frame(merchant, monkeypatch):
    orders = Order.objects.filter(merchant=merchant.participant)
    fast = documents_frame(orders)
    assert fast.empty
    assert list(fast.columns) == list(read_plainly(monkeypatch, orders).columns)


def test_a_batch_stores_every_character_and_document_as_read(merchant):
    made = awkward_orders(merchant)
    batch = verification_batch_create(actor=principal_for(merchant.participant), upload_id=None)
    stored = {v.order_no: v for v in Verification.objects.filter(batch=batch).order_by("order_no")}
    assert sorted(stored) == sorted(order.order_no for order in made)
    tabbed, separated, plain = (stored[order.order_no] for order in made)
    assert tabbed.payment_record_id == first_payment(made[0])
    assert tabbed.customs_declaration_id is None
    assert separated.waybill_id is None
    assert separated.customs_declaration_id is not None
    assert (plain.payment_record_id, plain.amount) == (None, made[2].amount)
    assert plain.reasons == ["payment_record_missing"]
    assert all(v.review == "none" and v.subject == "order" for v in stored.values())


@needs_postgres
def test_the_verification_table_keeps_only_the_indexes_and_keys_it_needs():
    with connection.cursor() as cursor:
        indexes = {
            name: definition
            for name, definition in connection.introspection.get_constraints(
                cursor, Verification._meta.db_table
            ).items()
            if definition["index"] or definition["unique"] or definition["foreign_key"]
        }
    foreign = sorted(
        column for d in indexes.values() if d["foreign_key"] for column in d["columns"]
    )
    # The order's documents are held through the order (see fx/models_verification.py).
    assert foreign == [
        "batch_id",
        "merchant_id",
        "order_id",
        "payin_id",
        "payout_id",
        "reviewed_by_id",
    ]
    assert not [name for name in indexes if name.endswith("_like")]
    assert {
        "fx_verification_list",
        "fx_verification_pending",
        "fx_verification_batch",
        "fx_verification_backing",
        "fx_verification_reviewer",
    } <= set(indexes)
    assert "fx_verification_queue" not in indexes
    assert "fx_verification_order" not in indexes
