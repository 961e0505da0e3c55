"""Celery tasks of the settlement app: ids in, state re-read."""

from __future__ import annotations

from celery import shared_task

from settlement.ledger import holds_expire_due


@shared_task(name="hub.ledger_expire_holds")
def ledger_expire_holds_task() -> int:
    """Release every pending transfer whose timeout has passed, a thousand at a time."""
    total = 0
    while True:
        done = holds_expire_due()
        total += done
        if done < 1000:
            return total
