from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

app = Celery("hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule(sender: Celery, **kwargs: object) -> None:
    from django.conf import settings

    sender.add_periodic_task(
        settings.HUB["WEBHOOK_SWEEP_SECONDS"],
        sender.tasks["hub.webhook_sweep"].s(),
        name="webhook sweep",
    )
    sender.add_periodic_task(
        3600.0, sender.tasks["hub.idempotency_purge"].s(), name="idempotency purge"
    )
