"""Celery tasks of the FX app: ids in, state re-read."""

from __future__ import annotations

from celery import shared_task

from fx.auto import auto_convert_run


@shared_task(name="hub.fx_auto_convert_run")
def auto_convert_run_task(*, run_id: str) -> int:
    return len(auto_convert_run(run_id=run_id))
