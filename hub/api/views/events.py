from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hub import errors
from hub.api.base import HubAPIView
from hub.api.pagination import LIST_PARAMETERS, list_body, paginate
from hub.api.permissions import ALL_ROLES, WRITERS, Rule
from hub.api.serializers import MetadataField, ObjectTypeField, StrictSerializer, TimestampField
from hub.models import WebhookEndpoint
from hub.selectors import (
    audit_entries_visible,
    event_get,
    events_visible,
    webhook_attempts_of,
    webhook_deliveries_visible,
    webhook_delivery_get,
    webhook_endpoint_get,
    webhook_endpoints_visible,
)
from hub.services.events import EVENT_TYPES
from hub.services.webhooks import (
    event_payload,
    webhook_delivery_replay,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)

EventOut = inline_serializer(
    "Event",
    {
        "id": serializers.CharField(),
        "object": serializers.CharField(),
        "type": serializers.CharField(),
        "created_at": serializers.DateTimeField(),
        "livemode": serializers.BooleanField(),
        "participant": serializers.CharField(),
        "request_id": serializers.CharField(allow_null=True),
        "data": serializers.DictField(),
    },
)


class EventListView(HubAPIView):
    access = {"GET": Rule(ALL_ROLES, "events:read")}

    @extend_schema(
        parameters=[
            *LIST_PARAMETERS,
            OpenApiParameter("type", str, description="only events of this type"),
        ],
        responses=EventOut,
        operation_id="events_list",
    )
    def get(self, request: Request) -> Response:
        queryset = events_visible(actor=self.actor)
        event_type = request.query_params.get("type")
        if event_type is not None:
            if event_type not in EVENT_TYPES:
                raise errors.InvalidRequest(
                    f"Unknown event type {event_type!r}.", code="event_type_unknown", param="type"
                )
            queryset = queryset.filter(type=event_type)
        rows, has_more = paginate(request, queryset)
        return Response(list_body([event_payload(e) for e in rows], has_more, request.path))


class EventDetailView(HubAPIView):
    access = {"GET": Rule(ALL_ROLES, "events:read")}

    @extend_schema(responses=EventOut, operation_id="events_retrieve")
    def get(self, request: Request, event_id: str) -> Response:
        return Response(event_payload(event_get(actor=self.actor, event_id=event_id)))


class WebhookEndpointOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("webhook_endpoint")
    url = serializers.CharField()
    description = serializers.CharField()
    enabled_events = serializers.ListField(child=serializers.CharField())
    status = serializers.CharField()
    disabled_reason = serializers.CharField()
    livemode = serializers.BooleanField()
    metadata = MetadataField()
    created_at = TimestampField()


class WebhookEndpointWithSecretOut(WebhookEndpointOut):
    secret = serializers.CharField(
        help_text="Shown once. Verify deliveries with it (Standard Webhooks)."
    )


