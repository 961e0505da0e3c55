"""Webhook endpoints and deliveries (Standard Webhooks).

A delivery is claimed, sent and recorded in three steps so that no lock or transaction is open
during the HTTP call: claim (lock, check the attempt number, push ``next_attempt_at`` out by a
lease), send, record (lock, store the attempt, schedule the next one or finish). A duplicate task
for the same attempt finds the number moved on and does nothing; a worker that dies mid-send
leaves the lease to expire, and the sweeper sends the next attempt (the lost one is logged as
such).
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
# How long a claimed attempt (or a delivery the sweeper enqueued) is left alone before the sweeper
# assumes its worker or message was lost. Longer than any send: WEBHOOK_TIMEOUT bounds each phase.
LEASE_SECONDS = 120
SWEEP_BATCH = 1000
EXCERPT_BYTES = 1000
USER_AGENT = "settlement-hub-webhooks/1"
GONE_REASON = "the receiver answered 410 Gone"
LOST_ATTEMPT_ERROR = "no outcome recorded: the worker was lost during the attempt"


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


def _check_endpoint_limit(actor: Principal) -> None:
    """At most so many *enabled* endpoints per participant and mode; disabled ones keep their
    delivery logs and do not count, so a participant is never stuck at the limit."""
    Participant.objects.select_for_update().filter(pk=actor.participant.pk).first()
    count = WebhookEndpoint.objects.filter(
        participant=actor.participant,
        livemode=actor.livemode,
        status=WebhookEndpoint.Status.ENABLED,
    ).count()
    if count >= MAX_ENDPOINTS_PER_PARTICIPANT:
        raise errors.Conflict(
            f"At most {MAX_ENDPOINTS_PER_PARTICIPANT} enabled webhook endpoints per mode; "
            "disable one first.",
            code="webhook_endpoint_limit",
        )


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
    _check_endpoint_limit(actor)
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
        if status == WebhookEndpoint.Status.ENABLED and endpoint.status != status:
            _check_endpoint_limit(actor)
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
    event_emit(
        type="webhook_endpoint.updated",
        owner=endpoint.participant,
        actor=actor,
        data=endpoint_payload(endpoint),
    )
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


def _lease_matches(delivery: WebhookDelivery, lease: str) -> bool:
    """Whether ``lease`` is the value the sweeper gave ``next_attempt_at`` when it enqueued this
    task (see ``webhook_sweep``)."""
    if not lease or delivery.next_attempt_at is None:
        return False
    try:
        return datetime.fromisoformat(lease) == delivery.next_attempt_at
    except ValueError:
        return False


def _claim(*, delivery_id: str, attempt: int, lease: str = "") -> _Claim | None:
    with transaction.atomic(durable=True):
        # Only the delivery row: attempts of one event, or to one endpoint, need not queue up
        # behind each other.
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint", "event")
            .filter(pk=delivery_id)
            .first()
        )
        now = timezone.now()
        if (
            delivery is None
            or delivery.status != WebhookDelivery.Status.PENDING
            or delivery.attempts != attempt
            or (
                delivery.next_attempt_at is not None
                and delivery.next_attempt_at > now
                and not _lease_matches(delivery, lease)
            )
        ):
            return None
        endpoint = delivery.endpoint
        if endpoint.status != WebhookEndpoint.Status.ENABLED:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.last_error = "endpoint disabled"
            delivery.completed_at = now
            delivery.next_attempt_at = None
            delivery.save(update_fields=["status", "last_error", "completed_at", "next_attempt_at"])
            return None
        if (
            attempt
            and not WebhookAttempt.objects.filter(delivery=delivery, number=attempt).exists()
        ):
            # Attempt ``attempt`` was claimed and its lease ran out with nothing recorded: its
            # worker died mid-send, and the request may or may not have reached the receiver.
            # The log says so instead of skipping a number; a late outcome replaces this row.
            WebhookAttempt.objects.create(
                delivery=delivery,
                number=attempt,
                started_at=now,
                duration_ms=0,
                error=LOST_ATTEMPT_ERROR,
            )
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


def _excerpt(response: httpx.Response) -> str:
    """The start of the receiver's answer, for the attempt log. The rest is never read, so a
    receiver that answers with a huge body costs no memory."""
    kept = bytearray()
    try:
        for chunk in response.iter_bytes():
            kept += chunk
            if len(kept) >= EXCERPT_BYTES:
                break
    except httpx.TransportError:
        pass  # the status line and headers arrived: the answer counts, whatever the body does
    text = bytes(kept[:EXCERPT_BYTES]).decode("utf-8", errors="replace")
    return text.replace("\x00", "\ufffd")  # PostgreSQL text columns cannot hold NUL


def _send(claim: _Claim) -> tuple[int | None, str, str]:
    try:
        check_url(claim.url, allow_private=hub_settings.WEBHOOK_ALLOW_PRIVATE, resolve=True)
    except errors.HubError as exc:
        return None, f"refused: {exc.message}", ""
    try:
        with (
            httpx.Client(timeout=hub_settings.WEBHOOK_TIMEOUT, follow_redirects=False) as client,
            client.stream("POST", claim.url, content=claim.body, headers=claim.headers) as response,
        ):
            excerpt = _excerpt(response)
    except httpx.TimeoutException:
        return None, "timeout", ""
    except httpx.TransportError as exc:
        return None, f"connection error: {type(exc).__name__}", ""
    status = response.status_code
    return status, "" if 200 <= status < 300 else f"HTTP {status}", excerpt


def _schedule_delay(number: int) -> float | None:
    """Seconds until attempt ``number + 1``, or None when the schedule is spent."""
    schedule: list[float] = hub_settings.WEBHOOK_RETRY_SCHEDULE
    return schedule[number - 1] if number - 1 < len(schedule) else None


def webhook_attempt(*, delivery_id: str, attempt: int, lease: str = "") -> str | None:
    """Make attempt ``attempt + 1`` of a delivery. Returns the delivery's status afterwards, or
    None when this attempt was not ours to make. ``lease`` comes from the sweeper."""
    claim = _claim(delivery_id=delivery_id, attempt=attempt, lease=lease)
    if claim is None:
        return None
    started = timezone.now()
    clock = time.monotonic()
    status_code, error, excerpt = _send(claim)
    duration_ms = int((time.monotonic() - clock) * 1000)
    with transaction.atomic(durable=True):
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
        WebhookAttempt.objects.update_or_create(
            delivery=delivery,
            number=claim.number,
            defaults={
                "started_at": started,
                "duration_ms": duration_ms,
                "status_code": status_code,
                "error": error[:300],
                "response_excerpt": excerpt,
            },
        )
        if delivery.attempts != claim.number or delivery.status != WebhookDelivery.Status.PENDING:
            return delivery.status
        now = timezone.now()
        delivery.last_status_code = status_code
        delivery.last_error = error[:300]
        if status_code is not None and 200 <= status_code < 300:
            delivery.status = WebhookDelivery.Status.SUCCEEDED
            delivery.completed_at = now
            delivery.next_attempt_at = None
        elif status_code == 410:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.completed_at = now
            delivery.next_attempt_at = None
            _disable_gone(endpoint_id=delivery.endpoint_id)
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


def _disable_gone(*, endpoint_id: str) -> None:
    """The receiver answered 410 Gone: stop sending to it, and tell its owner."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    if endpoint.status != WebhookEndpoint.Status.ENABLED:
        return
    endpoint.status = WebhookEndpoint.Status.DISABLED
    endpoint.disabled_reason = GONE_REASON
    endpoint.save(update_fields=["status", "disabled_reason"])
    event_emit(
        type="webhook_endpoint.updated",
        owner=endpoint.participant,
        livemode=endpoint.livemode,
        data=endpoint_payload(endpoint),
    )


