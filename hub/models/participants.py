from __future__ import annotations

from django.db import models
from django.utils import timezone

from hub.ids import IdFactory


class Role(models.TextChoices):
    MERCHANT = "merchant"
    PAYMENT_INSTITUTION = "payment_institution"
    BANK = "bank"
    INSURER = "insurer"
    REGULATOR = "regulator"
    OPERATOR = "operator"


class Participant(models.Model):
    """A company that uses the hub in one role. Every other object belongs to one."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"
        CLOSED = "closed"

    class Country(models.TextChoices):
        CN = "CN"
        KR = "KR"

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("par"), editable=False)
    role = models.CharField(max_length=32, choices=Role.choices)
    legal_name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, choices=Country.choices)
    registration_id = models.CharField(max_length=18)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["country", "registration_id"], name="participant_registration_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="participant_role_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "suspended", "closed"]),
                name="participant_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.role} {self.legal_name}"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class ApiKey(models.Model):
    """A secret a participant's systems authenticate with.

    The secret itself is never stored: only its keyed hash (for lookup) and a visible prefix (to
    recognise it in lists and logs). A rotated key keeps working until ``expires_at``.
    """

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("key"), editable=False)
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="api_keys")
    livemode = models.BooleanField()
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=20)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    replaced_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["participant", "created_at"])]

    def __str__(self) -> str:
        return f"{self.id} {self.prefix}…"

    def is_usable(self, now: object | None = None) -> bool:
        moment = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > moment  # type: ignore[operator]
