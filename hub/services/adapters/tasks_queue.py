"""The operator's queue: what the hub will not decide on its own."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from hub import errors
from hub.models import OperatorTask
from hub.principal import Principal


@transaction.atomic(durable=True)
def operator_task_resolve(*, task_id: str, actor: Principal, note: str) -> OperatorTask:
    task = (
        OperatorTask.objects.select_for_update().filter(pk=task_id, livemode=actor.livemode).first()
    )
    if task is None:
        raise errors.NotFound()
    if task.status == OperatorTask.Status.RESOLVED:
        raise errors.Conflict("The task is already resolved.", code="operator_task_resolved")
    task.status = OperatorTask.Status.RESOLVED
    task.note = note
    task.resolved_by = actor.participant.pk
    task.resolved_at = timezone.now()
    task.save()
    return task
