"""The one way to send a Celery task from a write: after the transaction commits, with ids only."""

from __future__ import annotations

from typing import Any

from django.db import transaction


def enqueue_after_commit(task: Any, **kwargs: str | int) -> None:
    transaction.on_commit(lambda: task.apply_async(kwargs=kwargs))
