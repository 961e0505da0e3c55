"""Shared plumbing of the sandbox institutions: a real HTTP server on loopback, a route table, a
deterministic per-request fault queue, a log of what the sandbox did, and the control API.

Control API (every sandbox; never faulted, never authenticated, loopback only):

=============================  ===========================================================
``POST /_sandbox/faults``      ``{"operation": "<route name>", "fault": "...", "count": n}``
                               queues ``fault`` for the next ``n`` requests of that route
``GET /_sandbox/faults``       the faults still queued
``POST /_sandbox/reset``       forget every object, queued fault, log entry, clock shift and
                               configuration change (back to how the sandbox was started)
``GET /_sandbox/log``          what the sandbox did, oldest first (``?operation=`` filters)
``GET|POST /_sandbox/config``  read or change settings (``timeout_seconds`` and per sandbox)
``POST /_sandbox/clock``       ``{"advance_seconds": s}`` or ``{"now": "<ISO time>"}`` moves
                               the sandbox's business clock
``GET /_sandbox/state``        every object the sandbox holds
=============================  ===========================================================

Faults (``operation`` is a route name; ``count`` defaults to 1; queued faults apply in order):

====================  =====================================================================
``latency:<ms>``      wait, then process and answer normally (a wait longer than the client's
                      read timeout means the request lands after the client gave up)
``timeout_before``    hold the connection ``timeout_seconds`` without processing, then close
``timeout_after``     process the request, then hold the connection and close without an
                      answer. Bare ``timeout`` means ``timeout_after``: the request landed.
``reset_before``      close with SO_LINGER 0 (a TCP reset) without processing
``reset_after``       process, then reset. Bare ``reset`` means ``reset_after``.
``http_500``          answer 500 without processing (``http_500_after``: process first)
``http_503``          answer 503 without processing (``http_503_after``: process first)
``malformed_json``    process, then answer 200 with a truncated JSON body
====================  =====================================================================

Sandboxes that send webhooks accept more faults for their ``webhook`` operation (see there).

Each request to a route is logged when it arrives: ``operation``, ``method``, ``path``, ``fault``,
``processed`` (the route ran, whatever it answered), ``effect`` (what it did, e.g. "created
po_1"), ``status`` (what was sent; ``None`` when nothing was) and ``outcome`` ("answered",
"timeout", "reset", "malformed", "interrupted"). So "the request landed but the client saw a
timeout" reads ``processed: true, outcome: "timeout"``.
Every wait is cut short when the sandbox stops or is reset, and a request whose wait was cut
short is not processed afterwards (a reset never leaks into the next test).
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import json
import logging
import re
import socket
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger("adapters.sandbox")

CONTROL_PREFIX = "/_sandbox"
MAX_BODY = 1024 * 1024
MAX_FAULT_COUNT = 10_000
MAX_LOG = 10_000
DEFAULT_LATE_MS = 1000

# Faults on HTTP routes. Those with a phase take ``_before`` / ``_after``; the bare name's phase
# is given here.
_PHASED_FAULTS: dict[str, str] = {
    "timeout": "after",
    "reset": "after",
    "http_500": "before",
    "http_503": "before",
}
HTTP_FAULT_NAMES = frozenset({"latency", "malformed_json", *_PHASED_FAULTS})
# Faults on outgoing webhooks.
WEBHOOK_FAULT_NAMES = frozenset({"duplicate", "reorder", "late", "bad_signature"})


class FaultError(ValueError):
    """A fault that cannot be queued (unknown name, bad argument, unknown operation)."""


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour. ``kind`` is the name without phase or argument."""

    text: str  # as queued, e.g. "timeout_after" or "latency:250"
    kind: str
    phase: str = ""  # "before" | "after" | "" (not phased)
    millis: int = 0

    @property
    def is_webhook_fault(self) -> bool:
        return self.kind in WEBHOOK_FAULT_NAMES


