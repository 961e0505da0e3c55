"""Helpers for writing a driver: a client for the control API every ``adapters.sandbox.base``
sandbox has (``/_sandbox/...``), and a loopback endpoint that keeps the webhooks it is sent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from adapters.conformance.hook import Notification


class SandboxControlError(RuntimeError):
    """The sandbox's control API refused a request (a bug in the driver or the sandbox)."""


class SandboxControl:
    """Calls ``<base_url>/_sandbox/<path>``; also queues faults the way ``FaultDriver`` asks.

    ``fault_operations`` maps the adapter method the kit names (``create_payout``) to the
    sandbox's route name faults are queued for (``payout_create``).
    """

    fault_operations: Mapping[str, str] = {}

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(timeout=10.0, trust_env=False, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **params: str) -> Any:
        return self._check(self.http.get(f"{self.base_url}/_sandbox{path}", params=params))

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self._check(self.http.post(f"{self.base_url}/_sandbox{path}", json=body or {}))

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        if response.status_code != 200:
            raise SandboxControlError(
                f"{response.request.method} {response.request.url.path} answered "
                f"HTTP {response.status_code}: {response.text[:300]}"
            )
        return response.json()

    def inject_fault(self, *, operation: str, fault: str) -> None:
        route = self.fault_operations.get(operation)
        if route is None:
            raise SandboxControlError(f"this sandbox injects no fault into {operation}")
        self.post("/faults", {"operation": route, "fault": fault, "count": 1})


Match = Callable[[Notification], bool]


class WebhookInbox:
    """A webhook endpoint on loopback (``url``) that answers 200 and keeps every notification,
    headers and raw body as received, in arrival order."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.received: list[Notification] = []
        self._cond = threading.Condition()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with inbox._cond:
                    inbox.received.append(Notification(dict(self.headers.items()), body))
                    inbox._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="conformance-inbox",
            daemon=True,
        )
        self._thread.start()
        self.url = f"http://{host}:{self._server.server_address[1]}/webhooks"

    def count(self) -> int:
        with self._cond:
            return len(self.received)

    def wait_for(self, match: Match, *, after: int = 0, timeout: float = 5.0) -> Notification:
        """The latest notification received after the first ``after`` that ``match`` accepts,
        waiting up to ``timeout`` seconds for one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [n for n in self.received[after:] if match(n)]
                if found:
                    return found[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching notification reached {self.url}")
                self._cond.wait(left)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def json_field(notification: Notification, *path: str) -> Any:
    """``body[path[0]][path[1]]...`` of a JSON notification, or None."""
    try:
        value: Any = json.loads(notification.body)
    except ValueError:
        return None
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
