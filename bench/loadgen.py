"""A low-overhead, closed-loop HTTP/1.1 load generator.

One asyncio task per client, each with its own keep-alive connection (a non-blocking socket
driven by the loop's ``sock_*`` calls): it writes a raw request, reads the response
(Content-Length or chunked), and sends the next one at once; if the server closes the connection
(a worker class without keep-alive), the next request reconnects and pays for it. Requests are
pre-encoded bytes built by a callback, so a request costs the client a few tens of microseconds of
CPU (measured and reported as ``client_cpu_ms_per_req``), which matters when the client shares two
cores with the server and the database.

A phase warms up first (connections opened, every server thread and database connection touched);
only responses that *complete* inside the measured window count, and throughput is those
responses divided by the window's length. Any response that is not 2xx, and any broken
connection, is an error.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (client index, sequence number within the client) -> (label, raw HTTP request)
RequestMaker = Callable[[int, int], tuple[str, bytes]]
# Cumulative CPU seconds of other processes (server, database), sampled at the window's edges.
CpuSampler = Callable[[], dict[str, float]]

MAX_ERROR_SAMPLES = 5


def encode_request(
    method: str,
    path: str,
    *,
    host: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: hub-bench"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ProtocolError(Exception):
    pass


def _parse_head(head: bytes) -> tuple[int, int, bool, bool]:
    """(status, content length or -1, chunked, close) of a response head without its blank
    line."""
    if not head.startswith(b"HTTP/1."):
        raise ProtocolError(f"not an HTTP response: {head[:40]!r}")
    status = int(head[9:12])
    length = -1
    chunked = False
    close = head.startswith(b"HTTP/1.0")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value)
        elif lowered == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif lowered == b"connection":
            close = b"close" in value.lower()
    return status, length, chunked, close


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    """The body of a complete chunked payload, and whether ``data`` held all of it."""
    parts: list[bytes] = []
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return b"", False
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return b"".join(parts), data.find(b"\r\n", eol + 2) >= 0
        if len(data) < eol + 2 + size + 2:
            return b"", False
        parts.append(data[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2


class Connection:
    """One keep-alive HTTP/1.1 connection on a non-blocking socket, driven with the event loop's
    ``sock_*`` calls (cheaper per request and per reconnect than streams)."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock: socket.socket | None = None

    async def connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.get_running_loop().sock_connect(sock, self.address)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def request(self, raw: bytes) -> tuple[int, bytes, bool]:
        """Send ``raw``, read one response: (status, body, whether the server closes)."""
        if self.sock is None:
            await self.connect()
        sock = self.sock
        assert sock is not None
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, raw)
        buf = b""
        while (end := buf.find(b"\r\n\r\n")) < 0:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                raise ProtocolError("connection closed before a response")
            buf += chunk
        status, length, chunked, close = _parse_head(buf[:end])
        body = buf[end + 4 :]
        if chunked:
            while True:
                decoded, complete = _dechunk(body)
                if complete:
                    return status, decoded, close
                chunk = await loop.sock_recv(sock, 65536)
                if not chunk:
                    raise ProtocolError("connection closed inside a chunked body")
                body += chunk
        if length < 0:
            while chunk := await loop.sock_recv(sock, 65536):
                body += chunk
            return status, body, True
        while len(body) < length:
            chunk = await loop.sock_recv(sock, max(65536, length - len(body)))
            if not chunk:
                raise ProtocolError("connection closed inside a body")
            body += chunk
        return status, body[:length], close