def parse_fault(text: str) -> Fault:
    name, sep, arg = text.strip().partition(":")
    if name in ("latency", "late"):
        if not sep and name == "late":
            return Fault(text, "late", millis=DEFAULT_LATE_MS)
        try:
            millis = int(arg)
        except ValueError:
            raise FaultError(f"{name} needs milliseconds, as in {name}:250") from None
        if not 0 <= millis <= 600_000:
            raise FaultError(f"{name} takes 0 to 600000 milliseconds")
        return Fault(text, name, millis=millis)
    if sep:
        raise FaultError(f"the fault {name!r} takes no argument")
    if name in _PHASED_FAULTS:
        return Fault(text, name, phase=_PHASED_FAULTS[name])
    for kind in _PHASED_FAULTS:
        for phase in ("before", "after"):
            if name == f"{kind}_{phase}":
                return Fault(text, kind, phase=phase)
    if name == "malformed_json":
        return Fault(text, "malformed_json", phase="after")
    if name in WEBHOOK_FAULT_NAMES:
        return Fault(text, name)
    raise FaultError(f"unknown fault {text!r}")


class FaultQueue:
    """Faults waiting for the next matching requests, per operation, first queued first used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: dict[str, deque[list[Any]]] = {}

    def add(self, operation: str, fault: Fault, count: int = 1) -> None:
        if not 1 <= count <= MAX_FAULT_COUNT:
            raise FaultError(f"count must be 1 to {MAX_FAULT_COUNT}")
        with self._lock:
            self._queued.setdefault(operation, deque()).append([fault, count])

    def take(self, operation: str) -> Fault | None:
        with self._lock:
            queue = self._queued.get(operation)
            if not queue:
                return None
            slot = queue[0]
            slot[1] -= 1
            if slot[1] == 0:
                queue.popleft()
            fault: Fault = slot[0]
            return fault

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"operation": op, "fault": fault.text, "count": count}
                for op, queue in sorted(self._queued.items())
                for fault, count in queue
            ]

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()


class ApiError(Exception):
    """An error answer of a sandbox route (a 4xx the institution would send)."""

    def __init__(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = dict(body)
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return json_response(self.status, self.body, self.headers)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return Response(status, body, "application/json", dict(headers or {}))


@dataclass
class SandboxRequest:
    method: str
    path: str  # without the query
    target: str  # path and query exactly as sent
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # from the route's pattern
    # What processing did, for the log ("created po_1", "replayed pi_2"); set by handlers.
    effect: str | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> dict[str, Any]:
        """The body as a JSON object, or a 400 the sandbox's own way (``invalid``)."""
        if not self.body:
            return {}
        try:
            value = json.loads(self.body)
        except ValueError:
            raise ApiError(400, {"error": {"code": "invalid_json"}}) from None
        if not isinstance(value, dict):
            raise ApiError(400, {"error": {"code": "invalid_json"}})
        return value


