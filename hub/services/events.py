"""Events: written in the transaction of the change they describe (a transactional outbox) and
fanned out to webhook endpoints by a task sent after commit; the relay task catches any event
whose hand-off was lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction

from hub.fastinsert import insert
from hub.jobs import enqueue_after_commit
from hub.models import Event, Participant
from hub.principal import Principal

# Every event type the hub emits. Webhook endpoints subscribe to these (or "*").
EVENT_TYPES: set[str] = {
    "participant.created",
    "participant.updated",
    "api_key.created",
    "api_key.revoked",
    "api_key.rotated",
    "webhook_endpoint.created",
    "webhook_endpoint.updated",
}


def register_event_types(*types: str) -> None:
    """Later apps add their own types at import time."""
    EVENT_TYPES.update(types)


# Later apps follow the core's changes by event type (an app never imports a later one).
_HANDLERS: dict[str, list[Callable[[Event], None]]] = {}


def register_event_handler(type: str, handler: Callable[[Event], None]) -> None:
    """Call ``handler(event)`` for every event of ``type``, inside the transaction that emits it:
    what the handler writes commits or rolls back with the change the event describes. A
    handler writes to the database only (no outbound call) and raises only when the change
    itself must not stand."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unregistered event type {type!r}")
    _HANDLERS.setdefault(type, []).append(handler)


def event_emit(
    *,
    type: str,
    owner: Participant,
    data: dict[str, Any],
    actor: Principal | None = None,
    livemode: bool | None = None,
) -> Event:
    if type not in EVENT_TYPES:
        raise ValueError(f"unregistered event type {type!r}")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("events are written inside the transaction of the change")
    mode = actor.livemode if actor is not None else livemode
    if mode is None:
        raise ValueError("an event needs a mode: pass actor or livemode")
    event = Event(
        type=type,
        participant=owner,
        livemode=mode,
        data=data,
        request_id=actor.request_id if actor is not None else "",
    )
    insert(event)
    from hub.tasks import event_dispatch_task

    enqueue_after_commit(event_dispatch_task, event_id=event.pk)
    for handler in _HANDLERS.get(type, ()):
        handler(event)
    return event
