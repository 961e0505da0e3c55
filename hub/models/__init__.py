from hub.models.audit import AuditEntry
from hub.models.events import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from hub.models.idempotency import IdempotencyRecord
from hub.models.participants import ApiKey, Participant, Role

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Event",
    "IdempotencyRecord",
    "Participant",
    "Role",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