class WebhookEndpointListView(HubAPIView):
    access = {"GET": Rule(ALL_ROLES, "webhooks:read"), "POST": Rule(WRITERS, "webhooks:write")}

    class Input(StrictSerializer):
        url = serializers.CharField(max_length=2000)
        enabled_events = serializers.ListField(
            child=serializers.CharField(max_length=100), max_length=100
        )
        description = serializers.CharField(
            max_length=500, required=False, default="", allow_blank=True
        )
        metadata = MetadataField(required=False)

    @extend_schema(
        parameters=LIST_PARAMETERS,
        responses=WebhookEndpointOut(many=True),
        operation_id="webhook_endpoints_list",
    )
    def get(self, request: Request) -> Response:
        rows, has_more = paginate(request, webhook_endpoints_visible(actor=self.actor))
        return Response(list_body(WebhookEndpointOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input,
        responses={201: WebhookEndpointWithSecretOut},
        operation_id="webhook_endpoints_create",
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = webhook_endpoint_create(actor=self.actor, **data.validated_data)
        return Response({**WebhookEndpointOut(endpoint).data, "secret": secret}, status=201)


class WebhookEndpointDetailView(HubAPIView):
    access = {"GET": Rule(ALL_ROLES, "webhooks:read"), "POST": Rule(WRITERS, "webhooks:write")}

    class Input(StrictSerializer):
        url = serializers.CharField(max_length=2000, required=False)
        enabled_events = serializers.ListField(
            child=serializers.CharField(max_length=100), max_length=100, required=False
        )
        status = serializers.ChoiceField(choices=WebhookEndpoint.Status.choices, required=False)
        description = serializers.CharField(max_length=500, required=False, allow_blank=True)
        metadata = MetadataField(required=False)

    @extend_schema(responses=WebhookEndpointOut, operation_id="webhook_endpoints_retrieve")
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(
            WebhookEndpointOut(webhook_endpoint_get(actor=self.actor, endpoint_id=endpoint_id)).data
        )

    @extend_schema(
        request=Input, responses=WebhookEndpointOut, operation_id="webhook_endpoints_update"
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_update(
            endpoint_id=endpoint_id, actor=self.actor, **data.validated_data
        )
        return Response(WebhookEndpointOut(endpoint).data)


class WebhookEndpointRotateView(HubAPIView):
    access = {"POST": Rule(WRITERS, "webhooks:write")}

    class Input(StrictSerializer):
        expires_in = serializers.IntegerField(
            required=False, default=24 * 3600, help_text="Seconds the old secret keeps signing too."
        )

    @extend_schema(
        request=Input,
        responses=WebhookEndpointWithSecretOut,
        operation_id="webhook_endpoints_rotate_secret",
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = webhook_endpoint_rotate_secret(
            endpoint_id=endpoint_id,
            actor=self.actor,
            overlap_seconds=data.validated_data["expires_in"],
        )
        return Response({**WebhookEndpointOut(endpoint).data, "secret": secret})


class WebhookAttemptOut(serializers.Serializer):
    number = serializers.IntegerField()
    started_at = TimestampField()
    duration_ms = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()
    response_excerpt = serializers.CharField()


class WebhookDeliveryOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("webhook_delivery")
    endpoint = serializers.CharField(source="endpoint_id")
    event = serializers.CharField(source="event_id")
    event_type = serializers.CharField(source="event.type")
    replay_of = serializers.CharField(source="replay_of_id", allow_null=True)
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    next_attempt_at = TimestampField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = TimestampField()
    completed_at = TimestampField(allow_null=True)


class WebhookDeliveryDetailOut(WebhookDeliveryOut):
    attempt_log = WebhookAttemptOut(many=True)


class WebhookDeliveryListView(HubAPIView):
    access = {"GET": Rule(ALL_ROLES, "webhooks:read")}

    @extend_schema(
        parameters=LIST_PARAMETERS,
        responses=WebhookDeliveryOut(many=True),
        operation_id="webhook_deliveries_list",
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        queryset = webhook_deliveries_visible(actor=self.actor, endpoint_id=endpoint_id)
        rows, has_more = paginate(request, queryset)
        return Response(list_body(WebhookDeliveryOut(rows, many=True).data, has_more, request.path))


def _delivery_detail(delivery: object) -> dict[str, object]:
    body = dict(WebhookDeliveryOut(delivery).data)
    body["attempt_log"] = WebhookAttemptOut(webhook_attempts_of(delivery=delivery), many=True).data  # type: ignore[arg-type]
    return body


class WebhookDeliveryDetailView(HubAPIView):
    access = {"GET": Rule(ALL_ROLES, "webhooks:read")}

    @extend_schema(responses=WebhookDeliveryDetailOut, operation_id="webhook_deliveries_retrieve")
    def get(self, request: Request, delivery_id: str) -> Response:
        return Response(
            _delivery_detail(webhook_delivery_get(actor=self.actor, delivery_id=delivery_id))
        )


class WebhookDeliveryReplayView(HubAPIView):
    access = {"POST": Rule(WRITERS, "webhooks:write")}

    class Input(StrictSerializer):
        pass

    @extend_schema(
        request=None,
        responses={201: WebhookDeliveryDetailOut},
        operation_id="webhook_deliveries_replay",
    )
    def post(self, request: Request, delivery_id: str) -> Response:
        self.Input(data=request.data).is_valid(raise_exception=True)
        replay = webhook_delivery_replay(delivery_id=delivery_id, actor=self.actor)
        return Response(_delivery_detail(replay), status=201)


class AuditEntryOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("audit_entry")
    created_at = TimestampField()
    participant = serializers.CharField(source="participant_id")
    api_key = serializers.CharField(source="api_key_id")
    livemode = serializers.BooleanField(allow_null=True)
    method = serializers.CharField()
    path = serializers.CharField()
    object_id = serializers.CharField()
    status_code = serializers.IntegerField()
    ip_address = serializers.CharField(allow_null=True)
    user_agent = serializers.CharField()
    request_id = serializers.CharField()
    idempotency_key = serializers.CharField()


class AuditEntryListView(HubAPIView):
    access = {"GET": Rule(ALL_ROLES, "audit:read")}

    @extend_schema(
        parameters=LIST_PARAMETERS,
        responses=AuditEntryOut(many=True),
        operation_id="audit_entries_list",
    )
    def get(self, request: Request) -> Response:
        rows, has_more = paginate(request, audit_entries_visible(actor=self.actor))
        return Response(list_body(AuditEntryOut(rows, many=True).data, has_more, request.path))