Handler = Callable[[SandboxRequest], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler

    @classmethod
    def of(cls, method: str, pattern: str, name: str, handler: Handler) -> Route:
        return cls(method, re.compile(pattern), name, handler)


def _match(routes: list[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in routes:
        found = route.pattern.fullmatch(path)
        if found and route.method == method:
            return route, found.groupdict()
    return None


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._to_reset: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def mark_reset(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._open_lock:
            self._to_reset.add(sock)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
            reset = request in self._to_reset
        if reset:
            # No shutdown(SHUT_WR) first: that would send a FIN. A linger-0 close sends a RST.
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def drop_open_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 15  # idle keep-alive connections are dropped after this
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server_version = "SandboxInstitution/1"

    def _dispatch(self) -> None:
        server = self.server
        assert isinstance(server, _HttpServer)
        server.sandbox._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def utc_iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


class SandboxServer(abc.ABC):
    """A sandbox institution: a real HTTP server on loopback. ``start()`` binds (port 0 picks a
    free port), ``stop()`` ends it; also a context manager. ``base_url`` is what an adapter's
    ``base_url`` setting points at."""

    name: ClassVar[str] = "sandbox"
    # Operations that are not HTTP routes but accept webhook faults.
    webhook_operations: ClassVar[frozenset[str]] = frozenset()

    # How often the serving loop looks for a stop request: ``stop()`` takes up to this long.
    poll_interval: ClassVar[float] = 0.02

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, timeout_seconds: float = 30.0
    ) -> None:
        self.host = host
        self.port = port
        self._initial_timeout = timeout_seconds
        self.timeout_seconds = timeout_seconds
        self.lock = threading.RLock()  # every route and control handler runs under it
        self.faults = FaultQueue()
        self._log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._clock_offset = 0.0
        self._generation = 0
        self._interrupt = threading.Condition()
        self._stopping = False
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = self.routes()
        self._controls = self._base_controls() + self.control_routes()

    # -- what a concrete sandbox provides

    @abc.abstractmethod
    def routes(self) -> list[Route]:
        """The institution's API. Route names are the operations faults are queued for."""

    def control_routes(self) -> list[Route]:
        """Extra control endpoints (paths under ``/_sandbox/``)."""
        return []

    @abc.abstractmethod
    def reset_state(self) -> None:
        """Forget every object and restore the configuration the sandbox was started with."""

    def configure(self, values: dict[str, Any]) -> None:
        """Apply settings; raise ``ApiError`` for an unknown key or a bad value."""
        for key in values:
            raise ApiError(400, {"error": {"code": "unknown_setting", "param": key}})

    def config_view(self) -> dict[str, Any]:
        return {}

    def state_view(self) -> dict[str, Any]:
        return {}

    def on_start(self) -> None:  # noqa: B027 (a hook; most sandboxes need nothing here)
        """Called once the server listens (start helper threads here)."""

    def on_stop(self) -> None:  # noqa: B027
        """Called before the server closes (stop helper threads here)."""

    # -- lifecycle

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        with self._interrupt:
            self._stopping = False
        self._httpd = _HttpServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name=f"sandbox-{self.name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self.on_start()
        return self

    def stop(self) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        with self._interrupt:
            self._stopping = True
            self._interrupt.notify_all()
        self.on_stop()
        httpd.shutdown()
        httpd.server_close()
        httpd.drop_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the sandbox is not started")
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- time, waits and the log

    def now(self) -> float:
        """The sandbox's business clock (wall clock plus what ``/_sandbox/clock`` added)."""
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        with self.lock:
            self._clock_offset += seconds

    def set_clock(self, moment: datetime) -> None:
        """Make the business clock read ``moment`` now (it runs on from there)."""
        with self.lock:
            self._clock_offset = moment.timestamp() - time.time()

    def pause(self, seconds: float, generation: int | None = None) -> bool:
        """Wait ``seconds``; return False when cut short by a stop or a reset."""
        deadline = time.monotonic() + seconds
        with self._interrupt:
            while True:
                if self._stopping or (generation is not None and generation != self._generation):
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                self._interrupt.wait(left)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def record(self, **entry: Any) -> dict[str, Any]:
        """Append a log entry; the returned dict may be updated while the request goes on. The
        log keeps the last ``MAX_LOG`` entries."""
        entry = {"seq": next(self._seq), "at": utc_iso(self.now()), **entry}
        with self._log_lock:
            self._log.append(entry)
            if len(self._log) > MAX_LOG:
                del self._log[: len(self._log) - MAX_LOG]
        return entry

    def log(self, operation: str | None = None) -> list[dict[str, Any]]:
        with self._log_lock:
            return [
                dict(e) for e in self._log if operation is None or e.get("operation") == operation
            ]

    def reset(self) -> None:
        with self.lock:
            with self._interrupt:
                self._generation += 1
                self._interrupt.notify_all()
            self.faults.clear()
            with self._log_lock:
                self._log.clear()
            self._clock_offset = 0.0
            self.timeout_seconds = self._initial_timeout
            self.reset_state()

    def queue_fault(self, operation: str, fault: str, count: int = 1) -> Fault:
        parsed = parse_fault(fault)
        if parsed.is_webhook_fault:
            if operation not in self.webhook_operations:
                raise FaultError(f"{parsed.kind} is a webhook fault; {operation!r} sends none")
        elif operation not in {r.name for r in self._routes}:
            known = sorted({r.name for r in self._routes} | self.webhook_operations)
            raise FaultError(f"no operation {operation!r}; this sandbox has {', '.join(known)}")
        self.faults.add(operation, parsed, count)
        return parsed

    # -- the request path

    def _handle(self, h: _Handler) -> None:
        try:
            length = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            h.close_connection = True
            self._send(h, json_response(413, {"error": {"code": "body_too_large"}}))
            return
        body = h.rfile.read(length) if length else b""
        split = urlsplit(h.path)
        request = SandboxRequest(
            method=h.command,
            path=split.path,
            target=h.path,
            query={k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in h.headers.items()},
            body=body,
        )
        if split.path == CONTROL_PREFIX or split.path.startswith(CONTROL_PREFIX + "/"):
            self._send(h, self._run(self._controls, request, h.command))
            return
        found = _match(self._routes, h.command, split.path)
        if found is None:
            self.record(kind="request", operation=None, method=h.command, path=h.path, status=404)
            self._send(h, json_response(404, {"error": {"code": "route_not_found"}}))
            return
        route, request.params = found
        generation = self._generation
        fault = self.faults.take(route.name)
        entry = self.record(
            kind="request",
            operation=route.name,
            method=h.command,
            path=h.path,
            fault=fault.text if fault else None,
            processed=False,
            status=None,
            effect=None,
            outcome=None,
        )
        latency = fault.millis / 1000 if fault is not None and fault.kind == "latency" else 0
        if latency and not self.pause(latency, generation):
            entry["outcome"] = "interrupted"
            h.close_connection = True
            return
        if fault is not None and fault.phase == "before":
            self._misbehave(h, fault, entry, generation)
            return
        with self.lock:
            if generation != self._generation or self._stopping:
                entry["outcome"] = "interrupted"
                h.close_connection = True
                return
            response = self._run([route], request, h.command)
        entry.update(processed=True, effect=request.effect)
        if fault is not None and fault.phase == "after":
            self._misbehave(h, fault, entry, generation)
            return
        entry.update(status=response.status, outcome="answered")
        self._send(h, response)

    def _run(self, routes: list[Route], request: SandboxRequest, method: str) -> Response:
        found = _match(routes, method, request.path)
        if found is None:
            return json_response(404, {"error": {"code": "route_not_found"}})
        route, request.params = found
        try:
            with self.lock:
                return route.handler(request)
        except ApiError as exc:
            return exc.response()
        except Exception:
            logger.exception("sandbox %s failed on %s %s", self.name, method, request.target)
            return json_response(500, {"error": {"code": "sandbox_internal_error"}})

    def _misbehave(self, h: _Handler, fault: Fault, entry: dict[str, Any], generation: int) -> None:
        if fault.kind == "timeout":
            entry["outcome"] = "timeout"
            self.pause(self.timeout_seconds, generation)
            h.close_connection = True  # closed without an answer
        elif fault.kind == "reset":
            entry["outcome"] = "reset"
            server = h.server
            assert isinstance(server, _HttpServer)
            server.mark_reset(h.connection)
            h.close_connection = True
        elif fault.kind in ("http_500", "http_503"):
            status = int(fault.kind.removeprefix("http_"))
            entry.update(status=status, outcome="answered")
            self._send(
                h,
                json_response(
                    status,
                    {"error": {"type": "api_error", "message": f"sandbox fault {fault.text}"}},
                ),
            )
        elif fault.kind == "malformed_json":
            entry.update(status=200, outcome="malformed")
            self._send(h, Response(200, b'{"id": "sbx_malformed", "status": "succ'))
        else:  # pragma: no cover - parse_fault admits nothing else here
            raise AssertionError(fault.kind)

    def _send(self, h: _Handler, response: Response) -> None:
        try:
            h.send_response(response.status)
            h.send_header("Content-Type", response.content_type)
            h.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                h.send_header(name, value)
            if h.close_connection:
                h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(response.body)
        except OSError:  # the client went away; nothing to tell it
            h.close_connection = True

    # -- the control API every sandbox has

    def _base_controls(self) -> list[Route]:
        p = CONTROL_PREFIX
        return [
            Route.of("POST", p + "/faults", "faults", self._ctl_add_fault),
            Route.of("GET", p + "/faults", "faults", self._ctl_faults),
            Route.of("POST", p + "/reset", "reset", self._ctl_reset),
            Route.of("GET", p + "/log", "log", self._ctl_log),
            Route.of("GET", p + "/config", "config", self._ctl_config),
            Route.of("POST", p + "/config", "config", self._ctl_configure),
            Route.of("POST", p + "/clock", "clock", self._ctl_clock),
            Route.of("GET", p + "/state", "state", self._ctl_state),
        ]

    def _ctl_add_fault(self, request: SandboxRequest) -> Response:
        data = request.json()
        operation, fault, count = data.get("operation"), data.get("fault"), data.get("count", 1)
        if not isinstance(operation, str) or not isinstance(fault, str):
            raise ApiError(400, {"error": {"code": "parameter_missing", "param": "operation"}})
        if not isinstance(count, int) or isinstance(count, bool):
            raise ApiError(400, {"error": {"code": "parameter_invalid", "param": "count"}})
        try:
            self.queue_fault(operation, fault, count)
        except FaultError as exc:
            raise ApiError(400, {"error": {"code": "fault_invalid", "message": str(exc)}}) from None
        return json_response(200, {"queued": self.faults.pending()})

    def _ctl_faults(self, request: SandboxRequest) -> Response:
        return json_response(200, {"queued": self.faults.pending()})

    def _ctl_reset(self, request: SandboxRequest) -> Response:
        self.reset()
        return json_response(200, {"reset": True})

    def _ctl_log(self, request: SandboxRequest) -> Response:
        return json_response(200, {"data": self.log(request.query.get("operation"))})

    def _full_config(self) -> dict[str, Any]:
        return {"timeout_seconds": self.timeout_seconds, **self.config_view()}

    def _ctl_config(self, request: SandboxRequest) -> Response:
        return json_response(200, self._full_config())

    def _ctl_configure(self, request: SandboxRequest) -> Response:
        values = request.json()
        if "timeout_seconds" in values:
            seconds = values.pop("timeout_seconds")
            if not isinstance(seconds, int | float) or not 0 <= seconds <= 3600:
                raise ApiError(400, {"error": {"code": "parameter_invalid", "param": "timeout"}})
            self.timeout_seconds = float(seconds)
        self.configure(values)
        return json_response(200, self._full_config())

    def _ctl_clock(self, request: SandboxRequest) -> Response:
        data = request.json()
        if "now" in data:
            try:
                moment = datetime.fromisoformat(str(data["now"]))
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None:
                raise ApiError(400, {"error": {"code": "parameter_invalid", "param": "now"}})
            self.set_clock(moment)
        else:
            seconds = data.get("advance_seconds")
            if not isinstance(seconds, int | float) or isinstance(seconds, bool):
                raise ApiError(400, {"error": {"code": "parameter_invalid", "param": "advance"}})
            self.advance_clock(float(seconds))
        return json_response(200, {"now": utc_iso(self.now())})

    def _ctl_state(self, request: SandboxRequest) -> Response:
        return json_response(200, self.state_view())
