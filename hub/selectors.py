"""Reads that enforce ownership: a caller only ever gets its own objects (an operator, all), in
its own mode. Another tenant's id is indistinguishable from one that does not exist."""

from __future__ import annotations

from django.db.models import QuerySet

from hub import errors
from hub.models import (
    ApiKey,
    AuditEntry,
    Event,
    Participant,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from hub.principal import Principal


def participants_visible(*, actor: Principal) -> QuerySet[Participant]:
    queryset = Participant.objects.all()
    return queryset if actor.is_operator else queryset.filter(pk=actor.participant.pk)


def participant_get(*, actor: Principal, participant_id: str) -> Participant:
    participant = participants_visible(actor=actor).filter(pk=participant_id).first()
    if participant is None:
        raise errors.NotFound()
    return participant


def api_keys_visible(*, actor: Principal, participant_id: str) -> QuerySet[ApiKey]:
    participant = participant_get(actor=actor, participant_id=participant_id)
    return ApiKey.objects.filter(participant=participant, livemode=actor.livemode)


def events_visible(*, actor: Principal) -> QuerySet[Event]:
    queryset = Event.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.filter(participant=actor.participant)


def event_get(*, actor: Principal, event_id: str) -> Event:
    event = events_visible(actor=actor).filter(pk=event_id).first()
    if event is None:
        raise errors.NotFound()
    return event


def webhook_endpoints_visible(*, actor: Principal) -> QuerySet[WebhookEndpoint]:
    queryset = WebhookEndpoint.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.filter(participant=actor.participant)


def webhook_endpoint_get(*, actor: Principal, endpoint_id: str) -> WebhookEndpoint:
    endpoint = webhook_endpoints_visible(actor=actor).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise errors.NotFound()
    return endpoint


def webhook_deliveries_visible(*, actor: Principal, endpoint_id: str) -> QuerySet[WebhookDelivery]:
    endpoint = webhook_endpoint_get(actor=actor, endpoint_id=endpoint_id)
    return WebhookDelivery.objects.filter(endpoint=endpoint).select_related("event")


def webhook_delivery_get(*, actor: Principal, delivery_id: str) -> WebhookDelivery:
    queryset = WebhookDelivery.objects.filter(pk=delivery_id, endpoint__livemode=actor.livemode)
    if not actor.is_operator:
        queryset = queryset.filter(endpoint__participant=actor.participant)
    delivery = queryset.select_related("event").first()
    if delivery is None:
        raise errors.NotFound()
    return delivery


def webhook_attempts_of(*, delivery: WebhookDelivery) -> QuerySet[WebhookAttempt]:
    return WebhookAttempt.objects.filter(delivery=delivery).order_by("number")


def audit_entries_visible(*, actor: Principal) -> QuerySet[AuditEntry]:
    queryset = AuditEntry.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.filter(participant_id=actor.participant.pk)
