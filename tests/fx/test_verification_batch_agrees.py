"""A batch pass and one-by-one verifications agree row by row, on any mix of documents; and two
threads verifying one payin at once make one verification (PostgreSQL)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fx.models_verification import DeniedParty, Verification
from fx.verification import verification_batch_create, verification_create
from hub.models import Event, Role
from tests.conftest import needs_postgres
from tests.factories import make_participant, principal_for
from tests.fx.access_verification import make_documents, make_payin, when

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Spec:
    """One order and how its documents stray from agreeing."""

    trade_type: str
    customs_mode: str
    amount: int
    paid_delta: int  # payment record's amount minus the order's
    payer: str  # "buyer", "other", "denied"
    paid_days: float  # after the order
    shipped_days: float
    payment: bool
    waybill: bool
    customs: str  # "none", "same", "other_mode", "other_value"
    prior: int  # what the payer paid before, this year, at another merchant


specs = st.builds(
    Spec,
    trade_type=st.sampled_from(["B2C", "B2C", "B2B"]),
    customs_mode=st.sampled_from(["9610", "9710", "9810", "1210"]),
    amount=st.sampled_from([10_000, 150_000, 1_000_000, 1_000_001]),
    paid_delta=st.sampled_from([0, 0, 1, -1, 1_500, 1_501, -10_000, -20_000]),
    payer=st.sampled_from(["buyer", "buyer", "other", "denied"]),
    paid_days=st.sampled_from([0, 0.1, -0.1, 2]),
    shipped_days=st.sampled_from([0, 1, -1]),
    payment=st.booleans() | st.just(True),
    waybill=st.booleans() | st.just(True),
    customs=st.sampled_from(["none", "same", "other_mode", "other_value"]),
    prior=st.sampled_from([0, 0, 4_200_000, 4_200_001, 5_200_000]),
)

_serial = iter(range(10**9))


def file_documents(merchant: Any, other: Any, spec: Spec, n: int, tag: int) -> str:
    order_no = f"P{tag}-{n}"
    payer_id = f"payer-{tag}-{n}"
    shipping = min(10_000, spec.amount // 2)
    ordered = when(-20)
    if spec.prior:
        make_documents(
            other,
            order_no=f"PRIOR-{tag}-{n}",
            amount=spec.prior,
            goods_amount=spec.prior,
            shipping_amount=0,
            ordered_at=ordered - timedelta(days=1),
            buyer_id=payer_id,
            payment={"payer_id": payer_id, "amount": spec.prior, "paid_at": ordered},
        )
    payer = {"buyer": payer_id, "other": f"someone-{tag}-{n}", "denied": f"denied-{tag}"}
    changes: dict[str, dict[str, Any]] = {
        "none": {},
        "same": {},
        "other_mode": {"customs_mode": "9610" if spec.customs_mode != "9610" else "9710"},
        "other_value": {"amount": spec.amount * 2},
    }
    customs = changes[spec.customs]
    make_documents(
        merchant,
        order_no=order_no,
        trade_type=spec.trade_type,
        customs_mode=spec.customs_mode,
        amount=spec.amount,
        goods_amount=spec.amount - shipping,
        shipping_amount=shipping,
        ordered_at=ordered,
        buyer_id=payer_id,
        payment={
            "payer_id": payer[spec.payer],
            "amount": max(1, spec.amount + spec.paid_delta),
            "paid_at": ordered + timedelta(days=spec.paid_days),
        },
        waybill={"shipped_at": ordered + timedelta(days=spec.shipped_days)},
        customs=customs,
        with_payment=spec.payment,
        with_waybill=spec.waybill,
        with_customs=spec.customs != "none",
    )
    return order_no


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mix=st.lists(specs, min_size=1, max_size=8))
def test_a_batch_agrees_with_single_verifications(mix):
    # Each example starts from the same database; the services' atomic blocks are durable, so
    # the example is rolled back to a bare savepoint rather than wrapped in another block.
    savepoint = transaction.savepoint()
    try:
        run(mix)
    finally:
        transaction.savepoint_rollback(savepoint)


def run(mix: list[Spec]) -> None:
    tag = next(_serial)
    merchant = make_participant(role=Role.MERCHANT)
    other = make_participant(role=Role.MERCHANT)
    DeniedParty.objects.create(livemode=False, name="x", id_number=f"denied-{tag}", reason="x")
    order_nos = [file_documents(merchant, other, spec, n, tag) for n, spec in enumerate(mix)]
    actor = principal_for(merchant)

    batch = verification_batch_create(actor=actor, upload_id=None)

    assert batch.orders_count == len(mix)
    in_batch = {v.order_no: v for v in Verification.objects.filter(batch=batch)}
    for order_no in order_nos:
        checked = in_batch[order_no]
        # The movement a batch checks: the payment record's (the order's where none).
        payin = make_payin(merchant, amount=checked.amount, currency=checked.currency)
        single, created = verification_create(actor=actor, payin_id=payin.pk, order_no=order_no)
        assert created
        assert (single.outcome, single.reasons) == (checked.outcome, checked.reasons), order_no
        event(f"outcome: {single.outcome}")
        assert (single.order_id, single.payment_record_id, single.waybill_id) == (
            checked.order_id,
            checked.payment_record_id,
            checked.waybill_id,
        )
        assert single.customs_declaration_id == checked.customs_declaration_id


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_threads_verifying_one_payin_make_one_verification(tenants):
    merchant = tenants["merchant"].participant
    make_documents(merchant)
    payin = make_payin(merchant)
    actor = principal_for(merchant)
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def verify_once() -> None:
        try:
            barrier.wait()
            results.append(verification_create(actor=actor, payin_id=payin.pk, order_no="ORD-1"))
        except Exception as exc:  # pragma: no cover - reported below
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=verify_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(isinstance(r, tuple) for r in results), results
    assert sorted(created for _, created in results) == [False, True]
    assert len({v.pk for v, _ in results}) == 1
    assert Verification.objects.filter(payin=payin).count() == 1
    assert Event.objects.filter(type="verification.created").count() == 1


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_payins_on_one_order_at_once_see_each_other(tenants):
    merchant = tenants["merchant"].participant
    make_documents(merchant)
    payins = [make_payin(merchant), make_payin(merchant)]
    actor = principal_for(merchant)
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def verify(payin_id: str) -> None:
        try:
            barrier.wait()
            results.append(verification_create(actor=actor, payin_id=payin_id, order_no="ORD-1"))
        except Exception as exc:  # pragma: no cover - reported below
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=verify, args=(p.pk,)) for p in payins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    reasons = sorted(tuple(v.reasons) for v, _ in results)
    assert reasons == [(), ("document_reused",)]
