from __future__ import annotations

from django.db import models
from django.utils import timezone

from hub.ids import IdFactory


class Event(models.Model):
    """A state change, written in the same transaction as the change (the outbox).

    ``dispatched_at`` is set once deliveries have been fanned out; the relay task picks up events
    whose after-commit hand-off was lost (a crash between commit and enqueue).
    """

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("evt"), editable=False)
    type = models.CharField(max_length=100)
    # Found through the (participant, livemode, id) index below; one of its own would only cost
    # every event a write.
    participant = models.ForeignKey(
        "hub.Participant", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    livemode = models.BooleanField()
    data = models.JSONField()
    request_id = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["participant", "livemode", "id"]),
            models.Index(
                fields=["created_at"],
                name="event_undispatched",
                condition=models.Q(dispatched_at__isnull=True),
            ),
        ]


class WebhookEndpoint(models.Model):
    class Status(models.TextChoices):
        ENABLED = "enabled"
        DISABLED = "disabled"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("we"), editable=False)
    participant = models.ForeignKey(
        "hub.Participant", on_delete=models.PROTECT, related_name="webhook_endpoints"
    )
    livemode = models.BooleanField()
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True, default="")
    enabled_events = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ENABLED)
    disabled_reason = models.CharField(max_length=200, blank=True, default="")
    # Fernet ciphertexts (hub.crypto); the plain secret is shown once, at creation or rotation.
    secret_encrypted = models.TextField()
    previous_secret_encrypted = models.TextField(blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    def wants(self, event_type: str) -> bool:
        return "*" in self.enabled_events or event_type in self.enabled_events


class WebhookDelivery(models.Model):
    """One event to one endpoint, retried on a schedule until it succeeds or gives up."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("whd"), editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event"],
                condition=models.Q(replay_of__isnull=True),
                name="webhook_delivery_once",
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=["endpoint", "id"]),
        ]


class WebhookAttempt(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("wha"), editable=False)
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True, default="")
    response_excerpt = models.CharField(max_length=1000, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_once")
        ]
