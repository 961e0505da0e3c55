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


@shared_task(name="hub.receipts_issue")
def receipts_issue_task() -> int:
    """Issue every receipt that is due (also the sweep for a lost task)."""
    from fx.receipts import receipts_issue_all

    return receipts_issue_all()


@shared_task(name="hub.receipts_check")
def receipts_check_task() -> int:
    """Every stored receipt against the log; an operator alert names any that changed."""
    from fx.receipts import receipts_check_and_alert

    return sum(len(receipts_check_and_alert(livemode=mode)) for mode in (False, True))
