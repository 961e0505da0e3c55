from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


def _python_module(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


class Command(BaseCommand):
    help = (
        "Run the hub: the API under gunicorn, a Celery worker and Celery beat, as child processes "
        "that all stop on Ctrl-C or SIGTERM."
    )
    requires_system_checks = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HUB_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("HUB_PORT", "8000")))
        parser.add_argument(
            "--workers", type=int, default=int(os.environ.get("HUB_WEB_WORKERS", "2"))
        )
        parser.add_argument(
            "--threads", type=int, default=int(os.environ.get("HUB_WEB_THREADS", "4"))
        )
        parser.add_argument("--no-worker", action="store_true", help="do not start a Celery worker")
        parser.add_argument("--no-beat", action="store_true", help="do not start Celery beat")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        commands: dict[str, list[str]] = {
            "api": _python_module(
                "gunicorn",
                "hub.wsgi:application",
                "--bind",
                f"{host}:{port}",
                "--workers",
                str(options["workers"]),
                "--threads",
                str(options["threads"]),
                "--worker-class",
                "gthread",
                "--graceful-timeout",
                "10",
                "--access-logfile",
                "-" if os.environ.get("HUB_ACCESS_LOG") else "/dev/null",
            ),
        }
        if not options["no_worker"]:
            commands["worker"] = _python_module(
                "celery",
                "-A",
                "hub",
                "worker",
                "--loglevel",
                "WARNING",
                "--concurrency",
                "2",
                "-Q",
                settings.CELERY_TASK_DEFAULT_QUEUE,
                "--without-mingle",
                "--without-gossip",
            )
        if not options["no_beat"]:
            commands["beat"] = _python_module(
                "celery",
                "-A",
                "hub",
                "beat",
                "--loglevel",
                "WARNING",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            )
        children: dict[str, subprocess.Popen[bytes]] = {}
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, command in commands.items():
            children[name] = subprocess.Popen(command)  # noqa: S603
        base = f"http://{host}:{port}"
        self.stdout.write(
            f"hub serving on {base}\n  API docs   {base}/v1/docs\n"
            f"  OpenAPI    {base}/v1/openapi.json\n  health     {base}/v1/health\n  processes  "
            + ", ".join(f"{n} (pid {p.pid})" for n, p in children.items())
            + f"\n  data       {settings.DATA_DIR}\nPress Ctrl-C to stop.",
        )
        self.stdout.flush()
        exit_code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"{name} exited with {child.returncode}; stopping the rest")
                    exit_code = 1
                    stopping = True
                    break
            time.sleep(0.2)
        self._stop_all(children)
        if exit_code:
            raise SystemExit(exit_code)

    def _stop_all(self, children: dict[str, subprocess.Popen[bytes]]) -> None:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.stdout.write("hub stopped")
