"""Celery tasks: ids in, state re-read, act only from the state expected."""

from __future__ import annotations

import logging
import os

from celery import shared_task

from hub.services.idempotency import idempotency_purge
from hub.services.webhooks import event_dispatch, webhook_attempt, webhook_sweep
from hub.tasks_adapters import adapter_operation_sync_task, adapter_repair_task, inbound_apply_task
from hub.tasks_transparency import transparency_check_task, transparency_checkpoint_task

logger = logging.getLogger("hub.events")


@shared_task(name="hub.event_dispatch")
def event_dispatch_task(*, event_id: str) -> int:
    return event_dispatch(event_id=event_id)


@shared_task(name="hub.event_dispatch_many")
def event_dispatch_many_task(*, event_ids: list[str]) -> int:
    """Events committed together in one process, sent as one task. One that fails is left
    undispatched for the relay (``webhook_sweep``); the others go on."""
    created = 0
    for event_id in event_ids:
        try:
            created += event_dispatch(event_id=event_id)
        except Exception:
            logger.warning("event %s not dispatched, the relay sends it", event_id, exc_info=True)
    return created


@shared_task(name="hub.webhook_attempt")
def webhook_attempt_task(*, delivery_id: str, attempt: int, lease: str = "") -> str | None:
    return webhook_attempt(delivery_id=delivery_id, attempt=attempt, lease=lease)


@shared_task(name="hub.webhook_sweep")
def webhook_sweep_task() -> tuple[int, int]:
    return webhook_sweep()


@shared_task(name="hub.idempotency_purge")
def idempotency_purge_task() -> int:
    return idempotency_purge()


@shared_task(name="hub.ping")
def ping_task(*, path: str) -> None:
    """Touches a file: lets tests and ``hub serve`` see that a worker consumes the queue."""
    with open(path, "w") as handle:
        handle.write(str(os.getpid()))


__all__ = [
    "adapter_operation_sync_task",
    "adapter_repair_task",
    "event_dispatch_many_task",
    "event_dispatch_task",
    "idempotency_purge_task",
    "inbound_apply_task",
    "ping_task",
    "transparency_check_task",
    "transparency_checkpoint_task",
    "webhook_attempt_task",
    "webhook_sweep_task",
]
