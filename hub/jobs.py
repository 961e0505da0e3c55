"""The one way to send a Celery task from a write: after the transaction commits, with ids only."""

from __future__ import annotations

from typing import Any

from django.db import transaction


def enqueue_after_commit(task: Any, *, countdown: float | None = None, **kwargs: str | int) -> None:
    """``countdown`` delays the task by that many seconds once it is sent (keep it short:
    brokers redeliver long-delayed messages after their visibility timeout)."""
    options = {} if countdown is None else {"countdown": countdown}
    transaction.on_commit(lambda: task.apply_async(kwargs=kwargs, **options))
