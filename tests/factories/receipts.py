"""Settled, verified payins with their trade documents: what receipts are issued from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from fx.models import Verification
from hub.models import AdapterConnection
from settlement.models import Account
from settlement.models_payins import Payin
from settlement.runs import cutoff_of, last_closed_day, settlement_run_execute, settlement_run_start
from tests.conftest import Tenant
from tests.factories.payins import paid_payins
from tests.support.adapters import connect
from trade.models import Order, PaymentRecord, Waybill


@dataclass
class Settled:
    payins: list[Payin]
    verifications: list[Verification]


def settle(
    tenants: dict[str, Tenant],
    *,
    amounts: list[int],
    reviews: list[str] | None = None,
    outcomes: list[str] | None = None,
    prefix: str = "KR",
    run: bool = True,
    days_ago: int = 1,
) -> Settled:
    """Paid payins of the merchant in KRW with their order, payment record and waybill, a
    verification each, and the institution's run for the business day ``days_ago`` days back
    (1: the last closed one) executed. Settle again on a later day: a day's run runs once."""
    merchant = tenants["merchant"].participant
    institution = tenants["payment_institution"].participant
    conn = AdapterConnection.objects.filter(participant=institution).first() or connect(
        operator=tenants["operator"].participant,
        participant=institution,
        adapter="stripe_like",
        base_url="http://127.0.0.1:9",
    )
    account = Account.objects.filter(
        owner=merchant, currency="KRW"
    ).first() or Account.objects.create(
        livemode=False, owner=merchant, currency="KRW", kind=Account.Kind.MERCHANT_SETTLEMENT
    )
    day = last_closed_day("Asia/Seoul", timezone.now()) - timedelta(days=days_ago - 1)
    inside = cutoff_of(day, "Asia/Seoul") - timedelta(hours=2)
    payins = paid_payins(
        connection=conn, account=account, amounts=amounts, succeeded_at=inside, prefix=prefix
    )
    verifications = []
    for n, payin in enumerate(payins):
        order_no = payin.reference
        order = Order.objects.create(
            livemode=False,
            merchant=merchant,
            order_no=order_no,
            trade_type="B2C",
            customs_mode="9610",
            buyer_name="Kim Minji",
            buyer_id=f"kr-{n}",
            buyer_country="KR",
            currency="KRW",
            amount=payin.amount,
            goods_amount=payin.amount,
            ordered_at=inside - timedelta(hours=3),
        )
        record = PaymentRecord.objects.create(
            livemode=False,
            merchant=merchant,
            payment_no=f"P-{order_no}",
            order=order,
            order_no=order_no,
            payer_name="Kim Minji",
            payer_id=f"kr-{n}",
            payer_country="KR",
            currency="KRW",
            amount=payin.amount,
            paid_at=inside - timedelta(hours=2),
        )
        waybill = Waybill.objects.create(
            livemode=False,
            merchant=merchant,
            waybill_no=f"W-{order_no}",
            order=order,
            order_no=order_no,
            carrier="Weihai Express",
            consignee_name="Kim Minji",
            destination_country="KR",
            shipped_at=inside - timedelta(hours=1),
        )
        review = (reviews or [])[n] if reviews else "none"
        outcome = (
            (outcomes or [])[n] if outcomes else ("review" if review != "none" else "verified")
        )
        verifications.append(
            Verification.objects.create(
                livemode=False,
                merchant=merchant,
                subject="payin",
                payin=payin,
                order_no=order_no,
                order=order,
                payment_record=record,
                waybill=waybill,
                currency="KRW",
                amount=payin.amount,
                outcome=outcome,
                reasons=["payer_differs"] if outcome == "review" else [],
                review=review,
            )
        )
    if run:
        started, _ = settlement_run_start(
            institution_id=tenants["payment_institution"].id,
            currency="KRW",
            business_date=day,
            livemode=False,
        )
        assert settlement_run_execute(run_id=started.pk) == "completed"
    for payin in payins:
        payin.refresh_from_db()
    return Settled(payins, verifications)
