"""Events: written in the transaction of the change they describe (a transactional outbox) and
fanned out to webhook endpoints by a task sent after commit; the relay task catches any event
whose hand-off was lost."""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import transaction

from hub.fastinsert import insert, insert_statement
from hub.models import Event, Participant
from hub.principal import Principal

logger = logging.getLogger("hub.events")

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
    alongside: list[tuple[str, list[Any]]] | None = None,
) -> Event:
    """Write the event in the transaction of the change; it is handed to the workers after the
    commit. ``alongside`` (PostgreSQL): the event's ``INSERT`` is appended to it for the caller
    to send with a statement of its own (a ledger write's ``alongside``), one round trip fewer;
    an event of a type with handlers is written at once all the same, as they may read it."""
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
    if alongside is None or _HANDLERS.get(type):
        insert(event)  # a handler may read it
    else:
        alongside.append(insert_statement(event))
    transaction.on_commit(lambda: _hand_off(event.pk))
    for handler in _HANDLERS.get(type, ()):
        handler(event)
    return event


# --- hand-off to the workers ----------------------------------------------------------------------

# Committed events of this process not yet sent to a worker. Threads that commit while one of
# them is sending leave their events to it, and it sends them all in one task when it is done.
# An event alone, in a process that sent nothing for HAND_OFF_LINGER seconds, goes at once from
# the thread that committed it. In a busier process the event waits up to that long for the
# others committed meanwhile, and a thread of its own sends them in one task, then another every
# HAND_OFF_LINGER seconds while more come: sending a task costs a third of a small request's CPU,
# so under load a process sends a task per few milliseconds rather than per event, and the
# requests that committed do not wait for it. A committing thread sends at most HAND_OFF_ROUNDS
# batches before a thread of its own takes over the rest, so that no request waits long on the
# others' events. An event whose task could not be sent (the broker down) stays undispatched:
# the relay (``webhook_sweep``) sends it; the change it describes has committed, so its request
# does not fail for it. What waits when the process ends is sent then (``hand_off_flush``).
HAND_OFF_BATCH = 500
HAND_OFF_ROUNDS = 4
HAND_OFF_LINGER = 0.01
_SENDER = "hub-event-hand-off"
_waiting: list[str] = []
_lock = threading.Lock()
_sending = False
_last_sent = -math.inf


def _after_fork() -> None:
    """A child starts with no sender and nothing waiting (its parent's thread is not in it)."""
    global _lock, _sending, _last_sent
    _lock = threading.Lock()
    _sending = False
    _last_sent = -math.inf
    _waiting.clear()


os.register_at_fork(after_in_child=_after_fork)


def _hand_off(event_id: str) -> None:
    global _sending
    with _lock:
        _waiting.append(event_id)
        if _sending:
            return  # the sender takes it with its next batch
        _sending = True
        wait = _last_sent + HAND_OFF_LINGER - time.monotonic()
    if wait > 0:
        _start(_drain_later, wait)
    elif not _drain(rounds=HAND_OFF_ROUNDS):
        _start(_drain)


def _start(target: Callable[..., object], *args: object) -> None:
    """A sender thread of the process's own; where none can start, the calling thread sends."""
    try:
        threading.Thread(target=target, args=args, name=_SENDER, daemon=True).start()
    except RuntimeError:
        logger.warning("no thread to hand events off from: sending them now", exc_info=True)
        _drain()


def _drain(rounds: int | None = None) -> bool:
    """Send the waiting events, a batch at a time, until none is left (True) or ``rounds``
    batches are sent (False: the caller is still the sender and hands the rest on)."""
    sent = 0
    while rounds is None or sent < rounds:
        ids = _take()
        if not ids:
            return True
        _send_logged(ids)
        sent += 1
    return False


def _drain_later(wait: float) -> None:
    """Send what waits every HAND_OFF_LINGER seconds (the first after ``wait``) until nothing
    waits at the end of one."""
    while True:
        time.sleep(wait)
        ids = _take()
        if not ids:
            return
        _send_logged(ids)
        wait = HAND_OFF_LINGER if len(ids) < HAND_OFF_BATCH else 0.0


def _take() -> list[str]:
    """The next batch to send; none left ends the sender's turn."""
    global _sending
    with _lock:
        ids = _waiting[:HAND_OFF_BATCH]
        del _waiting[:HAND_OFF_BATCH]
        if not ids:
            _sending = False
        return ids


def _send_logged(ids: list[str]) -> None:
    global _last_sent
    try:
        _send(ids)
    except Exception:
        logger.warning("events not handed off, the relay sends them: %s", ids, exc_info=True)
    _last_sent = time.monotonic()


@atexit.register
def hand_off_flush(timeout: float = 5.0) -> None:
    """Send the events waiting for a sender now, and let a send under way end (for up to
    ``timeout`` seconds): for a process that ends, whose daemon threads end with it. Run at a
    normal exit, and by a Celery worker's child as it ends (it skips the exit hooks)."""
    global _sending
    with _lock:
        waiting = bool(_waiting)
        if waiting:
            _sending = True
    if waiting:
        _drain()
    for thread in threading.enumerate():
        if thread.name == _SENDER and thread is not threading.current_thread():
            thread.join(timeout)


def _send(ids: list[str]) -> None:
    from hub.tasks import event_dispatch_many_task, event_dispatch_task

    if len(ids) == 1:
        event_dispatch_task.apply_async(kwargs={"event_id": ids[0]})
    else:
        event_dispatch_many_task.apply_async(kwargs={"event_ids": ids})
