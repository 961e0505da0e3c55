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
from hub.models.transparency import Checkpoint, SigningKey, TransparencyLog, TransparencyNode

__all__ = [
    "AdapterConnection",
    "AdapterOperation",
    "ApiKey",
    "AuditEntry",
    "Checkpoint",
    "CircuitState",
    "Event",
    "IdempotencyRecord",
    "InboundWebhook",
    "OperatorTask",
    "OutboundAttempt",
    "Participant",
    "Role",
    "SigningKey",
    "TransparencyLog",
    "TransparencyNode",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
