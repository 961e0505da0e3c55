"""Trade documents: stored straight in the database (factories), as the API takes them (bodies),
and as bulk files (CSV or JSON lines) of any size."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import factory

from hub.models import Participant, Role
from tests.factories.core import ParticipantFactory
from trade.models import (
    Contract,
    CustomsDeclaration,
    Invoice,
    Order,
    PaymentRecord,
    Waybill,
)
from trade.rules import KINDS

# A fixed past day, so that no document is ever "in the future".
DAY = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


class _DocumentFactory(factory.django.DjangoModelFactory):
    livemode = False
    merchant = factory.SubFactory(ParticipantFactory, role=Role.MERCHANT)
    metadata = factory.LazyFunction(dict)


class OrderFactory(_DocumentFactory):
    class Meta:
        model = Order

    order_no = factory.Sequence(lambda n: f"ORD-{n:06d}")
    trade_type = "B2C"
    customs_mode = "9610"
    buyer_name = "Kim Minjun"
    buyer_id = factory.Sequence(lambda n: f"kr-buyer-{n}")
    buyer_country = "KR"
    currency = "KRW"
    amount = 150_000
    goods_amount = 140_000
    shipping_amount = 10_000
    tax_amount = 0
    ordered_at = DAY


class PaymentRecordFactory(_DocumentFactory):
    class Meta:
        model = PaymentRecord

    order = factory.SubFactory(
        OrderFactory, merchant=factory.SelfAttribute("..merchant"), livemode=False
    )
    payment_no = factory.Sequence(lambda n: f"PAY-{n:06d}")
    order_no = factory.SelfAttribute("order.order_no")
    payer_name = "Kim Minjun"
    payer_id = "kr-payer-1"
    payer_country = "KR"
    institution_name = "Toss Payments"
    currency = factory.SelfAttribute("order.currency")
    amount = factory.SelfAttribute("order.amount")
    paid_at = DAY + timedelta(minutes=5)


class WaybillFactory(_DocumentFactory):
    class Meta:
        model = Waybill

    order = factory.SubFactory(
        OrderFactory, merchant=factory.SelfAttribute("..merchant"), livemode=False
    )
    waybill_no = factory.Sequence(lambda n: f"WB{n:010d}")
    order_no = factory.SelfAttribute("order.order_no")
    carrier = "CJ Logistics"
    consignee_name = "Kim Minjun"
    destination_country = "KR"
    shipped_at = DAY + timedelta(days=1)


class CustomsDeclarationFactory(_DocumentFactory):
    class Meta:
        model = CustomsDeclaration

    order = factory.SubFactory(
        OrderFactory, merchant=factory.SelfAttribute("..merchant"), livemode=False
    )
    declaration_no = factory.Sequence(lambda n: f"CUS{n:012d}")
    order_no = factory.SelfAttribute("order.order_no")
    waybill_no = ""
    customs_mode = factory.SelfAttribute("order.customs_mode")
    currency = factory.SelfAttribute("order.currency")
    amount = factory.SelfAttribute("order.goods_amount")
    declared_at = DAY + timedelta(hours=12)


class ContractFactory(_DocumentFactory):
    class Meta:
        model = Contract

    contract_no = factory.Sequence(lambda n: f"CT-{n:05d}")
    buyer_name = "Busan Trading Co., Ltd."
    buyer_country = "KR"
    currency = "CNY"
    amount = 500_000_00
    signed_at = DAY - timedelta(days=30)


class InvoiceFactory(_DocumentFactory):
    class Meta:
        model = Invoice

    contract = factory.SubFactory(
        ContractFactory, merchant=factory.SelfAttribute("..merchant"), livemode=False
    )
    order = None
    invoice_no = factory.Sequence(lambda n: f"INV-{n:06d}")
    contract_no = factory.SelfAttribute("contract.contract_no")
    order_no = ""
    currency = "CNY"
    amount = 100_000_00
    issued_at = DAY


def merchant_of(participant: Participant) -> Participant:
    """``participant`` if it is a merchant, else a new merchant (for makers called per role)."""
    if participant.role == Role.MERCHANT:
        return participant
    made: Participant = ParticipantFactory.create(role=Role.MERCHANT)
    return made


# --- as the API takes them -----------------------------------------------------------------------

WHEN = "2026-11-02T10:00:00+09:00"


def order_body(**over: Any) -> dict[str, Any]:
    body = {
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
        "ordered_at": WHEN,
    }
    body.update(over)
    return body


def payment_record_body(**over: Any) -> dict[str, Any]:
    body = {
        "payment_no": "PAY-2026-0001",
        "order_no": "ORD-2026-0001",
        "payer_name": "Kim Minjun",
        "payer_id": "kr-payer-77",
        "payer_country": "KR",
        "institution_name": "Toss Payments",
        "currency": "KRW",
        "amount": "150000",
        "paid_at": "2026-11-02T10:05:00+09:00",
    }
    body.update(over)
    return body


def waybill_body(**over: Any) -> dict[str, Any]:
    body = {
        "waybill_no": "WB0000000001",
        "order_no": "ORD-2026-0001",
        "carrier": "CJ Logistics",
        "consignee_name": "Kim Minjun",
        "destination_country": "KR",
        "shipped_at": "2026-11-03T09:00:00+08:00",
    }
    body.update(over)
    return body


def customs_declaration_body(**over: Any) -> dict[str, Any]:
    body = {
        "declaration_no": "CUS000000000001",
        "order_no": "ORD-2026-0001",
        "waybill_no": "WB0000000001",
        "customs_mode": "9610",
        "currency": "KRW",
        "amount": "140000",
        "declared_at": "2026-11-02T18:00:00+08:00",
    }
    body.update(over)
    return body


def contract_body(**over: Any) -> dict[str, Any]:
    body = {
        "contract_no": "CT-2026-01",
        "buyer_name": "Busan Trading Co., Ltd.",
        "buyer_country": "KR",
        "currency": "CNY",
        "amount": "500000.00",
        "signed_at": "2026-10-01T09:00:00+08:00",
    }
    body.update(over)
    return body


def invoice_body(**over: Any) -> dict[str, Any]:
    body = {
        "invoice_no": "INV-2026-0001",
        "contract_no": "CT-2026-01",
        "order_no": "",
        "currency": "CNY",
        "amount": "100000.00",
        "issued_at": "2026-11-02T09:00:00+08:00",
    }
    body.update(over)
    return body


BODIES: dict[str, Callable[..., dict[str, Any]]] = {
    "order": order_body,
    "payment_record": payment_record_body,
    "waybill": waybill_body,
    "customs_declaration": customs_declaration_body,
    "contract": contract_body,
    "invoice": invoice_body,
}


# --- bulk files ----------------------------------------------------------------------------------


def order_rows(count: int, *, start: int = 0, prefix: str = "ORD") -> Iterable[dict[str, str]]:
    """``count`` valid order rows, numbered from ``start``."""
    for n in range(start, start + count):
        goods = 10_000 + n % 90_000
        yield {
            "order_no": f"{prefix}-{n:07d}",
            "trade_type": "B2C",
            "customs_mode": "9610" if n % 2 else "1210",
            "buyer_name": f"Buyer {n}",
            "buyer_id": f"kr-{n}",
            "buyer_country": "KR",
            "currency": "KRW",
            "amount": str(goods + 3_000),
            "goods_amount": str(goods),
            "shipping_amount": "3000",
            "tax_amount": "0",
            "ordered_at": f"2026-11-0{1 + n % 9}T{n % 24:02d}:{n % 60:02d}:00+09:00",
        }


def payment_rows(order_nos: Iterable[str], *, prefix: str = "PAY") -> Iterable[dict[str, str]]:
    for n, order_no in enumerate(order_nos):
        yield payment_record_body(payment_no=f"{prefix}-{n:07d}", order_no=order_no, amount="13000")


def as_csv(kind: str, rows: Iterable[dict[str, str]], *, columns: list[str] | None = None) -> bytes:
    names = columns or list(KINDS[kind].fields)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def as_jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
