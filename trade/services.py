"""Filing trade documents one at a time.

Each ``<kind>_create`` checks the document on its own (``trade.rules``), then against what the
merchant filed before: its number must be new for the merchant (per mode), and the documents it
names must be stored (a payment record, waybill or customs declaration names an order; an
invoice a contract, an order or both). It is stored with one ``<kind>.created`` event in the same
transaction. The operator files on a merchant's behalf by naming it (``merchant_id``); a
merchant files its own. Bulk files go through ``trade.uploads`` with the same checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from hub import errors
from hub.models import Participant, Role
from hub.money import format_amount
from hub.principal import Principal
from hub.services.events import event_emit, register_event_types
from trade.models import (
    Contract,
    CustomsDeclaration,
    Invoice,
    Order,
    PaymentRecord,
    Waybill,
    _Document,
)
from trade.rules import KIND_OF_MODEL, KINDS, Kind, Values, document_clean

register_event_types(*(f"{kind}.created" for kind in KINDS), "document_upload.created")


# --- payloads ------------------------------------------------------------------------------------


def stamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


_AMOUNTS = frozenset({"amount", "goods_amount", "shipping_amount", "tax_amount"})
_TIMES = frozenset({"ordered_at", "paid_at", "shipped_at", "declared_at", "signed_at", "issued_at"})
# The documents a document links to, shown by id beside the number it was filed with.
_LINK_IDS = {"order_no": "order_id", "contract_no": "contract_id"}


def document_payload(document: _Document) -> dict[str, Any]:
    """A document as the API shows it (and as its event carries it): the fields it was filed
    with, amounts as decimal strings in the currency's precision, times in UTC."""
    kind = KIND_OF_MODEL[type(document)]
    body: dict[str, Any] = {
        "id": document.pk,
        "object": kind.name,
        "livemode": document.livemode,
        "merchant": document.merchant_id,
    }
    currency = getattr(document, "currency", "")
    for name in kind.fields:
        value = getattr(document, name)
        if name in _AMOUNTS:
            body[name] = format_amount(value, currency)
        elif name in _TIMES:
            body[name] = stamp(value)
        else:
            body[name] = value
        if name in _LINK_IDS and hasattr(document, _LINK_IDS[name]):
            body[name.removesuffix("_no")] = getattr(document, _LINK_IDS[name])
    body["upload"] = document.upload_id
    body["metadata"] = document.metadata
    body["created_at"] = stamp(document.created_at)
    return body


# --- who files -----------------------------------------------------------------------------------


def merchant_for(*, actor: Principal, merchant_id: str | None) -> Participant:
    """The merchant whose documents these are: the caller, or the one the operator names."""
    if actor.role == Role.MERCHANT:
        if merchant_id not in (None, actor.participant.pk):
            raise errors.InvalidRequest(
                "A merchant files its own documents: leave merchant out.",
                code="parameter_invalid",
                param="merchant",
            )
        return actor.participant
    if not actor.is_operator:
        raise errors.PermissionDenied(
            f"A {actor.role} does not file trade documents.", code="role_forbidden"
        )
    if merchant_id is None:
        raise errors.InvalidRequest(
            "The operator names the merchant whose documents these are.",
            code="parameter_missing",
            param="merchant",
        )
    merchant = Participant.objects.filter(pk=merchant_id, role=Role.MERCHANT).first()
    if merchant is None:
        raise errors.InvalidRequest("No such merchant.", code="merchant_missing", param="merchant")
    return merchant


def _check_active(merchant: Participant) -> None:
    if merchant.status != Participant.Status.ACTIVE:
        raise errors.PermissionDenied(
            f"The merchant is {merchant.status}: it files no documents.",
            code="participant_inactive",
        )


# --- filing one ----------------------------------------------------------------------------------


def duplicate_error(kind: Kind, number: str) -> errors.HubError:
    return errors.Conflict(
        f"The merchant has already filed {kind.name.replace('_', ' ')} {number}.",
        code="document_exists",
        param=kind.number,
    )


def missing_link_error(field: str, number: str) -> errors.HubError:
    what = field.removesuffix("_no")
    return errors.InvalidRequest(
        f"The merchant has filed no {what} {number}; file the {what} first.",
        code=f"{what}_missing",
        param=field,
    )


@transaction.atomic(durable=True)
def _document_create(
    *,
    actor: Principal,
    kind: Kind,
    raw: Mapping[str, object],
    metadata: Mapping[str, str] | None,
    merchant_id: str | None,
) -> _Document:
    merchant = merchant_for(actor=actor, merchant_id=merchant_id)
    _check_active(merchant)
    values: Values = document_clean(kind, raw, now=timezone.now())
    mine = {"merchant": merchant, "livemode": actor.livemode}
    number = values[kind.number]
    if kind.model._default_manager.filter(**mine, **{kind.number: number}).exists():
        raise duplicate_error(kind, number)
    links: dict[str, object] = {}
    for field, model, number_field in kind.links:
        if not values[field]:
            continue
        target = model._default_manager.filter(**mine, **{number_field: values[field]}).first()
        if target is None:
            raise missing_link_error(field, values[field])
        links[field.removesuffix("_no")] = target
    try:
        with transaction.atomic():
            document = kind.model._default_manager.create(
                **mine, **values, **links, metadata=dict(metadata or {})
            )
    except IntegrityError:  # the same number filed by a concurrent request
        raise duplicate_error(kind, number) from None
    event_emit(
        type=f"{kind.name}.created", owner=merchant, data=document_payload(document), actor=actor
    )
    return document