def _send_later(delivery: WebhookDelivery, delay: float) -> None:
    """Short delays go straight to the broker with a countdown; long ones wait for the sweeper,
    since brokers redeliver long-delayed messages after their visibility timeout."""
    from hub.tasks import webhook_attempt_task

    enqueue_after_commit(
        webhook_attempt_task, countdown=delay, delivery_id=delivery.pk, attempt=delivery.attempts
    )


def webhook_sweep(
    *, now: datetime | None = None, relay_after_seconds: float = 30
) -> tuple[int, int]:
    """Enqueue due deliveries and dispatch events whose after-commit hand-off was lost.

    Each due delivery's ``next_attempt_at`` is pushed out by a lease as it is enqueued, so that
    while the queue is busy the next sweeps do not enqueue it again (and again); the task carries
    that value as ``lease`` to show it is the one the sweeper sent. If the task is lost, the lease
    runs out and a later sweep sends another.
    """
    from hub.tasks import event_dispatch_task, webhook_attempt_task

    moment = now or timezone.now()
    lease_until = moment + timedelta(seconds=LEASE_SECONDS)
    with transaction.atomic(durable=True):
        due = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=moment)
            .order_by("next_attempt_at")
            .values_list("pk", "attempts")[:SWEEP_BATCH]
        )
        WebhookDelivery.objects.filter(pk__in=[pk for pk, _ in due]).update(
            next_attempt_at=lease_until
        )
    lease = lease_until.isoformat()
    for delivery_id, attempts in due:
        webhook_attempt_task.apply_async(
            kwargs={"delivery_id": delivery_id, "attempt": attempts, "lease": lease}
        )
    stale = list(
        Event.objects.filter(
            dispatched_at__isnull=True,
            created_at__lte=moment - timedelta(seconds=relay_after_seconds),
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for event_id in stale:
        event_dispatch_task.apply_async(kwargs={"event_id": event_id})
    return len(due), len(stale)
