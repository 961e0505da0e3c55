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

from hub.conf import hub_settings


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
        parser.add_argument(
            "--worker-class",
            choices=["gthread", "sync"],
            default="gthread",
            help="gunicorn worker class (default gthread). sync: one request at a time per worker "
            "process and no keep-alive; it needs --threads 1, else gunicorn runs gthread",
        )
        parser.add_argument("--no-worker", action="store_true", help="do not start a Celery worker")
        parser.add_argument("--no-beat", action="store_true", help="do not start Celery beat")
        parser.add_argument(
            "--no-sandbox",
            action="store_true",
            help="do not start the sandbox institutions (they run only where HUB_SANDBOX allows)",
        )

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
                options["worker_class"],
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
        base = f"http://{host}:{port}"
        sandboxes = self._start_sandboxes(base) if not options["no_sandbox"] else []
        for name, command in commands.items():
            children[name] = subprocess.Popen(command)  # noqa: S603
        self.stdout.write(
            f"hub serving on {base}\n  API docs   {base}/v1/docs\n"
            f"  OpenAPI    {base}/v1/openapi.json\n  health     {base}/v1/health\n  processes  "
            + ", ".join(f"{n} (pid {p.pid})" for n, p in children.items())
            + "".join(f"\n  sandbox    {s.name} {s.base_url}" for s in sandboxes)
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
        for sandbox in sandboxes:
            sandbox.stop()
        if exit_code:
            raise SystemExit(exit_code)

    def _start_sandboxes(self, hub_url: str) -> list[Any]:
        """The sandbox institutions, in this process, on their fixed ports; a busy port (another
        hub serving) is reported and the hub runs without them."""
        if not hub_settings.SANDBOX_ALLOWED:
            return []
        from hub.sandbox import start_sandbox_institutions

        try:
            return start_sandbox_institutions(hub_url)
        except OSError as exc:
            self.stderr.write(f"sandbox institutions not started: {exc}")
            return []

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
