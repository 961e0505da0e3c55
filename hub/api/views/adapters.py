from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adapters.registry import installed_adapters
from hub.api.base import HubAPIView
from hub.api.pagination import LIST_PARAMETERS, choice_param, list_body, paginate
from hub.api.permissions import ALL_ROLES, OPERATOR_ONLY, Rule
from hub.api.serializers import ObjectTypeField, StrictSerializer, TimestampField
from hub.models import AdapterConnection, AdapterOperation, OperatorTask
from hub.selectors_adapters import (
    adapter_connection_get,
    adapter_connections_visible,
    adapter_operation_get,
    adapter_operations_visible,
    operator_task_get,
    operator_tasks_visible,
)
from hub.services.adapters.connections import adapter_connection_enable, adapter_connection_update
from hub.services.adapters.inbound import inbound_webhook_receive
from hub.services.adapters.operations import operation_sync_soon
from hub.services.adapters.tasks_queue import operator_task_resolve


class StringMapField(serializers.DictField):
    child = serializers.CharField(max_length=2000)


class AdapterOut(serializers.Serializer):
    name = serializers.CharField()
    object = ObjectTypeField("adapter")
    display_name = serializers.CharField()
    version = serializers.CharField()
    distribution = serializers.CharField()
    capabilities = serializers.ListField(child=serializers.CharField())
    currencies = serializers.ListField(child=serializers.CharField())
    corridors = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))
    auth_scheme = serializers.CharField()
    idempotent_operations = serializers.ListField(child=serializers.CharField())
    config_fields = serializers.ListField(child=serializers.CharField())
    secret_fields = serializers.ListField(child=serializers.CharField())


def _adapters() -> list[dict[str, Any]]:
    rows = []
    for name, installed in installed_adapters().items():
        manifest = installed.adapter_class.manifest
        rows.append(
            {
                "name": name,
                "display_name": manifest.display_name,
                "version": manifest.version,
                "distribution": installed.distribution,
                "capabilities": sorted(manifest.capabilities),
                "currencies": sorted(manifest.currencies),
                "corridors": sorted([list(c) for c in manifest.corridors]),
                "auth_scheme": manifest.auth_scheme,
                "idempotent_operations": sorted(manifest.idempotent_operations),
                "config_fields": sorted(manifest.config_fields),
                "secret_fields": sorted(manifest.secret_fields),
            }
        )
    return rows


class AdapterListView(HubAPIView):
    access = {"GET": Rule(OPERATOR_ONLY, "adapters:read")}

    @extend_schema(responses=AdapterOut(many=True), operation_id="adapters_list")
    def get(self, request: Request) -> Response:
        data = AdapterOut(_adapters(), many=True).data
        return Response({"object": "list", "data": data, "has_more": False, "url": request.path})


class ConnectionOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("adapter_connection")
    participant = serializers.CharField(source="participant_id")
    adapter = serializers.CharField()
    livemode = serializers.BooleanField()
    sandbox = serializers.BooleanField()
    config = serializers.DictField()
    has_credentials = serializers.SerializerMethodField()
    status = serializers.CharField()
    created_at = TimestampField()
    updated_at = TimestampField()

    def get_has_credentials(self, obj: AdapterConnection) -> bool:
        return bool(obj.credentials_encrypted)


