from django.urls import path, re_path
from drf_spectacular.views import (
    SpectacularJSONAPIView,
    SpectacularSwaggerView,
)

from fx import urls as fx_urls
from fx import urls_audit as fx_urls_audit
from fx import urls_verification as fx_urls_verification
from hub.api.views import adapters, events, meta, participants
from settlement import urls as settlement_urls
from settlement import urls_exports as settlement_urls_exports
from settlement import urls_statements as settlement_urls_statements
from trade import urls as trade_urls

ID = r"(?P<{}>[a-z]+_[0-9a-z]{{26}})"


def _id(name: str) -> str:
    return ID.format(name)


urlpatterns = [
    path("v1/health", meta.HealthView.as_view(), name="health"),
    path("v1/me", meta.MeView.as_view(), name="me"),
    path("v1/participants", participants.ParticipantListView.as_view(), name="participants"),
    re_path(
        rf"^v1/participants/{_id('participant_id')}$",
        participants.ParticipantDetailView.as_view(),
        name="participant",
    ),
    re_path(
        rf"^v1/participants/{_id('participant_id')}/api_keys$",
        participants.ApiKeyListView.as_view(),
        name="api_keys",
    ),
    re_path(
        rf"^v1/api_keys/{_id('api_key_id')}/revoke$",
        participants.ApiKeyRevokeView.as_view(),
        name="api_key_revoke",
    ),
    re_path(
        rf"^v1/api_keys/{_id('api_key_id')}/rotate$",
        participants.ApiKeyRotateView.as_view(),
        name="api_key_rotate",
    ),
    path("v1/events", events.EventListView.as_view(), name="events"),
    re_path(rf"^v1/events/{_id('event_id')}$", events.EventDetailView.as_view(), name="event"),
    path(
        "v1/webhook_endpoints", events.WebhookEndpointListView.as_view(), name="webhook_endpoints"
    ),
    re_path(
        rf"^v1/webhook_endpoints/{_id('endpoint_id')}$",
        events.WebhookEndpointDetailView.as_view(),
        name="webhook_endpoint",
    ),
    re_path(
        rf"^v1/webhook_endpoints/{_id('endpoint_id')}/rotate_secret$",
        events.WebhookEndpointRotateView.as_view(),
        name="webhook_endpoint_rotate",
    ),
    re_path(
        rf"^v1/webhook_endpoints/{_id('endpoint_id')}/deliveries$",
        events.WebhookDeliveryListView.as_view(),
        name="webhook_deliveries",
    ),
    re_path(
        rf"^v1/webhook_deliveries/{_id('delivery_id')}$",
        events.WebhookDeliveryDetailView.as_view(),
        name="webhook_delivery",
    ),
    re_path(
        rf"^v1/webhook_deliveries/{_id('delivery_id')}/replay$",
        events.WebhookDeliveryReplayView.as_view(),
        name="webhook_delivery_replay",
    ),
    path("v1/audit_entries", events.AuditEntryListView.as_view(), name="audit_entries"),
    path("v1/adapters", adapters.AdapterListView.as_view(), name="adapters"),
    path(
        "v1/adapter_connections",
        adapters.AdapterConnectionListView.as_view(),
        name="adapter_connections",
    ),
    re_path(
        rf"^v1/adapter_connections/{_id('connection_id')}$",
        adapters.AdapterConnectionDetailView.as_view(),
        name="adapter_connection",
    ),
    path(
        "v1/adapter_operations",
        adapters.AdapterOperationListView.as_view(),
        name="adapter_operations",
    ),
    re_path(
        rf"^v1/adapter_operations/{_id('operation_id')}$",
        adapters.AdapterOperationDetailView.as_view(),
        name="adapter_operation",
    ),
    re_path(
        rf"^v1/adapter_operations/{_id('operation_id')}/sync$",
        adapters.AdapterOperationSyncView.as_view(),
        name="adapter_operation_sync",
    ),
    path("v1/operator_tasks", adapters.OperatorTaskListView.as_view(), name="operator_tasks"),
    re_path(
        rf"^v1/operator_tasks/{_id('task_id')}/resolve$",
        adapters.OperatorTaskResolveView.as_view(),
        name="operator_task_resolve",
    ),
    re_path(
        rf"^v1/inbound/{_id('connection_id')}$",
        adapters.InboundWebhookView.as_view(),
        name="inbound_webhook",
    ),
    path("v1/openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("v1/docs", SpectacularSwaggerView.as_view(url_name="openapi"), name="docs"),
]
# The project's URLs: the core's above, then each app's, one list (no include()).
urlpatterns += trade_urls.urlpatterns
urlpatterns += settlement_urls.urlpatterns
urlpatterns += settlement_urls_statements.urlpatterns
urlpatterns += settlement_urls_exports.urlpatterns
urlpatterns += fx_urls.urlpatterns
urlpatterns += fx_urls_verification.urlpatterns
urlpatterns += fx_urls_audit.urlpatterns

handler400 = "hub.api.errors.bad_request_view"
handler403 = "hub.api.errors.permission_denied_view"
handler404 = "hub.api.errors.not_found_view"
handler500 = "hub.api.errors.server_error_view"
