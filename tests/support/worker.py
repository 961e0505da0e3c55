"""A real Celery worker process for tests that need task delivery, on the test database and the
configured broker (the file-system broker under HUB_DATA_DIR, or Redis in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

import hub.tasks
from hub.celery_app import app as celery_app
from hub.services import events
from hub.tasks import ping_task

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None], *, timeout: float = 30, what: str = "", log: Path | None = None
) -> T:
    """Poll ``check`` until it returns something truthy and return that; fail after ``timeout``
    seconds with ``what``, the last value seen, and the end of the worker's log if given."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = ("\nworker log:\n" + log.read_text()[-4000:]) if log and log.exists() else ""
            raise AssertionError(f"timed out waiting for {what or check}: last {value!r}{tail}")
        time.sleep(0.1)


def test_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return "sqlite:///" + str(Path(db["NAME"]).resolve())
    user = quote(db["USER"] or "")
    password = (":" + quote(db["PASSWORD"])) if db["PASSWORD"] else ""
    return (
        f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "hub",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "-Q",
            settings.CELERY_TASK_DEFAULT_QUEUE,
            "--without-mingle",
            "--without-gossip",
            "--hostname",
            f"test-{os.getpid()}@%h",
        ]
        celery_app.control.purge()  # messages left by an earlier, interrupted run
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        marker = Path(tempfile.mkdtemp()) / "ping"
        ping_task.delay(path=str(marker))
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    "the Celery worker did not start:\n" + self.log.read_text()[-4000:]
                )
            time.sleep(0.1)

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def celery_worker_factory(
    transactional_db: None, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes with extra environment (e.g. a short webhook retry schedule)."""
    started: list[WorkerProcess] = []

    def start(**extra_env: str) -> WorkerProcess:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=test_database_url(),
            HUB_DATA_DIR=str(settings.DATA_DIR),
            HUB_CELERY_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE,
            CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL", ""),
            HUB_LOG_LEVEL="INFO",
        )
        env.update(extra_env)
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        worker.start()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def celery_worker(celery_worker_factory: Callable[..., WorkerProcess]) -> WorkerProcess:
    return celery_worker_factory()


@dataclass
class SentTasks:
    """What the hub handed to Celery, recorded instead of sent: (task name, kwargs, options)."""

    calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for n, kwargs, _ in self.calls if n == name]


class _Recorder:
    def __init__(self, name: str, sent: SentTasks) -> None:
        self.name, self.sent = name, sent

    def apply_async(self, kwargs: dict[str, Any], **options: Any) -> None:
        self.sent.calls.append((self.name, dict(kwargs), options))


@pytest.fixture
def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> SentTasks:
    """Record the event and webhook tasks the hub sends (the services import them from
    ``hub.tasks`` when they send), so in-process tests can see what a worker would get."""
    # An earlier test's events still waiting for their sender go first, to the real broker.
    events.hand_off_flush()
    # Each event is sent as its commit returns, as in a process idle between requests.
    monkeypatch.setattr(events, "HAND_OFF_LINGER", 0.0)
    sent = SentTasks()
    monkeypatch.setattr(hub.tasks, "event_dispatch_task", _Recorder("hub.event_dispatch", sent))
    monkeypatch.setattr(
        hub.tasks, "event_dispatch_many_task", _Recorder("hub.event_dispatch_many", sent)
    )
    monkeypatch.setattr(hub.tasks, "webhook_attempt_task", _Recorder("hub.webhook_attempt", sent))
    return sent
