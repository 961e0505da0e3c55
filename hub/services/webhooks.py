"""Webhook endpoints and deliveries (Standard Webhooks).

A delivery is claimed, sent and recorded in three steps so that no lock or transaction is open
during the HTTP call: claim (lock, check the attempt number, push ``next_attempt_at`` out by a
lease), send, record (lock, store the attempt, schedule the next one or finish). A duplicate task
for the same attempt finds the number moved on and does nothing; a worker that dies mid-send
leaves the lease to expire and the sweeper sends the attempt again.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.db import transaction
from django.utils import timezone

from hub import errors
from hub.conf import hub_settings
from hub.crypto import decrypt, encrypt
from hub.jobs import enqueue_after_commit
from hub.models import Event, Participant, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from hub.netguard import check_url
from hub.principal import Principal
from hub.services.events import EVENT_TYPES, event_emit
from hub.webhook_signature import SECRET_PREFIX, sign

MAX_ENDPOINTS_PER_PARTICIPANT = 16
LEASE_SECONDS = 120
USER_AGENT = "settlement-hub-webhooks/1"


def _new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _check_events(enabled_events: list[str]) -> list[str]:
    if not enabled_events:
        raise errors.InvalidRequest(
            'enabled_events needs at least one event type, or "*".',
            code="parameter_invalid",
            param="enabled_events",
        )
    for name in enabled_events:
        if name != "*" and name not in EVENT_TYPES:
            raise errors.InvalidRequest(
                f"Unknown event type {name!r}.", code="event_type_unknown", param="enabled_events"
            )
    return sorted(set(enabled_events))


def endpoint_payload(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.pk,
        "url": endpoint.url,
        "enabled_events": endpoint.enabled_events,
        "status": endpoint.status,
    }


@transaction.atomic(durable=True)
def webhook_endpoint_create(
    *,
    actor: Principal,
    url: str,
    enabled_events: list[str],
    description: str = "",
    metadata: dict[str, str] | None = None,
) -> tuple[WebhookEndpoint, str]:
    check_url(url, allow_private=hub_settings.WEBHOOK_ALLOW_PRIVATE, resolve=False)
    events = _check_events(enabled_events)
    Participant.objects.select_for_update().filter(pk=actor.participant.pk).first()
    count = WebhookEndpoint.objects.filter(
        participant=actor.participant, livemode=actor.livemode
    ).count()
    if count >= MAX_ENDPOINTS_PER_PARTICIPANT:
        raise errors.Conflict(
            f"At most {MAX_ENDPOINTS_PER_PARTICIPANT} webhook endpoints per mode.",
            code="webhook_endpoint_limit",
        )
    secret = _new_secret()
    endpoint = WebhookEndpoint.objects.create(
        participant=actor.participant,
        livemode=actor.livemode,
        url=url,
        description=description,
        enabled_events=events,
        secret_encrypted=encrypt(secret),
        metadata=metadata or {},
    )
    event_emit(
        type="webhook_endpoint.created",
        owner=actor.participant,
        actor=actor,
        data=endpoint_payload(endpoint),
    )
    return endpoint, secret


def _locked_endpoint(*, endpoint_id: str, actor: Principal) -> WebhookEndpoint:
    queryset = WebhookEndpoint.objects.select_for_update().filter(
        pk=endpoint_id, livemode=actor.livemode
    )
    if not actor.is_operator:
        queryset = queryset.filter(participant=actor.participant)
    endpoint = queryset.first()
    if endpoint is None:
        raise errors.NotFound()
    return endpoint


@transaction.atomic(durable=True)
def webhook_endpoint_update(
    *,
    endpoint_id: str,
    actor: Principal,
    url: str | None = None,
    enabled_events: list[str] | None = None,
    status: str | None = None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
) -> WebhookEndpoint:
    endpoint = _locked_endpoint(endpoint_id=endpoint_id, actor=actor)
    if url is not None:
        endpoint.url = check_url(
            url, allow_private=hub_settings.WEBHOOK_ALLOW_PRIVATE, resolve=False
        )
    if enabled_events is not None:
        endpoint.enabled_events = _check_events(enabled_events)
    if status is not None:
        endpoint.status = status
        endpoint.disabled_reason = (
            "" if status == WebhookEndpoint.Status.ENABLED else "disabled by the owner"
        )
    if description is not None:
        endpoint.description = description
    if metadata is not None:
        endpoint.metadata = metadata
    endpoint.save()
    event_emit(
        type="webhook_endpoint.updated",
        owner=endpoint.participant,
        actor=actor,
        data=endpoint_payload(endpoint),
    )
    return endpoint


@transaction.atomic(durable=True)
def webhook_endpoint_rotate_secret(
    *, endpoint_id: str, actor: Principal, overlap_seconds: int
) -> tuple[WebhookEndpoint, str]:
    """A new signing secret; deliveries carry signatures under both until the overlap ends."""
    if not 0 <= overlap_seconds <= 7 * 24 * 3600:
        raise errors.InvalidRequest(
            "expires_in must be 0 to 604800 seconds.", code="parameter_invalid", param="expires_in"
        )
    endpoint = _locked_endpoint(endpoint_id=endpoint_id, actor=actor)
    secret = _new_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted if overlap_seconds else ""
    endpoint.previous_secret_expires_at = (
        timezone.now() + timedelta(seconds=overlap_seconds) if overlap_seconds else None
    )
    endpoint.secret_encrypted = encrypt(secret)
    endpoint.save()
    return endpoint, secret


@transaction.atomic(durable=True)
def webhook_delivery_replay(*, delivery_id: str, actor: Principal) -> WebhookDelivery:
    """Send an event to an endpoint again, as a new delivery with its own attempt log."""
    queryset = WebhookDelivery.objects.select_related("endpoint", "event").filter(
        pk=delivery_id, endpoint__livemode=actor.livemode
    )
    if not actor.is_operator:
        queryset = queryset.filter(endpoint__participant=actor.participant)
    original = queryset.first()
    if original is None:
        raise errors.NotFound()
    if original.endpoint.status != WebhookEndpoint.Status.ENABLED:
        raise errors.Conflict(
            "The endpoint is disabled; enable it first.", code="webhook_endpoint_disabled"
        )
    replay = WebhookDelivery.objects.create(
        endpoint=original.endpoint,
        event=original.event,
        replay_of=original,
        next_attempt_at=timezone.now(),
    )
    _send_after_commit(replay)
    return replay


def _send_after_commit(delivery: WebhookDelivery) -> None:
    from hub.tasks import webhook_attempt_task

    enqueue_after_commit(webhook_attempt_task, delivery_id=delivery.pk, attempt=delivery.attempts)


def event_payload(event: Event) -> dict[str, Any]:
    """The event as the API and webhook bodies show it."""
    return {
        "id": event.pk,
        "object": "event",
        "type": event.type,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
        "livemode": event.livemode,
        "participant": event.participant_id,
        "request_id": event.request_id or None,
        "data": {"object": event.data},
    }


@transaction.atomic(durable=True)
def event_dispatch(*, event_id: str) -> int:
    """Create one delivery per subscribed endpoint, once. Returns how many were created."""
    event = Event.objects.select_for_update().filter(pk=event_id).first()
    if event is None or event.dispatched_at is not None:
        return 0
    now = timezone.now()
    endpoints = WebhookEndpoint.objects.filter(
        participant_id=event.participant_id,
        livemode=event.livemode,
        status=WebhookEndpoint.Status.ENABLED,
    )
    created = 0
    for endpoint in endpoints:
        if not endpoint.wants(event.type):
            continue
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint, event=event, next_attempt_at=now
        )
        _send_after_commit(delivery)
        created += 1
    event.dispatched_at = now
    event.save(update_fields=["dispatched_at"])
    return created


@dataclass(frozen=True)
class _Claim:
    delivery_id: str
    number: int
    url: str
    body: bytes
    headers: dict[str, str]


def _claim(*, delivery_id: str, attempt: int) -> _Claim | None:
    with transaction.atomic(durable=True):
        delivery = (
            WebhookDelivery.objects.select_for_update()
            .select_related("endpoint", "event")
            .filter(pk=delivery_id)
            .first()
        )
        now = timezone.now()
        if (
            delivery is None
            or delivery.status != WebhookDelivery.Status.PENDING
            or delivery.attempts != attempt
            or (delivery.next_attempt_at is not None and delivery.next_attempt_at > now)
        ):
            return None
        endpoint = delivery.endpoint
        if endpoint.status != WebhookEndpoint.Status.ENABLED:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.last_error = "endpoint disabled"
            delivery.completed_at = now
            delivery.save()
            return None
        delivery.attempts = attempt + 1
        delivery.next_attempt_at = now + timedelta(seconds=LEASE_SECONDS)
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        body = json.dumps(event_payload(delivery.event), separators=(",", ":")).encode()
        stamp = int(time.time())
        secrets_now = [decrypt(endpoint.secret_encrypted)]
        if endpoint.previous_secret_encrypted and (
            endpoint.previous_secret_expires_at is None or endpoint.previous_secret_expires_at > now
        ):
            secrets_now.append(decrypt(endpoint.previous_secret_encrypted))
        msg_id = delivery.event_id
        signature = " ".join(
            sign(secret=s, msg_id=msg_id, timestamp=stamp, body=body) for s in secrets_now
        )
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature,
        }
        return _Claim(delivery.pk, attempt + 1, endpoint.url, body, headers)


def _send(claim: _Claim) -> tuple[int | None, str, str]:
    try:
        check_url(claim.url, allow_private=hub_settings.WEBHOOK_ALLOW_PRIVATE, resolve=True)
    except errors.HubError as exc:
        return None, f"refused: {exc.message}", ""
    try:
        with httpx.Client(timeout=hub_settings.WEBHOOK_TIMEOUT, follow_redirects=False) as client:
            response = client.post(claim.url, content=claim.body, headers=claim.headers)
    except httpx.TimeoutException:
        return None, "timeout", ""
    except httpx.TransportError as exc:
        return None, f"connection error: {type(exc).__name__}", ""
    return response.status_code, "", response.text[:1000]


def _schedule_delay(number: int) -> float | None:
    """Seconds until attempt ``number + 1``, or None when the schedule is spent."""
    schedule: list[float] = hub_settings.WEBHOOK_RETRY_SCHEDULE
    return schedule[number - 1] if number - 1 < len(schedule) else None


def webhook_attempt(*, delivery_id: str, attempt: int) -> str | None:
    """Make attempt ``attempt + 1`` of a delivery. Returns the delivery's status afterwards, or
    None when this attempt was not ours to make."""
    claim = _claim(delivery_id=delivery_id, attempt=attempt)
    if claim is None:
        return None
    started = timezone.now()
    clock = time.monotonic()
    status_code, error, excerpt = _send(claim)
    duration_ms = int((time.monotonic() - clock) * 1000)
    with transaction.atomic(durable=True):
        delivery = (
            WebhookDelivery.objects.select_for_update()
            .select_related("endpoint")
            .get(pk=delivery_id)
        )
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=claim.number,
            started_at=started,
            duration_ms=duration_ms,
            status_code=status_code,
            error=error[:300],
            response_excerpt=excerpt,
        )
        if delivery.attempts != claim.number or delivery.status != WebhookDelivery.Status.PENDING:
            return delivery.status
        now = timezone.now()
        delivery.last_status_code = status_code
        delivery.last_error = error[:300] or (
            "" if status_code and 200 <= status_code < 300 else f"HTTP {status_code}"
        )
        if status_code is not None and 200 <= status_code < 300:
            delivery.status = WebhookDelivery.Status.SUCCEEDED
            delivery.completed_at = now
            delivery.next_attempt_at = None
        elif status_code == 410:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.completed_at = now
            delivery.next_attempt_at = None
            endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
            endpoint.status = WebhookEndpoint.Status.DISABLED
            endpoint.disabled_reason = "the receiver answered 410 Gone"
            endpoint.save(update_fields=["status", "disabled_reason"])
        else:
            delay = _schedule_delay(claim.number)
            if delay is None:
                delivery.status = WebhookDelivery.Status.FAILED
                delivery.completed_at = now
                delivery.next_attempt_at = None
            else:
                delivery.next_attempt_at = now + timedelta(seconds=delay)
                if delay <= hub_settings.WEBHOOK_SWEEP_SECONDS * 4:
                    _send_later(delivery, delay)
        delivery.save()
        return delivery.status


def _send_later(delivery: WebhookDelivery, delay: float) -> None:
    """Short delays go straight to the broker with a countdown; long ones wait for the sweeper,
    since brokers redeliver long-delayed messages after their visibility timeout."""
    from hub.tasks import webhook_attempt_task

    delivery_id, attempt = delivery.pk, delivery.attempts
    transaction.on_commit(
        lambda: webhook_attempt_task.apply_async(
            kwargs={"delivery_id": delivery_id, "attempt": attempt}, countdown=delay
        )
    )


def webhook_sweep(
    *, now: datetime | None = None, relay_after_seconds: float = 30
) -> tuple[int, int]:
    """Enqueue due deliveries and dispatch events whose after-commit hand-off was lost."""
    from hub.tasks import event_dispatch_task, webhook_attempt_task

    moment = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=moment
        )
        .order_by("next_attempt_at")
        .values_list("pk", "attempts")[:1000]
    )
    for delivery_id, attempts in due:
        webhook_attempt_task.apply_async(kwargs={"delivery_id": delivery_id, "attempt": attempts})
    stale = list(
        Event.objects.filter(
            dispatched_at__isnull=True,
            created_at__lte=moment - timedelta(seconds=relay_after_seconds),
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:1000]
    )
    for event_id in stale:
        event_dispatch_task.apply_async(kwargs={"event_id": event_id})
    return len(due), len(stale)
