"""Reads of adapter connections, operations and the operator's queue, scoped to the caller: a
participant sees its own connections and their operations, an operator everything (per mode)."""

from __future__ import annotations

from django.db.models import QuerySet

from hub import errors
from hub.models import AdapterConnection, AdapterOperation, OperatorTask
from hub.principal import Principal


def adapter_connections_visible(*, actor: Principal) -> QuerySet[AdapterConnection]:
    queryset = AdapterConnection.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.filter(participant=actor.participant)


def adapter_connection_get(*, actor: Principal, connection_id: str) -> AdapterConnection:
    connection = adapter_connections_visible(actor=actor).filter(pk=connection_id).first()
    if connection is None:
        raise errors.NotFound()
    return connection


def adapter_operations_visible(*, actor: Principal) -> QuerySet[AdapterOperation]:
    queryset = AdapterOperation.objects.filter(connection__livemode=actor.livemode)
    if not actor.is_operator:
        queryset = queryset.filter(connection__participant=actor.participant)
    return queryset


def adapter_operation_get(*, actor: Principal, operation_id: str) -> AdapterOperation:
    operation = adapter_operations_visible(actor=actor).filter(pk=operation_id).first()
    if operation is None:
        raise errors.NotFound()
    return operation


def operator_tasks_visible(*, actor: Principal) -> QuerySet[OperatorTask]:
    return OperatorTask.objects.filter(livemode=actor.livemode)


def operator_task_get(*, actor: Principal, task_id: str) -> OperatorTask:
    task = operator_tasks_visible(actor=actor).filter(pk=task_id).first()
    if task is None:
        raise errors.NotFound()
    return task
