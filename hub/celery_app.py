from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")


class _DjangoCelerySettings(Mapping[str, Any]):
    """Django's ``CELERY_*`` settings, copied into a dict when Celery first reads its
    configuration. Celery looks up several settings for every task it sends, each under a few
    names; read through Django's settings object, the names that are not set cost an exception
    each (a fifth of a send's CPU)."""

    def __init__(self) -> None:
        self._copy: dict[str, Any] | None = None

    def _settings(self) -> dict[str, Any]:
        if self._copy is None:
            from django.conf import settings

            self._copy = {
                name: getattr(settings, name)
                for name in dir(settings)
                if name.startswith("CELERY_")
            }
        return self._copy

    def __getitem__(self, key: str) -> Any:
        return self._settings()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._settings())

    def __len__(self) -> int:
        return len(self._settings())


app = Celery("hub")
app.config_from_object(_DjangoCelerySettings(), namespace="CELERY")


@worker_process_shutdown.connect
def _hand_off_events(**kwargs: object) -> None:
    """A worker's child process ends with ``os._exit``, which skips the exit hooks: the events
    its tasks committed that still wait for the hand-off go now."""
    from hub.services.events import hand_off_flush

    hand_off_flush()


app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule(sender: Celery, **kwargs: object) -> None:
    from django.conf import settings

    # Signatures by name: the app may be finalized before hub.tasks is imported (any process
    # that touches the app early), and a registry lookup would then drop the whole schedule.
    sender.add_periodic_task(
        settings.HUB["WEBHOOK_SWEEP_SECONDS"],
        sender.signature("hub.webhook_sweep"),
        name="webhook sweep",
    )
    sender.add_periodic_task(
        3600.0, sender.signature("hub.idempotency_purge"), name="idempotency purge"
    )
    sender.add_periodic_task(
        settings.HUB["ADAPTER_REPAIR_SECONDS"],
        sender.signature("hub.adapter_repair"),
        name="adapter operation repair",
    )
    sender.add_periodic_task(
        settings.HUB["INBOUND_APPLY_SECONDS"],
        sender.signature("hub.inbound_apply"),
        name="inbound notifications apply",
    )
    sender.add_periodic_task(
        settings.HUB["LEDGER_EXPIRE_SECONDS"],
        sender.signature("hub.ledger_expire_holds"),
        name="ledger holds expiry",
    )
    sender.add_periodic_task(
        settings.HUB["PAYOUTS_SWEEP_SECONDS"],
        sender.signature("hub.payouts_send_unsent"),
        name="payouts sweep",
    )
    sender.add_periodic_task(
        settings.HUB["PAYOUTS_SWEEP_SECONDS"],
        sender.signature("hub.refunds_send_unsent"),
        name="refunds sweep",
    )
    sender.add_periodic_task(
        settings.HUB["PAYOUTS_SWEEP_SECONDS"],
        sender.signature("hub.payins_send_unsent"),
        name="payins sweep",
    )
    sender.add_periodic_task(
        300.0, sender.signature("hub.fx_auto_convert_sweep"), name="fx auto-conversion sweep"
    )
    sender.add_periodic_task(
        settings.HUB["SETTLEMENT_RUNS_SECONDS"],
        sender.signature("hub.settlement_runs"),
        name="settlement runs",
    )
    sender.add_periodic_task(
        settings.HUB["TRANSPARENCY_CHECKPOINT_SECONDS"],
        sender.signature("hub.transparency_checkpoint"),
        name="transparency checkpoints",
    )
    sender.add_periodic_task(
        settings.HUB["TRANSPARENCY_CHECK_SECONDS"],
        sender.signature("hub.transparency_check"),
        name="transparency log check",
    )
    sender.add_periodic_task(
        settings.HUB["RECEIPTS_SWEEP_SECONDS"],
        sender.signature("hub.receipts_issue"),
        name="receipts sweep",
    )
    sender.add_periodic_task(
        settings.HUB["TRANSPARENCY_CHECK_SECONDS"],
        sender.signature("hub.receipts_check"),
        name="receipts check",
    )
