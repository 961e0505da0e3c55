"""Verification endpoints: a merchant has its payins and payouts verified against its trade
documents (one at a time or a whole uploaded file at once); a bank officer works the review
queue; the operator sees everything and keeps the list of denied parties."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from fx.models_verification import Outcome, Verification
from fx.verification import (
    batch_payload,
    denied_parties_visible,
    denied_party_create,
    denied_party_payload,
    verification_batch_create,
    verification_batches_visible,
    verification_create,
    verification_payload,
    verification_review,
    verifications_visible,
)
from hub import errors
from hub.api.base import HubAPIView
from hub.api.pagination import LIST_PARAMETERS, choice_param, list_body, paginate
from hub.api.permissions import Rule
from hub.api.serializers import MoneyField, ObjectTypeField, StrictSerializer, TimestampField
from hub.ids import is_valid_id
from hub.models import Role

MERCHANT = frozenset({Role.MERCHANT})
OPERATOR = frozenset({Role.OPERATOR})
ASKERS = frozenset({Role.MERCHANT, Role.OPERATOR})
REVIEWERS = frozenset({Role.BANK, Role.OPERATOR})
READERS = frozenset({Role.MERCHANT, Role.BANK, Role.OPERATOR})


class VerificationOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("verification")
    livemode = serializers.BooleanField()
    merchant = serializers.CharField()
    subject = serializers.ChoiceField(choices=Verification.Subject.choices)
    payin = serializers.CharField(allow_null=True)
    payout = serializers.CharField(allow_null=True)
    batch = serializers.CharField(allow_null=True)
    order_no = serializers.CharField()
    documents = serializers.DictField(
        help_text="Ids of the order, payment record, waybill and customs declaration checked "
        "(null where none was found)."
    )
    amount = MoneyField(help_text="The movement's amount (a batch: the payment record's).")
    outcome = serializers.ChoiceField(choices=Outcome.choices)
    reasons = serializers.ListField(
        child=serializers.CharField(), help_text="Reason codes, sorted; none when verified."
    )
    decision = serializers.ChoiceField(
        choices=Outcome.choices, help_text="The outcome, or the reviewer's verdict once given."
    )
    review = serializers.DictField(help_text="status, reviewed_by, note, reviewed_at")
    created_at = TimestampField()
    updated_at = TimestampField()

    def to_representation(self, verification: Verification) -> dict[str, Any]:
        return verification_payload(verification)


class BatchOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("verification_batch")
    livemode = serializers.BooleanField()
    merchant = serializers.CharField()
    upload = serializers.CharField(allow_null=True)
    orders_count = serializers.IntegerField()
    verified_count = serializers.IntegerField()
    rejected_count = serializers.IntegerField()
    review_count = serializers.IntegerField()
    created_at = TimestampField()

    def to_representation(self, batch: Any) -> dict[str, Any]:
        return batch_payload(batch)


class DeniedPartyOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("denied_party")
    livemode = serializers.BooleanField()
    name = serializers.CharField()
    id_number = serializers.CharField(allow_null=True)
    country = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    created_at = TimestampField()

    def to_representation(self, party: Any) -> dict[str, Any]:
        return denied_party_payload(party)


def _id_param(request: Request, name: str, prefix: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and not is_valid_id(prefix, value):
        raise errors.InvalidRequest(
            f"{name} must be an id of the form {prefix}_...", code="parameter_invalid", param=name
        )
    return value


class VerificationListView(HubAPIView):
    access = {
        "GET": Rule(READERS, "verifications:read"),
        "POST": Rule(ASKERS, "verifications:write"),
    }

    class Input(StrictSerializer):
        payin = serializers.RegexField(r"^pay_[0-9a-z]{26}$", required=False)
        payout = serializers.RegexField(r"^po_[0-9a-z]{26}$", required=False)
        order_no = serializers.CharField(max_length=64, trim_whitespace=False)

    @extend_schema(
        parameters=[
            *LIST_PARAMETERS,
            OpenApiParameter("outcome", str, enum=Outcome.values),
            OpenApiParameter("review", str, enum=Verification.Review.values),
            OpenApiParameter("subject", str, enum=Verification.Subject.values),
            OpenApiParameter("batch", str),
            OpenApiParameter("payin", str),
            OpenApiParameter("payout", str),
        ],
        responses=VerificationOut(many=True),
        operation_id="fx_verifications_list",
        description="A merchant's own verifications; for a bank, the review queue "
        "(`review=pending`) and what it decided; everything for the operator.",
    )
    def get(self, request: Request) -> Response:
        queryset = verifications_visible(actor=self.actor)
        filters = {
            "outcome": choice_param(request, "outcome", Outcome.values),
            "review": choice_param(request, "review", Verification.Review.values),
            "subject": choice_param(request, "subject", Verification.Subject.values),
            "batch_id": _id_param(request, "batch", "vbt"),
            "payin_id": _id_param(request, "payin", "pay"),
            "payout_id": _id_param(request, "payout", "po"),
        }
        queryset = queryset.filter(**{k: v for k, v in filters.items() if v is not None})
        rows, has_more = paginate(request, queryset)
        return Response(list_body(VerificationOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input,
        responses={201: VerificationOut, 200: VerificationOut},
        operation_id="fx_verifications_create",
        description="Verifies a payin or a payout (exactly one of them) against the documents "
        "of order `order_no`. 201 with the outcome; asking again for the same movement answers "
        "200 with the same verification (409 verification_exists for another order). A missing "
        "order or another currency is an outcome with reasons, not an error.",
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        verification, created = verification_create(
            actor=self.actor,
            payin_id=values.get("payin"),
            payout_id=values.get("payout"),
            order_no=values["order_no"],
        )
        return Response(VerificationOut(verification).data, status=201 if created else 200)


class VerificationDetailView(HubAPIView):
    access = {"GET": Rule(READERS, "verifications:read")}

    @extend_schema(responses=VerificationOut, operation_id="fx_verifications_retrieve")
    def get(self, request: Request, verification_id: str) -> Response:
        found = verifications_visible(actor=self.actor).filter(pk=verification_id).first()
        if found is None:
            raise errors.NotFound()
        return Response(VerificationOut(found).data)


class _ReviewView(HubAPIView):
    access = {"POST": Rule(REVIEWERS, "verifications:review")}
    approve: bool

    class Input(StrictSerializer):
        note = serializers.CharField(max_length=1000, trim_whitespace=False)

    def post(self, request: Request, verification_id: str) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        verification = verification_review(
            actor=self.actor,
            verification_id=verification_id,
            approve=self.approve,
            note=data.validated_data["note"],
        )
        return Response(VerificationOut(verification).data)


class VerificationApproveView(_ReviewView):
    approve = True

    @extend_schema(
        request=_ReviewView.Input,
        responses=VerificationOut,
        operation_id="fx_verifications_approve",
        description="Approves a verification awaiting review (409 verification_not_in_review "
        "otherwise): its decision becomes `verified`.",
    )
    def post(self, request: Request, verification_id: str) -> Response:
        return super().post(request, verification_id)


class VerificationRejectView(_ReviewView):
    approve = False

    @extend_schema(
        request=_ReviewView.Input,
        responses=VerificationOut,
        operation_id="fx_verifications_reject",
        description="Rejects a verification awaiting review (409 verification_not_in_review "
        "otherwise): its decision becomes `rejected`.",
    )
    def post(self, request: Request, verification_id: str) -> Response:
        return super().post(request, verification_id)


class BatchListView(HubAPIView):
    access = {
        "GET": Rule(ASKERS, "verifications:read"),
        "POST": Rule(MERCHANT, "verifications:write"),
    }

    class Input(StrictSerializer):
        upload = serializers.RegexField(r"^upl_[0-9a-z]{26}$", required=False)

    @extend_schema(
        parameters=LIST_PARAMETERS,
        responses=BatchOut(many=True),
        operation_id="fx_verification_batches_list",
    )
    def get(self, request: Request) -> Response:
        rows, has_more = paginate(request, verification_batches_visible(actor=self.actor))
        return Response(list_body(BatchOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input,
        responses={201: BatchOut},
        operation_id="fx_verification_batches_create",
        description="Verifies every order of `upload` (an upload of orders, payment records, "
        "waybills or customs declarations), or without it every order no verification names "
        "yet, in one pass; each order's verification is listed by "
        "`GET /v1/fx/verifications?batch=`.",
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        batch = verification_batch_create(
            actor=self.actor, upload_id=data.validated_data.get("upload")
        )
        return Response(BatchOut(batch).data, status=201)


class BatchDetailView(HubAPIView):
    access = {"GET": Rule(ASKERS, "verifications:read")}

    @extend_schema(responses=BatchOut, operation_id="fx_verification_batches_retrieve")
    def get(self, request: Request, batch_id: str) -> Response:
        found = verification_batches_visible(actor=self.actor).filter(pk=batch_id).first()
        if found is None:
            raise errors.NotFound()
        return Response(BatchOut(found).data)


class DeniedPartyListView(HubAPIView):
    access = {
        "GET": Rule(OPERATOR, "verifications:read"),
        "POST": Rule(OPERATOR, "verifications:write"),
    }

    class Input(StrictSerializer):
        name = serializers.CharField(max_length=200)
        id_number = serializers.CharField(max_length=64, required=False, default="")
        country = serializers.CharField(max_length=2, required=False, default="")
        reason = serializers.CharField(max_length=300)

    @extend_schema(
        parameters=LIST_PARAMETERS,
        responses=DeniedPartyOut(many=True),
        operation_id="fx_denied_parties_list",
    )
    def get(self, request: Request) -> Response:
        rows, has_more = paginate(request, denied_parties_visible(actor=self.actor))
        return Response(list_body(DeniedPartyOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input,
        responses={201: DeniedPartyOut},
        operation_id="fx_denied_parties_create",
        description="Puts a party on the list verifications refuse: by `id_number` (in "
        "`country`, or anywhere without one), or by `name` (ignoring case and spacing) when "
        "no number is given.",
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        party = denied_party_create(
            actor=self.actor,
            name=values["name"],
            id_number=values["id_number"],
            country=values["country"],
            reason=values["reason"],
        )
        return Response(DeniedPartyOut(party).data, status=201)
