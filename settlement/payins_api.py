"""Payin and refund endpoints: a merchant takes payments through a payment institution and
refunds them; the institution sees what it collects; the operator sees everything."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hub import errors
from hub.api.base import HubAPIView
from hub.api.pagination import LIST_PARAMETERS, choice_param, list_body, paginate
from hub.api.permissions import Rule
from hub.api.serializers import (
    MetadataField,
    MoneyField,
    ObjectTypeField,
    StrictSerializer,
    TimestampField,
)
from hub.models import Role
from hub.money import money_payload
from hub.principal import Principal
from settlement.models_payins import Payin, Refund
from settlement.payins import payin_create, refund_create

MERCHANT = frozenset({Role.MERCHANT})
READERS = frozenset({Role.MERCHANT, Role.PAYMENT_INSTITUTION, Role.OPERATOR})
REFERENCE = r"^[A-Za-z0-9_.:-]{1,64}$"


def payins_visible(*, actor: Principal) -> QuerySet[Payin]:
    queryset = Payin.objects.filter(livemode=actor.livemode).select_related("connection")
    if actor.is_operator:
        return queryset
    if actor.role == Role.PAYMENT_INSTITUTION:
        return queryset.filter(connection__participant=actor.participant)
    return queryset.filter(merchant=actor.participant)


def refunds_visible(*, actor: Principal) -> QuerySet[Refund]:
    queryset = Refund.objects.filter(livemode=actor.livemode)
    if actor.is_operator:
        return queryset
    if actor.role == Role.PAYMENT_INSTITUTION:
        return queryset.filter(payin__connection__participant=actor.participant)
    return queryset.filter(merchant=actor.participant)


def _stamp(value: Any) -> str | None:
    return None if value is None else TimestampField().to_representation(value)


class PayinOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("payin")
    livemode = serializers.BooleanField()
    merchant = serializers.CharField()
    account = serializers.CharField()
    institution = serializers.CharField()
    amount = MoneyField()
    reference = serializers.CharField()
    description = serializers.CharField()
    status = serializers.ChoiceField(choices=Payin.Status.choices)
    institution_operation = serializers.CharField(allow_null=True)
    institution_payment_id = serializers.CharField(
        allow_null=True, help_text="The institution's own id of the payment (its checkout)."
    )
    failure_code = serializers.CharField(allow_null=True)
    refunded = MoneyField()
    refunds_pending = MoneyField()
    credit_transfer = serializers.CharField(
        help_text="The pending credit's transfer id (it exists once the payin succeeded)."
    )
    settlement_run = serializers.CharField(allow_null=True)
    settled_amount = MoneyField(allow_null=True)
    fee = MoneyField(allow_null=True)
    metadata = MetadataField()
    succeeded_at = TimestampField(allow_null=True)
    created_at = TimestampField()
    updated_at = TimestampField()

    def to_representation(self, payin: Payin) -> dict[str, Any]:
        currency = payin.currency
        operation = payin.operation if payin.operation_id else None
        return {
            "id": payin.pk,
            "object": "payin",
            "livemode": payin.livemode,
            "merchant": payin.merchant_id,
            "account": payin.account_id,
            "institution": payin.connection.participant_id,
            "amount": money_payload(payin.amount, currency),
            "reference": payin.reference,
            "description": payin.description,
            "status": payin.status,
            "institution_operation": payin.operation_id,
            "institution_payment_id": (operation.provider_id or None) if operation else None,
            "failure_code": payin.failure_code or None,
            "refunded": money_payload(payin.refunded, currency),
            "refunds_pending": money_payload(payin.refunds_pending, currency),
            "credit_transfer": payin.credit_id,
            "settlement_run": payin.run_id,
            "settled_amount": (
                None
                if payin.settled_amount is None
                else money_payload(payin.settled_amount, currency)
            ),
            "fee": None if payin.fee is None else money_payload(payin.fee, currency),
            "metadata": payin.metadata,
            "succeeded_at": _stamp(payin.succeeded_at),
            "created_at": _stamp(payin.created_at),
            "updated_at": _stamp(payin.updated_at),
        }


class RefundOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("refund")
    livemode = serializers.BooleanField()
    payin = serializers.CharField()
    merchant = serializers.CharField()
    amount = MoneyField()
    reference = serializers.CharField()
    reason = serializers.CharField()
    status = serializers.ChoiceField(choices=Refund.Status.choices)
    netted = serializers.BooleanField(
        help_text="Made before its payin settled: the settlement run posted that much less."
    )
    hold_transfer = serializers.CharField(allow_null=True)
    institution_operation = serializers.CharField(allow_null=True)
    failure_code = serializers.CharField(allow_null=True)
    failure_reason = serializers.CharField(allow_null=True)
    settlement_run = serializers.CharField(allow_null=True)
    created_at = TimestampField()
    updated_at = TimestampField()

    def to_representation(self, refund: Refund) -> dict[str, Any]:
        return {
            "id": refund.pk,
            "object": "refund",
            "livemode": refund.livemode,
            "payin": refund.payin_id,
            "merchant": refund.merchant_id,
            "amount": money_payload(refund.amount, refund.currency),
            "reference": refund.reference,
            "reason": refund.reason,
            "status": refund.status,
            "netted": refund.netted,
            "hold_transfer": None if refund.netted else refund.hold_id,
            "institution_operation": refund.operation_id,
            "failure_code": refund.failure_code or None,
            "failure_reason": refund.failure_reason or None,
            "settlement_run": refund.run_id,
            "created_at": _stamp(refund.created_at),
            "updated_at": _stamp(refund.updated_at),
        }


class PayinListView(HubAPIView):
    access = {
        "GET": Rule(READERS, "payins:read"),
        "POST": Rule(MERCHANT, "payins:write"),
    }

    class Input(StrictSerializer):
        account = serializers.CharField(max_length=40)
        amount = MoneyField()
        reference = serializers.RegexField(REFERENCE)
        description = serializers.CharField(max_length=200, required=False, default="")
        institution = serializers.CharField(max_length=40, required=False)
        metadata = MetadataField(required=False)

    @extend_schema(
        parameters=[*LIST_PARAMETERS, OpenApiParameter("status", str)],
        responses=PayinOut(many=True),
        operation_id="payins_list",
    )
    def get(self, request: Request) -> Response:
        queryset = payins_visible(actor=self.actor).select_related("operation")
        status = choice_param(request, "status", Payin.Status.values)
        if status:
            queryset = queryset.filter(status=status)
        rows, has_more = paginate(request, queryset)
        return Response(list_body(PayinOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input,
        responses={201: PayinOut, 200: PayinOut},
        operation_id="payins_create",
        description="Sends the payment to the institution (the named one, else the first that "
        "collects the currency). 201 for a new payin; 200 when its reference was used before "
        "for the same payin; 409 payin_reference_reused for another.",
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        minor, currency = values.pop("amount")
        payin, created = payin_create(
            actor=self.actor,
            account_id=values["account"],
            amount=minor,
            currency=currency,
            reference=values["reference"],
            description=values["description"],
            institution_id=values.get("institution"),
            metadata=values.get("metadata"),
        )
        return Response(PayinOut(payin).data, status=201 if created else 200)


class PayinDetailView(HubAPIView):
    access = {"GET": Rule(READERS, "payins:read")}

    @extend_schema(responses=PayinOut, operation_id="payins_retrieve")
    def get(self, request: Request, payin_id: str) -> Response:
        payin = (
            payins_visible(actor=self.actor).select_related("operation").filter(pk=payin_id).first()
        )
        if payin is None:
            raise errors.NotFound()
        return Response(PayinOut(payin).data)


class RefundListView(HubAPIView):
    access = {
        "GET": Rule(READERS, "payins:read"),
        "POST": Rule(MERCHANT, "payins:write"),
    }

    class Input(StrictSerializer):
        payin = serializers.RegexField(r"^pay_[0-9a-z]{26}$")
        amount = MoneyField()
        reference = serializers.RegexField(REFERENCE)
        reason = serializers.CharField(max_length=200, required=False, default="")

    @extend_schema(
        parameters=[*LIST_PARAMETERS, OpenApiParameter("payin", str)],
        responses=RefundOut(many=True),
        operation_id="refunds_list",
    )
    def get(self, request: Request) -> Response:
        queryset = refunds_visible(actor=self.actor)
        payin = request.query_params.get("payin")
        if payin is not None:
            queryset = queryset.filter(payin_id=payin)
        rows, has_more = paginate(request, queryset)
        return Response(list_body(RefundOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input,
        responses={201: RefundOut, 200: RefundOut},
        operation_id="refunds_create",
        description="Refunds (part of) a paid payin through its institution. Before the payin "
        "settles the refund is netted from it; after, the amount is held on the merchant's "
        "account until the institution answers (409 insufficient_funds if it is not there).",
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        minor, currency = values.pop("amount")
        refund, created = refund_create(
            actor=self.actor,
            payin_id=values["payin"],
            amount=minor,
            currency=currency,
            reference=values["reference"],
            reason=values["reason"],
        )
        return Response(RefundOut(refund).data, status=201 if created else 200)


class RefundDetailView(HubAPIView):
    access = {"GET": Rule(READERS, "payins:read")}

    @extend_schema(responses=RefundOut, operation_id="refunds_retrieve")
    def get(self, request: Request, refund_id: str) -> Response:
        refund = refunds_visible(actor=self.actor).filter(pk=refund_id).first()
        if refund is None:
            raise errors.NotFound()
        return Response(RefundOut(refund).data)
