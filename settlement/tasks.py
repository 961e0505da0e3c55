"""Celery tasks of the settlement app: ids in, state re-read."""

from __future__ import annotations

from celery import shared_task

from settlement.ledger import holds_expire_due
from settlement.payins import payin_submit, payins_unsent, refund_submit, refunds_unsent
from settlement.payouts import payout_submit, payouts_unsent
from settlement.runs import (
    settlement_run_execute,
    settlement_runs_stalled,
    settlement_runs_start_due,
)


@shared_task(name="hub.ledger_expire_holds")
def ledger_expire_holds_task() -> int:
    """Release every pending transfer whose timeout has passed, a thousand at a time."""
    total = 0
    while True:
        done = holds_expire_due()
        total += done
        if done < 1000:
            return total


@shared_task(name="hub.payout_submit")
def payout_submit_task(*, payout_id: str) -> str:
    return payout_submit(payout_id=payout_id)


@shared_task(name="hub.payouts_send_unsent")
def payouts_send_unsent_task() -> int:
    """Send every payout whose own task was lost (a worker died before it ran)."""
    unsent = payouts_unsent()
    for payout_id in unsent:
        payout_submit_task.apply_async(kwargs={"payout_id": payout_id})
    return len(unsent)


@shared_task(name="hub.payin_submit")
def payin_submit_task(*, payin_id: str) -> str:
    return payin_submit(payin_id=payin_id)


@shared_task(name="hub.payins_send_unsent")
def payins_send_unsent_task() -> int:
    """Send every payin whose first call never happened."""
    unsent = payins_unsent()
    for payin_id in unsent:
        payin_submit_task.apply_async(kwargs={"payin_id": payin_id})
    return len(unsent)


@shared_task(name="hub.refund_submit")
def refund_submit_task(*, refund_id: str) -> str:
    return refund_submit(refund_id=refund_id)


@shared_task(name="hub.refunds_send_unsent")
def refunds_send_unsent_task() -> int:
    """Send every refund whose own task was lost."""
    unsent = refunds_unsent()
    for refund_id in unsent:
        refund_submit_task.apply_async(kwargs={"refund_id": refund_id})
    return len(unsent)


@shared_task(name="hub.settlement_run_execute")
def settlement_run_execute_task(*, run_id: str) -> str:
    return settlement_run_execute(run_id=run_id)


@shared_task(name="hub.settlement_runs")
def settlement_runs_task() -> dict[str, int]:
    """Start the runs of the business days that closed, and take over the runs whose worker
    died (their lease ran out)."""
    started = settlement_runs_start_due()
    stalled = [run_id for run_id in settlement_runs_stalled() if run_id not in started]
    for run_id in stalled:
        settlement_run_execute_task.apply_async(kwargs={"run_id": run_id})
    return {"started": len(started), "resumed": len(stalled)}
