"""Payout endpoints: a merchant's bank accounts (numbers masked in every answer) and its
payouts."""

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
from hub.money import format_amount
from hub.principal import Principal
from settlement.models_payouts import Payout, PayoutBankAccount
from settlement.payouts import bank_account_payload, payout_bank_account_create, payout_create

MERCHANT = frozenset({Role.MERCHANT})
READERS = frozenset({Role.MERCHANT, Role.OPERATOR})


def bank_accounts_visible(*, actor: Principal) -> QuerySet[PayoutBankAccount]:
    queryset = PayoutBankAccount.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.filter(owner=actor.participant)


def payouts_visible(*, actor: Principal) -> QuerySet[Payout]:
    queryset = Payout.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.filter(merchant=actor.participant)


class BankAccountOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("payout_bank_account")
    livemode = serializers.BooleanField()
    owner = serializers.CharField()
    account_number = serializers.CharField(help_text="The last four digits only.")
    account_name = serializers.CharField()
    bank_code = serializers.CharField()
    country = serializers.CharField()
    currency = serializers.CharField()
    metadata = MetadataField()
    created_at = TimestampField()

    def to_representation(self, account: PayoutBankAccount) -> dict[str, Any]:
        return dict(bank_account_payload(account))


class PayoutOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("payout")
    livemode = serializers.BooleanField()
    merchant = serializers.CharField()
    source_account = serializers.CharField()
    bank_account = serializers.CharField()
    amount = MoneyField()
    reference = serializers.CharField()
    remittance_info = serializers.CharField()
    status = serializers.ChoiceField(choices=Payout.Status.choices)
    bank_operation = serializers.CharField(allow_null=True)
    failure_code = serializers.CharField(allow_null=True)
    failure_reason = serializers.CharField(allow_null=True)
    hold_transfer = serializers.CharField()
    metadata = MetadataField()
    created_at = TimestampField()
    updated_at = TimestampField()

    def to_representation(self, payout: Payout) -> dict[str, Any]:
        stamp = TimestampField().to_representation
        return {
            "id": payout.pk,
            "object": "payout",
            "livemode": payout.livemode,
            "merchant": payout.merchant_id,
            "source_account": payout.source_account_id,
            "bank_account": payout.bank_account_id,
            "amount": {
                "amount": format_amount(payout.amount, payout.currency),
                "currency": payout.currency,
            },
            "reference": payout.reference,
            "remittance_info": payout.remittance_info,
            "status": payout.status,
            "bank_operation": payout.operation_id,
            "failure_code": payout.failure_code or None,
            "failure_reason": payout.failure_reason or None,
            "hold_transfer": payout.hold_id,
            "metadata": payout.metadata,
            "created_at": stamp(payout.created_at),
            "updated_at": stamp(payout.updated_at),
        }


class BankAccountListView(HubAPIView):
    access = {
        "GET": Rule(READERS, "payouts:read"),
        "POST": Rule(MERCHANT, "payouts:write"),
    }

    class Input(StrictSerializer):
        account_number = serializers.CharField(max_length=40)
        account_name = serializers.CharField(max_length=140)
        bank_code = serializers.CharField(max_length=20)
        country = serializers.CharField(max_length=2)
        currency = serializers.CharField(max_length=3)
        metadata = MetadataField(required=False)

    @extend_schema(
        parameters=LIST_PARAMETERS,
        responses=BankAccountOut(many=True),
        operation_id="payout_bank_accounts_list",
    )
    def get(self, request: Request) -> Response:
        rows, has_more = paginate(request, bank_accounts_visible(actor=self.actor))
        return Response(list_body(BankAccountOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input,
        responses={201: BankAccountOut, 200: BankAccountOut},
        operation_id="payout_bank_accounts_create",
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        account, created = payout_bank_account_create(actor=self.actor, **data.validated_data)
        return Response(BankAccountOut(account).data, status=201 if created else 200)


class BankAccountDetailView(HubAPIView):
    access = {"GET": Rule(READERS, "payouts:read")}

    @extend_schema(responses=BankAccountOut, operation_id="payout_bank_accounts_retrieve")
    def get(self, request: Request, bank_account_id: str) -> Response:
        account = bank_accounts_visible(actor=self.actor).filter(pk=bank_account_id).first()
        if account is None:
            raise errors.NotFound()
        return Response(BankAccountOut(account).data)


class PayoutListView(HubAPIView):
    access = {
        "GET": Rule(READERS, "payouts:read"),
        "POST": Rule(MERCHANT, "payouts:write"),
    }

    class Input(StrictSerializer):
        source_account = serializers.CharField(max_length=40)
        bank_account = serializers.CharField(max_length=40)
        amount = MoneyField()
        reference = serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,64}$")
        remittance_info = serializers.CharField(max_length=140, required=False, default="")
        metadata = MetadataField(required=False)

    @extend_schema(
        parameters=[*LIST_PARAMETERS, OpenApiParameter("status", str)],
        responses=PayoutOut(many=True),
        operation_id="payouts_list",
    )
    def get(self, request: Request) -> Response:
        queryset = payouts_visible(actor=self.actor)
        status = choice_param(request, "status", Payout.Status.values)
        if status:
            queryset = queryset.filter(status=status)
        rows, has_more = paginate(request, queryset)
        return Response(list_body(PayoutOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input,
        responses={201: PayoutOut, 200: PayoutOut},
        operation_id="payouts_create",
        description="201 for a new payout; 200 when its reference was used before for the same "
        "payout (returned as it stands); 409 payout_reference_reused for another.",
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        minor, currency = values.pop("amount")
        payout, created = payout_create(
            actor=self.actor,
            source_account_id=values["source_account"],
            bank_account_id=values["bank_account"],
            amount=minor,
            currency=currency,
            reference=values["reference"],
            remittance_info=values["remittance_info"],
            metadata=values.get("metadata"),
        )
        return Response(PayoutOut(payout).data, status=201 if created else 200)


class PayoutDetailView(HubAPIView):
    access = {"GET": Rule(READERS, "payouts:read")}

    @extend_schema(responses=PayoutOut, operation_id="payouts_retrieve")
    def get(self, request: Request, payout_id: str) -> Response:
        payout = payouts_visible(actor=self.actor).filter(pk=payout_id).first()
        if payout is None:
            raise errors.NotFound()
        return Response(PayoutOut(payout).data)
