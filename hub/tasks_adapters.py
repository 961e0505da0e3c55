"""Celery tasks for adapter operations: the repair sweep and one status sync."""

from __future__ import annotations

from celery import shared_task

from hub.services.adapters.inbound import inbound_apply_due
from hub.services.adapters.operations import operation_sync, operations_claim_due


@shared_task(name="hub.adapter_operation_sync")
def adapter_operation_sync_task(*, operation_id: str) -> str:
    return operation_sync(operation_id=operation_id).state


@shared_task(name="hub.adapter_repair")
def adapter_repair_task() -> int:
    """Every pending or unknown operation that is due gets a status sync; nothing stays pending
    silently (``operation_observe`` escalates when the schedule is spent). Each is claimed
    first, so that one sync at a time is in flight per operation however often this runs."""
    due = operations_claim_due()
    for operation_id in due:
        adapter_operation_sync_task.apply_async(kwargs={"operation_id": operation_id})
    return len(due)


@shared_task(name="hub.inbound_apply")
def inbound_apply_task() -> int:
    """Apply the institutions' notifications that were received and are due."""
    return inbound_apply_due()
