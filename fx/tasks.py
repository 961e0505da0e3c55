"""Celery tasks of the FX app: ids in, state re-read."""

from __future__ import annotations

from celery import shared_task

from fx.auto import auto_convert_recent, auto_convert_run


@shared_task(name="hub.fx_auto_convert_run")
def auto_convert_run_task(*, run_id: str) -> int:
    return len(auto_convert_run(run_id=run_id))


@shared_task(name="hub.fx_auto_convert_sweep")
def auto_convert_sweep_task() -> int:
    """Convert what runs of the last two days left unconverted (a lost task)."""
    return auto_convert_recent()
