from hub.models.adapters import (
    AdapterConnection,
    AdapterOperation,
    CircuitState,
    InboundWebhook,
    OperatorTask,
    OutboundAttempt,
)
from hub.models.audit import AuditEntry
from hub.models.events import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from hub.models.idempotency import IdempotencyRecord
from hub.models.participants import ApiKey, Participant, Role

__all__ = [
    "AdapterConnection",
    "AdapterOperation",
    "ApiKey",
    "AuditEntry",
    "CircuitState",
    "Event",
    "IdempotencyRecord",
    "InboundWebhook",
    "OperatorTask",
    "OutboundAttempt",
    "Participant",
    "Role",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