def percentile(sorted_values: list[int], pct: float) -> float:
    """Nearest-rank percentile of ``sorted_values`` (nanoseconds), in milliseconds."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1] / 1e6


@dataclass
class PhaseResult:
    """What one phase (possibly accumulated over several rounds) measured."""

    name: str
    seconds: float = 0.0
    latencies_ns: dict[str, list[int]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    warmup_requests: int = 0
    error_samples: list[str] = field(default_factory=list)
    client_cpu_seconds: float = 0.0
    extra_cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.latencies_ns.values())

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds else math.nan

    def all_sorted(self) -> list[int]:
        return sorted(x for values in self.latencies_ns.values() for x in values)

    def label_sorted(self, label: str) -> list[int]:
        return sorted(self.latencies_ns.get(label, []))

    def merge(self, other: PhaseResult) -> None:
        self.seconds += other.seconds
        for label, values in other.latencies_ns.items():
            self.latencies_ns.setdefault(label, []).extend(values)
        self.statuses.update(other.statuses)
        self.errors += other.errors
        self.warmup_requests += other.warmup_requests
        room = MAX_ERROR_SAMPLES - len(self.error_samples)
        self.error_samples.extend(other.error_samples[: max(0, room)])
        self.client_cpu_seconds += other.client_cpu_seconds
        for name, value in other.extra_cpu_seconds.items():
            self.extra_cpu_seconds[name] = self.extra_cpu_seconds.get(name, 0.0) + value


class _Phase:
    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        clients: int,
        maker: RequestMaker,
        warmup: float,
        seconds: float | None,
        requests: int | None,
        first_seq: int,
        sampler: CpuSampler | None,
        timeout: float,
    ) -> None:
        self.sampler = sampler
        self.timeout = timeout
        self.result = PhaseResult(name)
        self.host, self.port = host, port
        self.clients = clients
        self.maker = maker
        self.warmup = warmup
        self.seconds = seconds
        self.requests = requests
        self.first_seq = first_seq
        self.start_ns = 0  # 0 while warming up
        self.end_ns = 0  # 0 while measuring
        self.stopping = False
        self.enough = asyncio.Event()
        self.next_seq = [first_seq] * clients

    def _error(self, message: str) -> None:
        self.result.errors += 1
        if len(self.result.error_samples) < MAX_ERROR_SAMPLES:
            self.result.error_samples.append(message)

    async def _client(self, index: int) -> None:
        result = self.result
        maker = self.maker
        connection = Connection(self.host, self.port)
        await connection.connect()
        seq = self.first_seq
        try:
            while not self.stopping:
                label, raw = maker(index, seq)
                seq += 1
                # A server that closed the connection (e.g. a worker class without keep-alive)
                # pays for the new one in this request's latency: request() reconnects.
                started = time.perf_counter_ns()
                try:
                    status, body, close = await connection.request(raw)
                except (OSError, ProtocolError, ValueError) as exc:
                    self._error(f"{label}: connection error {exc!r}")
                    connection.close()
                    await asyncio.sleep(0.01)
                    continue
                finished = time.perf_counter_ns()
                if not 200 <= status < 300:
                    self._error(f"{label}: HTTP {status} {body[:300]!r}")
                if self.start_ns and finished >= self.start_ns and not self.end_ns:
                    result.latencies_ns.setdefault(label, []).append(finished - started)
                    result.statuses[status] += 1
                    if self.requests is not None and result.count >= self.requests:
                        self.enough.set()
                elif not self.start_ns:
                    result.warmup_requests += 1
                if close:
                    connection.close()
        finally:
            self.next_seq[index] = seq
            connection.close()

    async def run(self) -> PhaseResult:
        tasks = [asyncio.create_task(self._client(i)) for i in range(self.clients)]
        try:
            await asyncio.sleep(self.warmup)
            before = self.sampler() if self.sampler else {}
            cpu0 = time.process_time()
            self.start_ns = time.perf_counter_ns()
            if self.requests is not None:
                await asyncio.wait_for(self.enough.wait(), self.timeout)
            else:
                await asyncio.sleep(self.seconds or 0.0)
            self.end_ns = time.perf_counter_ns()
            self.result.client_cpu_seconds = time.process_time() - cpu0
            self.result.seconds = (self.end_ns - self.start_ns) / 1e9
            after = self.sampler() if self.sampler else {}
            self.result.extra_cpu_seconds = {
                name: after[name] - before.get(name, 0.0) for name in after
            }
        finally:
            self.stopping = True
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                self._error(f"client failed: {outcome!r}")
        return self.result


async def run_phase(
    name: str,
    *,
    host: str,
    port: int,
    clients: int,
    maker: RequestMaker,
    warmup: float,
    seconds: float | None = None,
    requests: int | None = None,
    first_seq: int = 0,
    sampler: CpuSampler | None = None,
    timeout: float = 600.0,
) -> tuple[PhaseResult, int]:
    """Run one phase; returns its result and the next unused sequence number (so that a later
    round of the same phase never reuses an idempotency key)."""
    if (seconds is None) == (requests is None):
        raise ValueError("give seconds or requests")
    phase = _Phase(
        name, host, port, clients, maker, warmup, seconds, requests, first_seq, sampler, timeout
    )
    result = await phase.run()
    return result, max(phase.next_seq)


async def rest_against_health(
    *, host: str, port: int, clients: int, seconds: float, maker: RequestMaker, per_s: str
) -> dict[str, Any]:
    """``GET /v1/health`` at ``clients`` closed-loop clients (the same run's baseline), then the
    requests ``maker`` makes, each phase after a second's warm-up; the figures both REST
    benchmarks print, the request rate as ``rest_<per_s>_per_s``."""
    health = encode_request("GET", "/v1/health", host=f"{host}:{port}")

    def baseline(client: int, seq: int) -> tuple[str, bytes]:
        return "health", health

    base, _ = await run_phase(
        "baseline",
        host=host,
        port=port,
        clients=clients,
        maker=baseline,
        warmup=1.0,
        seconds=seconds,
    )
    rest, _ = await run_phase(
        "rest", host=host, port=port, clients=clients, maker=maker, warmup=1.0, seconds=seconds
    )
    base_sorted, rest_sorted = base.all_sorted(), rest.all_sorted()
    return {
        "rest_clients": clients,
        f"rest_{per_s}_per_s": round(rest.rps, 1),
        "rest_p50_ms": round(percentile(rest_sorted, 50), 2),
        "rest_p99_ms": round(percentile(rest_sorted, 99), 2),
        "rest_baseline_rps": round(base.rps, 1),
        "rest_baseline_p99_ms": round(percentile(base_sorted, 99), 2),
        "rest_errors": base.errors + rest.errors,
        "rest_error_samples": (base.error_samples + rest.error_samples)[:5],
    }
