"""A real HTTP receiver on loopback that records what it is sent and answers from a script:
a status code, a delay past the client's timeout, a connection reset, or a status with a body."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


DEFAULT_BODY = b'{"ok":true}'


@dataclass
class Receiver:
    url: str
    # One entry per request, in order; once spent, every request gets ``default``. An entry is
    # an int status, ("sleep", seconds, status), ("body", status, bytes) or "reset".
    script: list[object] = field(default_factory=list)
    default: object = 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_action(self) -> object:
        with self.lock:
            return self.script.pop(0) if self.script else self.default

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} requests, got {len(self.received)}")


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.received.append(
                    Received(
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        time.time(),
                    )
                )
            action = receiver.next_action()
            if action == "reset":
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.close_connection = True
                return
            status: Any = action
            payload = DEFAULT_BODY
            if isinstance(action, tuple) and action[0] == "sleep":
                time.sleep(float(action[1]))
                status = action[2]
            elif isinstance(action, tuple) and action[0] == "body":
                status, payload = action[1], action[2]
            self.send_response(int(status))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has gone by the time a sleeping answer is written.
        pass


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    """``receiver_factory(script=[500, "reset"], default=200)``: as many receivers as a test
    needs, each on its own port, all stopped afterwards."""
    servers: list[_QuietServer] = []

    def start(script: list[object] | None = None, default: object = 200) -> Receiver:
        server = _QuietServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        port = server.server_address[1]
        recv = Receiver(url=f"http://127.0.0.1:{port}/hooks", script=list(script or []))
        recv.default = default
        server.RequestHandlerClass = _handler(recv)
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        servers.append(server)
        return recv

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver(receiver_factory: Callable[..., Receiver]) -> Receiver:
    return receiver_factory()