class AdapterConnectionListView(HubAPIView):
    access = {
        "GET": Rule(ALL_ROLES, "adapters:read"),
        "POST": Rule(OPERATOR_ONLY, "adapters:write"),
    }

    class Input(StrictSerializer):
        participant = serializers.CharField(max_length=40)
        adapter = serializers.CharField(max_length=64)
        config = StringMapField()
        credentials = StringMapField(required=False, default=dict)
        sandbox = serializers.BooleanField(required=False, default=False)

    @extend_schema(
        parameters=LIST_PARAMETERS,
        responses=ConnectionOut(many=True),
        operation_id="adapter_connections_list",
    )
    def get(self, request: Request) -> Response:
        rows, has_more = paginate(request, adapter_connections_visible(actor=self.actor))
        return Response(list_body(ConnectionOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input, responses={201: ConnectionOut}, operation_id="adapter_connections_create"
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        connection = adapter_connection_enable(
            actor=self.actor, participant_id=values.pop("participant"), **values
        )
        return Response(ConnectionOut(connection).data, status=201)


class AdapterConnectionDetailView(HubAPIView):
    access = {
        "GET": Rule(ALL_ROLES, "adapters:read"),
        "POST": Rule(OPERATOR_ONLY, "adapters:write"),
    }

    class Input(StrictSerializer):
        config = StringMapField(required=False)
        credentials = StringMapField(required=False)
        status = serializers.ChoiceField(choices=AdapterConnection.Status.choices, required=False)

    @extend_schema(responses=ConnectionOut, operation_id="adapter_connections_retrieve")
    def get(self, request: Request, connection_id: str) -> Response:
        return Response(
            ConnectionOut(
                adapter_connection_get(actor=self.actor, connection_id=connection_id)
            ).data
        )

    @extend_schema(
        request=Input, responses=ConnectionOut, operation_id="adapter_connections_update"
    )
    def post(self, request: Request, connection_id: str) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        connection = adapter_connection_update(
            actor=self.actor, connection_id=connection_id, **data.validated_data
        )
        return Response(ConnectionOut(connection).data)


class AttemptOut(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    attempt = serializers.IntegerField()
    method = serializers.CharField()
    url = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True)
    result = serializers.CharField()
    error = serializers.CharField()
    duration_ms = serializers.IntegerField()
    started_at = TimestampField()
    request_headers = serializers.DictField()
    request_body = serializers.CharField()
    response_body = serializers.CharField()


class OperationOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("adapter_operation")
    connection = serializers.CharField(source="connection_id")
    kind = serializers.CharField()
    reference = serializers.CharField()
    amount = serializers.SerializerMethodField()
    state = serializers.CharField()
    provider_id = serializers.CharField()
    failure_code = serializers.CharField()
    failure_reason = serializers.CharField()
    sync_count = serializers.IntegerField()
    next_sync_at = TimestampField(allow_null=True)
    last_synced_at = TimestampField(allow_null=True)
    escalated_at = TimestampField(allow_null=True)
    created_at = TimestampField()

    def get_amount(self, obj: AdapterOperation) -> dict[str, str]:
        from hub.money import format_amount

        return {"amount": format_amount(obj.amount_minor, obj.currency), "currency": obj.currency}


class AdapterOperationListView(HubAPIView):
    access = {"GET": Rule(ALL_ROLES, "adapters:read")}

    @extend_schema(
        parameters=[
            *LIST_PARAMETERS,
            OpenApiParameter("state", str, enum=AdapterOperation.State.values),
        ],
        responses=OperationOut(many=True),
        operation_id="adapter_operations_list",
    )
    def get(self, request: Request) -> Response:
        queryset = adapter_operations_visible(actor=self.actor)
        state = choice_param(request, "state", AdapterOperation.State.values)
        if state is not None:
            queryset = queryset.filter(state=state)
        rows, has_more = paginate(request, queryset)
        return Response(list_body(OperationOut(rows, many=True).data, has_more, request.path))


class AdapterOperationDetailView(HubAPIView):
    access = {"GET": Rule(ALL_ROLES, "adapters:read")}

    @extend_schema(responses=OperationOut, operation_id="adapter_operations_retrieve")
    def get(self, request: Request, operation_id: str) -> Response:
        operation = adapter_operation_get(actor=self.actor, operation_id=operation_id)
        body = dict(OperationOut(operation).data)
        body["attempts"] = AttemptOut(operation.attempts.order_by("id"), many=True).data
        return Response(body)


class AdapterOperationSyncView(HubAPIView):
    access = {"POST": Rule(OPERATOR_ONLY, "adapters:write")}

    class Input(StrictSerializer):
        pass

    @extend_schema(request=None, responses=OperationOut, operation_id="adapter_operations_sync")
    def post(self, request: Request, operation_id: str) -> Response:
        self.Input(data=request.data).is_valid(raise_exception=True)
        operation = adapter_operation_get(actor=self.actor, operation_id=operation_id)
        operation_sync_soon(operation_id=operation.pk)
        operation.refresh_from_db()
        return Response(OperationOut(operation).data, status=202)


class OperatorTaskOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("operator_task")
    kind = serializers.CharField()
    status = serializers.CharField()
    participant = serializers.CharField(source="participant_id", allow_null=True)
    operation = serializers.CharField(source="operation_id", allow_null=True)
    summary = serializers.CharField()
    details = serializers.DictField()
    note = serializers.CharField()
    resolved_by = serializers.CharField()
    created_at = TimestampField()
    resolved_at = TimestampField(allow_null=True)


class OperatorTaskListView(HubAPIView):
    access = {"GET": Rule(OPERATOR_ONLY, "operator_tasks:read")}

    @extend_schema(
        parameters=[
            *LIST_PARAMETERS,
            OpenApiParameter("status", str, enum=OperatorTask.Status.values),
        ],
        responses=OperatorTaskOut(many=True),
        operation_id="operator_tasks_list",
    )
    def get(self, request: Request) -> Response:
        queryset = operator_tasks_visible(actor=self.actor)
        status = choice_param(request, "status", OperatorTask.Status.values)
        if status is not None:
            queryset = queryset.filter(status=status)
        rows, has_more = paginate(request, queryset)
        return Response(list_body(OperatorTaskOut(rows, many=True).data, has_more, request.path))


class OperatorTaskResolveView(HubAPIView):
    access = {"POST": Rule(OPERATOR_ONLY, "operator_tasks:write")}

    class Input(StrictSerializer):
        note = serializers.CharField(max_length=2000)

    @extend_schema(request=Input, responses=OperatorTaskOut, operation_id="operator_tasks_resolve")
    def post(self, request: Request, task_id: str) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        operator_task_get(actor=self.actor, task_id=task_id)
        task = operator_task_resolve(
            task_id=task_id, actor=self.actor, note=data.validated_data["note"]
        )
        return Response(OperatorTaskOut(task).data)


class InboundWebhookView(HubAPIView):
    """Where an institution posts its notifications; authenticated by the adapter's signature
    scheme on the raw body, not by an API key."""

    access = {"POST": Rule(public=True)}
    authentication_classes = []

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # No API key, hence no Idempotency-Key scope: the provider's event id deduplicates. (The
        # base view's idempotency step needs a principal, and would fail on such a header.)
        APIView.initial(self, request, *args, **kwargs)

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "InboundReceipt",
            {"received": serializers.BooleanField(), "status": serializers.CharField()},
        ),
        operation_id="inbound_webhooks_receive",
        auth=[],
    )
    def post(self, request: Request, connection_id: str) -> Response:
        receipt = inbound_webhook_receive(
            connection_id=connection_id, headers=dict(request.headers), body=request._request.body
        )
        return Response({"received": True, "status": receipt.status, "id": receipt.webhook_id})
