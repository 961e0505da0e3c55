from __future__ import annotations

from django.db import models
from django.utils import timezone

from hub.ids import IdFactory


class AuditEntry(models.Model):
    """Who did what, when, from where, under which request id: one row per write request, and per
    read where a rule requires reads to be recorded. Append-only."""

    id = models.CharField(primary_key=True, max_length=40, default=IdFactory("aud"), editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    participant_id = models.CharField(max_length=40, blank=True, default="")
    api_key_id = models.CharField(max_length=40, blank=True, default="")
    livemode = models.BooleanField(null=True)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    object_id = models.CharField(max_length=40, blank=True, default="")
    status_code = models.PositiveSmallIntegerField()
    ip_address = models.GenericIPAddressField(null=True)
    user_agent = models.CharField(max_length=300, blank=True, default="")
    request_id = models.CharField(max_length=40)
    idempotency_key = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["participant_id", "id"])]
