"""The hub's side of adapters: which participant uses which adapter, what was sent on the wire,
the operations in flight at institutions, inbound notifications, and the operator's queue."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from hub.ids import IdFactory


class AdapterConnection(models.Model):
    """An installed adapter enabled for one participant, in one mode, with its configuration.
    Credentials are a Fernet ciphertext of a JSON object (``hub.crypto``)."""

    class Status(models.TextChoices):
        ENABLED = "enabled"
        DISABLED = "disabled"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("adc"), editable=False)
    participant = models.ForeignKey(
        "hub.Participant", on_delete=models.PROTECT, related_name="adapter_connections"
    )
    adapter = models.CharField(max_length=64)
    livemode = models.BooleanField()
    sandbox = models.BooleanField(default=False)
    config = models.JSONField(default=dict)
    credentials_encrypted = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ENABLED)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "adapter", "livemode"], name="adapter_connection_once"
            ),
            models.CheckConstraint(
                condition=models.Q(sandbox=False) | models.Q(livemode=False),
                name="adapter_connection_sandbox_is_test",
            ),
        ]


class AdapterOperation(models.Model):
    """One request to an institution (a payin, refund or payout), followed until terminal.

    ``reference`` is the hub's id for it and the provider's idempotency key, so one reference is
    never two operations. ``unknown`` means the request may have landed: only a status sync (or a
    verified notification) moves it on; nobody resubmits it.
    """

    class Kind(models.TextChoices):
        PAYIN = "payin"
        REFUND = "refund"
        PAYOUT = "payout"

    class State(models.TextChoices):
        PENDING = "pending"
        UNKNOWN = "unknown"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        HELD = "held"  # the provider reported another amount or currency: an operator decides

    TERMINAL = frozenset({State.SUCCEEDED, State.FAILED})

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("aop"), editable=False)
    connection = models.ForeignKey(
        AdapterConnection, on_delete=models.PROTECT, related_name="operations"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reference = models.CharField(max_length=64)
    request = models.JSONField()
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    provider_id = models.CharField(max_length=128, blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    failure_code = models.CharField(max_length=64, blank=True, default="")
    failure_reason = models.CharField(max_length=300, blank=True, default="")
    reported_amount_minor = models.BigIntegerField(null=True, blank=True)
    reported_currency = models.CharField(max_length=3, blank=True, default="")
    sync_count = models.PositiveIntegerField(default=0)
    next_sync_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "kind", "reference"], name="adapter_operation_reference_once"
            ),
            models.CheckConstraint(
                condition=models.Q(amount_minor__gt=0), name="adapter_operation_positive"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_sync_at"],
                name="adapter_operation_due",
                condition=models.Q(state__in=["pending", "unknown"], escalated_at__isnull=True),
            ),
            models.Index(fields=["connection", "provider_id"]),
        ]


class OutboundAttempt(models.Model):
    """One HTTP exchange with an institution, as the hub-owned client saw it (secrets redacted)."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("oat"), editable=False)
    connection = models.ForeignKey(
        AdapterConnection, on_delete=models.CASCADE, related_name="attempts"
    )
    operation = models.ForeignKey(
        AdapterOperation, null=True, blank=True, on_delete=models.CASCADE, related_name="attempts"
    )
    name = models.CharField(max_length=64)  # the adapter operation, e.g. "payout_create"
    attempt = models.PositiveSmallIntegerField()
    method = models.CharField(max_length=8)
    url = models.CharField(max_length=2000)
    request_headers = models.JSONField(default=dict)
    request_body = models.TextField(blank=True, default="")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    error = models.CharField(max_length=300, blank=True, default="")
    result = models.CharField(max_length=32)
    duration_ms = models.PositiveIntegerField()
    started_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["connection", "id"])]


class CircuitState(models.Model):
    """A circuit breaker's state, shared by every worker process (``hub.services.adapters``)."""

    key = models.CharField(primary_key=True, max_length=200)
    failures = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    probing = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)


class InboundWebhook(models.Model):
    """A notification an institution sent us, kept whatever became of it."""

    class Status(models.TextChoices):
        # Verified, parsed and stored: acknowledged at once, applied by a worker soon after.
        RECEIVED = "received"
        APPLIED = "applied"
        DUPLICATE = "duplicate"
        IGNORED = "ignored"  # verified, but it changes nothing (older than what we know)
        # The signature, timestamp or form did not verify, or applying it failed: either way
        # its event id stays free for a redelivery.
        REJECTED = "rejected"
        HELD = "held"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("iwh"), editable=False)
    connection = models.ForeignKey(
        AdapterConnection, on_delete=models.CASCADE, related_name="inbound"
    )
    provider_event_id = models.CharField(max_length=128, null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    reason = models.CharField(max_length=300, blank=True, default="")
    headers = models.JSONField(default=dict)
    body = models.TextField(blank=True, default="")
    operation = models.ForeignKey(
        AdapterOperation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    received_at = models.DateTimeField(default=timezone.now)
    # What the adapter read from the verified body, for the worker that applies it (the stored
    # body may be cut short, and the worker should not need the adapter to read it again).
    parsed = models.JSONField(null=True, blank=True)
    # A received notification is due for its worker from this time (a lease while one applies
    # it, a backoff after a failed attempt).
    apply_after = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["apply_after"],
                condition=models.Q(status="received"),
                name="inbound_webhook_due",
            )
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "provider_event_id"],
                condition=models.Q(provider_event_id__isnull=False)
                & ~models.Q(status__in=["rejected", "duplicate"]),
                name="inbound_webhook_event_once",
            )
        ]


class OperatorTask(models.Model):
    """Something the hub will not decide on its own: an operation that stayed unresolved through
    its whole sync schedule, an amount that does not match, a notification that never verifies,
    a transparency log that no longer recomputes to what it published (no participant then; its
    summary names the problem, and one problem has one open task)."""

    class Kind(models.TextChoices):
        OPERATION_UNRESOLVED = "operation_unresolved"
        INTEGRITY_MISMATCH = "integrity_mismatch"
        TRANSPARENCY_ALERT = "transparency_alert"

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("opt"), editable=False)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    participant = models.ForeignKey(
        "hub.Participant", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    livemode = models.BooleanField()
    operation = models.ForeignKey(
        AdapterOperation, null=True, blank=True, on_delete=models.PROTECT, related_name="tasks"
    )
    summary = models.CharField(max_length=300)
    details = models.JSONField(default=dict)
    note = models.TextField(blank=True, default="")
    resolved_by = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["operation", "kind"],
                condition=models.Q(status="open"),
                name="operator_task_open_once",
            ),
            models.UniqueConstraint(
                fields=["livemode", "summary"],
                condition=models.Q(status="open", kind="transparency_alert"),
                name="operator_task_transparency_open_once",
            ),
        ]
        indexes = [models.Index(fields=["status", "id"])]