def order_create(
    *,
    actor: Principal,
    order_no: str,
    trade_type: str,
    customs_mode: str,
    buyer_name: str,
    buyer_id: str,
    buyer_country: str,
    currency: str,
    amount: int,
    goods_amount: int,
    shipping_amount: int = 0,
    tax_amount: int = 0,
    ordered_at: datetime,
    metadata: Mapping[str, str] | None = None,
    merchant_id: str | None = None,
) -> Order:
    """File a buyer's order. Amounts are minor units of ``currency`` (the API's decimal strings
    are accepted too); ``amount`` must be ``goods_amount + shipping_amount + tax_amount``."""
    document = _document_create(
        actor=actor,
        kind=KINDS["order"],
        raw={
            "order_no": order_no,
            "trade_type": trade_type,
            "customs_mode": customs_mode,
            "buyer_name": buyer_name,
            "buyer_id": buyer_id,
            "buyer_country": buyer_country,
            "currency": currency,
            "amount": amount,
            "goods_amount": goods_amount,
            "shipping_amount": shipping_amount,
            "tax_amount": tax_amount,
            "ordered_at": ordered_at,
        },
        metadata=metadata,
        merchant_id=merchant_id,
    )
    assert isinstance(document, Order)
    return document


def payment_record_create(
    *,
    actor: Principal,
    payment_no: str,
    order_no: str,
    payer_name: str,
    payer_id: str,
    payer_country: str,
    institution_name: str = "",
    currency: str,
    amount: int,
    paid_at: datetime,
    metadata: Mapping[str, str] | None = None,
    merchant_id: str | None = None,
) -> PaymentRecord:
    """File the payment institution's record of a buyer paying for an order the merchant
    filed. Its currency and amount may differ from the order's: verification judges that."""
    document = _document_create(
        actor=actor,
        kind=KINDS["payment_record"],
        raw={
            "payment_no": payment_no,
            "order_no": order_no,
            "payer_name": payer_name,
            "payer_id": payer_id,
            "payer_country": payer_country,
            "institution_name": institution_name,
            "currency": currency,
            "amount": amount,
            "paid_at": paid_at,
        },
        metadata=metadata,
        merchant_id=merchant_id,
    )
    assert isinstance(document, PaymentRecord)
    return document


def waybill_create(
    *,
    actor: Principal,
    waybill_no: str,
    order_no: str,
    carrier: str,
    consignee_name: str,
    destination_country: str,
    shipped_at: datetime,
    metadata: Mapping[str, str] | None = None,
    merchant_id: str | None = None,
) -> Waybill:
    """File the carrier's waybill of an order the merchant filed."""
    document = _document_create(
        actor=actor,
        kind=KINDS["waybill"],
        raw={
            "waybill_no": waybill_no,
            "order_no": order_no,
            "carrier": carrier,
            "consignee_name": consignee_name,
            "destination_country": destination_country,
            "shipped_at": shipped_at,
        },
        metadata=metadata,
        merchant_id=merchant_id,
    )
    assert isinstance(document, Waybill)
    return document


def customs_declaration_create(
    *,
    actor: Principal,
    declaration_no: str,
    order_no: str,
    waybill_no: str = "",
    customs_mode: str,
    currency: str,
    amount: int,
    declared_at: datetime,
    metadata: Mapping[str, str] | None = None,
    merchant_id: str | None = None,
) -> CustomsDeclaration:
    """File the export declaration of an order the merchant filed. ``waybill_no`` is kept as
    declared (verification matches it); the mode may differ from the order's (verification
    judges that too)."""
    document = _document_create(
        actor=actor,
        kind=KINDS["customs_declaration"],
        raw={
            "declaration_no": declaration_no,
            "order_no": order_no,
            "waybill_no": waybill_no,
            "customs_mode": customs_mode,
            "currency": currency,
            "amount": amount,
            "declared_at": declared_at,
        },
        metadata=metadata,
        merchant_id=merchant_id,
    )
    assert isinstance(document, CustomsDeclaration)
    return document


def contract_create(
    *,
    actor: Principal,
    contract_no: str,
    buyer_name: str,
    buyer_country: str,
    currency: str,
    amount: int,
    signed_at: datetime,
    metadata: Mapping[str, str] | None = None,
    merchant_id: str | None = None,
) -> Contract:
    """File a B2B sales contract."""
    document = _document_create(
        actor=actor,
        kind=KINDS["contract"],
        raw={
            "contract_no": contract_no,
            "buyer_name": buyer_name,
            "buyer_country": buyer_country,
            "currency": currency,
            "amount": amount,
            "signed_at": signed_at,
        },
        metadata=metadata,
        merchant_id=merchant_id,
    )
    assert isinstance(document, Contract)
    return document


def invoice_create(
    *,
    actor: Principal,
    invoice_no: str,
    contract_no: str = "",
    order_no: str = "",
    currency: str,
    amount: int,
    issued_at: datetime,
    metadata: Mapping[str, str] | None = None,
    merchant_id: str | None = None,
) -> Invoice:
    """File a commercial invoice under a contract, for an order, or both; each one it names
    must be filed."""
    document = _document_create(
        actor=actor,
        kind=KINDS["invoice"],
        raw={
            "invoice_no": invoice_no,
            "contract_no": contract_no,
            "order_no": order_no,
            "currency": currency,
            "amount": amount,
            "issued_at": issued_at,
        },
        metadata=metadata,
        merchant_id=merchant_id,
    )
    assert isinstance(document, Invoice)
    return document


def document_create(
    *,
    actor: Principal,
    kind: str,
    fields: Mapping[str, object],
    metadata: Mapping[str, str] | None = None,
    merchant_id: str | None = None,
) -> _Document:
    """Any kind by name, from the API's fields (decimal strings, RFC 3339 times)."""
    return _document_create(
        actor=actor, kind=KINDS[kind], raw=fields, metadata=metadata, merchant_id=merchant_id
    )
