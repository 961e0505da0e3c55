"""Rows of the access matrix (tests/hub/test_permissions.py) for this area's endpoints, and the
makers of the objects their URLs name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.access import Row
from tests.conftest import Tenant
from tests.factories.trade import (
    BODIES,
    ContractFactory,
    CustomsDeclarationFactory,
    InvoiceFactory,
    OrderFactory,
    PaymentRecordFactory,
    WaybillFactory,
    merchant_of,
)
from trade.models import DocumentUpload

TRADERS = frozenset({"merchant", "operator"})
NOTHING: dict[str, Any] = {}


def _body(kind: str) -> Callable[[dict[str, Tenant]], dict[str, Any]]:
    """A valid document for the merchant tenant (the operator names it; the merchant may)."""

    def body(tenants: dict[str, Tenant]) -> dict[str, Any]:
        merchant = tenants["merchant"].participant
        if kind in ("payment_record", "waybill", "customs_declaration"):
            OrderFactory.create(merchant=merchant, order_no="ORD-2026-0001")
        if kind == "invoice":
            ContractFactory.create(merchant=merchant, contract_no="CT-2026-01")
        return {**BODIES[kind](), "merchant": merchant.pk}

    return body


def _upload(tenant: Tenant) -> str:
    upload = DocumentUpload.objects.create(
        livemode=False,
        merchant=merchant_of(tenant.participant),
        kind="order",
        format="csv",
        mode="partial",
        status="rejected",
        sha256="0" * 64,
        rows_total=1,
        rows_rejected=1,
        errors=[{"row": 2, "code": "amount_mismatch", "param": "amount", "message": "x"}],
    )
    return upload.pk


_PLURALS = {
    "order": "orders",
    "payment_record": "payment_records",
    "waybill": "waybills",
    "customs_declaration": "customs_declarations",
    "contract": "contracts",
    "invoice": "invoices",
}

ROWS: list[Row] = []
for _kind, _plural in _PLURALS.items():
    ROWS += [
        Row("GET", f"trade_{_plural}", TRADERS),
        Row("POST", f"trade_{_plural}", TRADERS, 201, None, _body(_kind)),
        Row("GET", f"trade_{_kind}", TRADERS, 200, f"trade_{_kind}", echo=True),
    ]
ROWS += [
    Row("GET", "trade_uploads", TRADERS),
    # JSON is not a file: 415 for the callers who may upload.
    Row("POST", "trade_uploads", TRADERS, 415, None, NOTHING),
    Row("GET", "trade_upload", TRADERS, 200, "document_upload", echo=True),
]

_FACTORIES: dict[str, Any] = {
    "order": OrderFactory,
    "payment_record": PaymentRecordFactory,
    "waybill": WaybillFactory,
    "customs_declaration": CustomsDeclarationFactory,
    "contract": ContractFactory,
    "invoice": InvoiceFactory,
}


def _maker(kind: str) -> Callable[[Tenant], str]:
    def make(tenant: Tenant) -> str:
        document = _FACTORIES[kind].create(merchant=merchant_of(tenant.participant))
        return str(document.pk)

    return make


MAKERS: dict[str, Callable[[Tenant], str]] = {
    **{f"trade_{kind}": _maker(kind) for kind in _PLURALS},
    "document_upload": _upload,
}
