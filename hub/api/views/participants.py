from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hub.api.base import HubAPIView
from hub.api.pagination import LIST_PARAMETERS, list_body, paginate
from hub.api.permissions import ALL_ROLES, OPERATOR_ONLY, Rule
from hub.api.serializers import (
    MetadataField,
    ObjectTypeField,
    RecordOut,
    StrictSerializer,
    TimestampField,
)
from hub.models import ApiKey, Participant, Role
from hub.principal import ROLE_SCOPES
from hub.selectors import api_keys_visible, participant_get, participants_visible
from hub.services.api_keys import api_key_create, api_key_revoke, api_key_rotate
from hub.services.participants import participant_create, participant_update


class ParticipantOut(RecordOut):
    id = serializers.CharField()
    object = ObjectTypeField("participant")
    role = serializers.CharField()
    legal_name = serializers.CharField()
    country = serializers.CharField()
    registration_id = serializers.CharField()
    status = serializers.CharField()
    metadata = MetadataField()
    created_at = TimestampField()


class ApiKeyOut(RecordOut):
    id = serializers.CharField()
    object = ObjectTypeField("api_key")
    participant = serializers.CharField(source="participant_id")
    livemode = serializers.BooleanField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    created_at = TimestampField()
    expires_at = TimestampField(allow_null=True)
    revoked_at = TimestampField(allow_null=True)
    last_used_at = TimestampField(allow_null=True)
    replaced_by = serializers.CharField(source="replaced_by_id", allow_null=True)


class ApiKeyWithSecretOut(ApiKeyOut):
    secret = serializers.CharField(help_text="Shown once; the hub keeps only a keyed hash.")


def key_with_secret(key: ApiKey, secret: str) -> dict[str, Any]:
    return {**ApiKeyOut(key).data, "secret": secret}


class ParticipantListView(HubAPIView):
    access = {
        "GET": Rule(ALL_ROLES, "participants:read"),
        "POST": Rule(OPERATOR_ONLY, "participants:write"),
    }

    class Input(StrictSerializer):
        role = serializers.ChoiceField(choices=Role.choices)
        legal_name = serializers.CharField(max_length=200)
        country = serializers.ChoiceField(choices=Participant.Country.choices)
        registration_id = serializers.CharField(max_length=40)
        metadata = MetadataField(required=False)

    @extend_schema(
        parameters=LIST_PARAMETERS,
        responses=ParticipantOut(many=True),
        operation_id="participants_list",
    )
    def get(self, request: Request) -> Response:
        rows, has_more = paginate(request, participants_visible(actor=self.actor))
        return Response(list_body(ParticipantOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input, responses={201: ParticipantOut}, operation_id="participants_create"
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        participant = participant_create(actor=self.actor, **data.validated_data)
        return Response(ParticipantOut(participant).data, status=201)


class ParticipantDetailView(HubAPIView):
    access = {
        "GET": Rule(ALL_ROLES, "participants:read"),
        "POST": Rule(OPERATOR_ONLY, "participants:write"),
    }

    class Input(StrictSerializer):
        legal_name = serializers.CharField(max_length=200, required=False)
        status = serializers.ChoiceField(choices=Participant.Status.choices, required=False)
        metadata = MetadataField(required=False)

    @extend_schema(responses=ParticipantOut, operation_id="participants_retrieve")
    def get(self, request: Request, participant_id: str) -> Response:
        return Response(
            ParticipantOut(participant_get(actor=self.actor, participant_id=participant_id)).data
        )

    @extend_schema(request=Input, responses=ParticipantOut, operation_id="participants_update")
    def post(self, request: Request, participant_id: str) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        participant = participant_update(
            participant_id=participant_id, actor=self.actor, **data.validated_data
        )
        return Response(ParticipantOut(participant).data)


ALL_SCOPES = sorted(set().union(*ROLE_SCOPES.values()))


class ApiKeyListView(HubAPIView):
    access = {
        "GET": Rule(ALL_ROLES, "api_keys:read"),
        "POST": Rule(OPERATOR_ONLY, "participants:write"),
    }

    class Input(StrictSerializer):
        name = serializers.CharField(max_length=100, required=False, default="")
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=ALL_SCOPES), required=False, max_length=50
        )

    @extend_schema(
        parameters=LIST_PARAMETERS, responses=ApiKeyOut(many=True), operation_id="api_keys_list"
    )
    def get(self, request: Request, participant_id: str) -> Response:
        rows, has_more = paginate(
            request, api_keys_visible(actor=self.actor, participant_id=participant_id)
        )
        return Response(list_body(ApiKeyOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input, responses={201: ApiKeyWithSecretOut}, operation_id="api_keys_create"
    )
    def post(self, request: Request, participant_id: str) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        key, secret = api_key_create(
            participant_id=participant_id, actor=self.actor, **data.validated_data
        )
        return Response(key_with_secret(key, secret), status=201)


class ApiKeyRevokeView(HubAPIView):
    access = {"POST": Rule(ALL_ROLES, "api_keys:write")}

    class Input(StrictSerializer):
        pass

    @extend_schema(request=None, responses=ApiKeyOut, operation_id="api_keys_revoke")
    def post(self, request: Request, api_key_id: str) -> Response:
        self.Input(data=request.data).is_valid(raise_exception=True)
        return Response(ApiKeyOut(api_key_revoke(api_key_id=api_key_id, actor=self.actor)).data)


class ApiKeyRotateView(HubAPIView):
    access = {"POST": Rule(ALL_ROLES, "api_keys:write")}

    class Input(StrictSerializer):
        expires_in = serializers.IntegerField(
            required=False, default=24 * 3600, help_text="Seconds the old key keeps working."
        )

    @extend_schema(
        request=Input, responses={201: ApiKeyWithSecretOut}, operation_id="api_keys_rotate"
    )
    def post(self, request: Request, api_key_id: str) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        key, secret = api_key_rotate(
            api_key_id=api_key_id,
            actor=self.actor,
            overlap_seconds=data.validated_data["expires_in"],
        )
        return Response(key_with_secret(key, secret), status=201)
