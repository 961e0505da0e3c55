"""Celery tasks of the settlement app: ids in, state re-read."""

from __future__ import annotations

from celery import shared_task

from settlement.ledger import holds_expire_due
from settlement.payouts import payout_submit, payouts_unsent


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
