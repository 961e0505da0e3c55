from __future__ import annotations

import os
import sys
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run a Celery worker on the hub's queue (replaces this process)."
    requires_system_checks = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument("--loglevel", default="INFO")
        parser.add_argument("--beat", action="store_true", help="also run the periodic scheduler")

    def handle(self, *args: Any, **options: Any) -> None:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "hub",
            "worker",
            "--loglevel",
            options["loglevel"],
            "--concurrency",
            str(options["concurrency"]),
            "-Q",
            settings.CELERY_TASK_DEFAULT_QUEUE,
            "--without-mingle",
            "--without-gossip",
        ]
        if options["beat"]:
            argv += ["--beat", "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME]
        sys.stdout.flush()
        os.execv(sys.executable, argv)  # noqa: S606
