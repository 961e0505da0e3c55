"""The HTTP client the hub hands to every adapter.

Adapters build requests and read responses; this client decides everything that keeps money
safe on the wire: a timeout on every call, no redirects, only the hosts configured for the
participant (and no private or loopback address unless the participant is a sandbox), retries with
jittered backoff only where a retry cannot act twice, a circuit breaker per participant and
operation, and a record of every attempt with secrets redacted.

How a failure reads:

============================  =====================  ================================
what happened                 idempotent operation   other operations
============================  =====================  ================================
connect refused / timed out   retried                retried (nothing was sent)
429                           retried                retried (the provider refused it)
read timeout                  retried                ``AdapterTimeout`` (unknown)
reset, protocol error         retried                ``UnknownOutcome``
5xx                           retried                ``UnknownOutcome``
3xx (never followed)          ``UnknownOutcome``     ``UnknownOutcome``
body too large, undecodable,  retried                ``UnknownOutcome``
or slower than total_timeout
circuit open                  ``CounterpartyUnavailable`` at once, no call made (but
                              ``UnknownOutcome`` if an earlier attempt may have landed)
============================  =====================  ================================

When retries run out, a call that may have landed ends ``UnknownOutcome``, one that surely did
not ends ``CounterpartyUnavailable``.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import httpx

from adapters.errors import (
    AdapterTimeout,
    CounterpartyUnavailable,
    HostNotAllowed,
    UnknownOutcome,
)

logger = logging.getLogger("adapters.http")

REDACTED = "[redacted]"
_SENSITIVE_HEADER_WORDS = (
    "authorization",
    "cookie",
    "signature",
    "secret",
    "token",
    "api-key",
    "apikey",
)
MAX_LOGGED_BODY = 4096


@dataclass(frozen=True)
class AttemptRecord:
    participant_id: str
    adapter: str
    operation: str
    attempt: int
    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str
    status_code: int | None
    response_body: str
    error: str
    # "ok", "http_error", "timeout", "connection_error", "protocol_error", "circuit_open", "refused"
    result: str
    duration_ms: int
    started_at: datetime


# Stores one attempt (the hub writes a row; tests keep a list).
AttemptRecorder = Callable[[AttemptRecord], None]


class BreakerStore(Protocol):
    """Circuit state shared by every process that calls the same participant: the hub keeps it in
    its database; ``MemoryBreakerStore`` serves one process (unit tests, the conformance kit).
    ``now`` is wall-clock seconds (``time.time()``), comparable across processes."""

    def allow(self, key: str, *, now: float, threshold: int, cooldown: float) -> bool: ...

    def record(self, key: str, *, ok: bool, now: float, threshold: int) -> None: ...


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class MemoryBreakerStore:
    def __init__(self) -> None:
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, *, now: float, threshold: int, cooldown: float) -> bool:
        with self._lock:
            circuit = self._circuits.setdefault(key, _Circuit())
            if circuit.opened_at is None:
                return True
            if now - circuit.opened_at < cooldown or circuit.probing:
                return False
            circuit.probing = True  # half-open: one trial call
            return True

    def record(self, key: str, *, ok: bool, now: float, threshold: int) -> None:
        with self._lock:
            circuit = self._circuits.setdefault(key, _Circuit())
            circuit.probing = False
            if ok:
                circuit.failures, circuit.opened_at = 0, None
                return
            circuit.failures += 1
            if circuit.failures >= threshold or circuit.opened_at is not None:
                circuit.opened_at = now

    def state(self, key: str) -> str:
        circuit = self._circuits.get(key)
        return "closed" if circuit is None or circuit.opened_at is None else "open"


@dataclass(frozen=True)
class ClientPolicy:
    allowed_hosts: frozenset[str]
    allow_private: bool = False  # sandboxes on loopback only
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_attempts: int = 3
    backoff_base: float = 0.2
    backoff_cap: float = 2.0
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0
    total_timeout: float = 30.0  # the whole exchange, however the provider trickles
    max_response_bytes: int = 4 * 1024 * 1024


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {
        name: REDACTED if any(word in name.lower() for word in _SENSITIVE_HEADER_WORDS) else value
        for name, value in headers
    }


# Bank account and card numbers in JSON bodies, whatever the institution's format: the
# attempt log keeps their last four characters only.
_ACCOUNT_NUMBER = re.compile(
    r'("(?:account_number|accountNumber|iban|IBAN|card_number|pan)"\s*:\s*")([^"]*)(")'
)


# The same in XML (ISO 20022 statements and payments): an IBAN, or another account id.
_XML_ACCOUNT_NUMBER = re.compile(
    r"(<(?:\w+:)?IBAN>)([^<]*)(</(?:\w+:)?IBAN>)"
    r"|(<(?:\w+:)?Othr>\s*<(?:\w+:)?Id>)([^<]*)(</(?:\w+:)?Id>)"
)


def _mask_account_number(match: re.Match[str]) -> str:
    value = match.group(2)
    return match.group(1) + "****" + value[-4:] + match.group(3)


def _mask_xml_account_number(match: re.Match[str]) -> str:
    opening, value, closing = (
        match.group(1, 2, 3) if match.group(1) is not None else match.group(4, 5, 6)
    )
    return opening + "****" + value[-4:] + closing


def redact_text(text: str, secrets: Iterable[str]) -> str:
    text = _ACCOUNT_NUMBER.sub(_mask_account_number, text)
    text = _XML_ACCOUNT_NUMBER.sub(_mask_xml_account_number, text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text[:MAX_LOGGED_BODY]


def is_public_address(address: str) -> bool:
    """A globally routable unicast address (no private, loopback, link-local, reserved range)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_global and not ip.is_multicast


Resolver = Callable[[str, int], list[str]]


def _resolve(host: str, port: int) -> list[str]:
    return sorted(
        {str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    )


@dataclass
class HubHttpClient:
    participant_id: str
    adapter: str
    policy: ClientPolicy
    breaker: BreakerStore
    recorder: AttemptRecorder
    secrets: tuple[str, ...] = ()
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    resolver: Resolver = _resolve
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        timeout = httpx.Timeout(
            self.policy.read_timeout,
            connect=self.policy.connect_timeout,
            pool=self.policy.connect_timeout,
        )
        self._client = httpx.Client(
            timeout=timeout, follow_redirects=False, transport=self.transport, trust_env=False
        )

    def close(self) -> None:
        self._client.close()

    def build_request(self, method: str, url: str, **kwargs: object) -> httpx.Request:
        return self._client.build_request(method, url, **kwargs)  # type: ignore[arg-type]

    def _check_host(self, url: httpx.URL) -> None:
        host = url.host
        if url.scheme not in {"http", "https"} or not host:
            raise HostNotAllowed(f"{url.scheme}:// URLs are not called")
        if host not in self.policy.allowed_hosts:
            raise HostNotAllowed(f"{host} is not a configured host of this participant")
        if self.policy.allow_private:
            return
        if url.scheme != "https":
            raise HostNotAllowed("live institutions are called over https only")
        try:
            addresses = self.resolver(host, url.port or 443)
        except OSError as exc:
            raise HostNotAllowed(f"{host} does not resolve: {exc}") from None
        if not addresses or any(not is_public_address(a) for a in addresses):
            raise HostNotAllowed(f"{host} resolves to a private, loopback or link-local address")

    def send(self, operation: str, request: httpx.Request, *, idempotent: bool) -> httpx.Response:
        """Send ``request`` for ``operation``; return the response of the last attempt (2xx, or a
        4xx for the adapter to read through its error table), or raise per the table above."""
        key = f"{self.participant_id}:{self.adapter}:{operation}"
        policy = self.policy
        body_text = redact_text(request.content.decode("utf-8", "replace"), self.secrets)
        # Sensitive header names are hidden whole; any credential value elsewhere is hidden too.
        headers = {
            name: redact_text(value, self.secrets)
            for name, value in redact_headers(request.headers.items()).items()
        }
        url = redact_text(str(request.url), self.secrets)
        attempts = policy.max_attempts if policy.max_attempts > 0 else 1
        last_error: Exception | None = None
        may_have_landed = False
        for attempt in range(1, attempts + 1):
            started = datetime.now(UTC)
            clock = time.monotonic()

            def record(status: int | None, response_body: str, error: str, result: str) -> None:
                entry = AttemptRecord(
                    participant_id=self.participant_id,
                    adapter=self.adapter,
                    operation=operation,
                    attempt=attempt,  # noqa: B023 (called within this iteration)
                    method=request.method,
                    url=url,
                    request_headers=headers,
                    request_body=body_text,
                    status_code=status,
                    response_body=redact_text(response_body, self.secrets),
                    error=redact_text(error, self.secrets),
                    result=result,
                    duration_ms=int((time.monotonic() - clock) * 1000),  # noqa: B023
                    started_at=started,  # noqa: B023
                )
                try:
                    self.recorder(entry)
                except Exception:
                    # A failing log must not turn a known outcome into an unknown one.
                    logger.exception("could not store the attempt record of %s", operation)

            try:
                self._check_host(request.url)
            except HostNotAllowed as exc:
                record(None, "", exc.message, "refused")
                raise
            if not self.breaker.allow(
                key,
                now=time.time(),
                threshold=policy.breaker_threshold,
                cooldown=policy.breaker_cooldown,
            ):
                record(None, "", "circuit open", "circuit_open")
                message = (
                    f"{self.adapter} {operation} is failing; calls are paused for up to "
                    f"{policy.breaker_cooldown:g} s"
                )
                if may_have_landed:
                    # An earlier attempt of this call may have been applied: still unknown.
                    raise UnknownOutcome(message) from last_error
                raise CounterpartyUnavailable(message)
            retry = False
            try:
                response = self._exchange(request, deadline=clock + policy.total_timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                record(None, "", f"{type(exc).__name__}: {exc}", "connection_error")
                self._record_breaker(key, ok=False)
                last_error = CounterpartyUnavailable(f"could not connect: {type(exc).__name__}")
                retry = True
            except httpx.TimeoutException as exc:
                record(None, "", f"{type(exc).__name__}: {exc}", "timeout")
                self._record_breaker(key, ok=False)
                may_have_landed = True
                last_error = AdapterTimeout(f"{operation} timed out after the request was sent")
                retry = idempotent
            except httpx.HTTPError as exc:
                # Resets, protocol errors, undecodable or oversized bodies: the request was sent.
                record(None, "", f"{type(exc).__name__}: {exc}", "protocol_error")
                self._record_breaker(key, ok=False)
                may_have_landed = True
                last_error = UnknownOutcome(
                    f"{operation} failed mid-exchange: {type(exc).__name__}"
                )
                retry = idempotent
            else:
                status = response.status_code
                text = response.text
                if status >= 500:
                    record(status, text, f"HTTP {status}", "http_error")
                    self._record_breaker(key, ok=False)
                    may_have_landed = True
                    last_error = UnknownOutcome(f"{operation} answered HTTP {status}")
                    retry = idempotent
                elif status == 429:
                    record(status, text, "HTTP 429", "http_error")
                    self._record_breaker(key, ok=True)
                    last_error = CounterpartyUnavailable(f"{operation} was rate limited (HTTP 429)")
                    retry = True
                elif 300 <= status < 400:
                    # Redirects are never followed; an API answering one did something unknown.
                    record(status, text, f"unexpected redirect HTTP {status}", "http_error")
                    self._record_breaker(key, ok=True)
                    may_have_landed = True
                    last_error = UnknownOutcome(f"{operation} answered a redirect (HTTP {status})")
                    retry = False
                else:
                    record(status, text, "" if status < 400 else f"HTTP {status}", "ok")
                    self._record_breaker(key, ok=True)
                    return response
            if not retry or attempt == attempts:
                break
            self.sleep(
                random.uniform(0, min(policy.backoff_cap, policy.backoff_base * 2 ** (attempt - 1)))
            )
        assert last_error is not None
        if may_have_landed and not isinstance(last_error, UnknownOutcome):
            raise UnknownOutcome(f"{operation} may have been applied: {last_error}") from last_error
        raise last_error

    def _exchange(self, request: httpx.Request, *, deadline: float) -> httpx.Response:
        """Send and read the whole answer within ``deadline`` (a read timeout alone bounds each
        read, not a provider that trickles) and within ``max_response_bytes``."""
        streamed = self._client.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            for chunk in streamed.iter_bytes():
                size += len(chunk)
                if size > self.policy.max_response_bytes:
                    raise httpx.DecodingError(
                        f"response larger than {self.policy.max_response_bytes} bytes",
                        request=request,
                    )
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the whole answer took too long", request=request)
                chunks.append(chunk)
        finally:
            streamed.close()
        headers = [
            (k, v) for k, v in streamed.headers.multi_items() if k.lower() != "content-encoding"
        ]
        return httpx.Response(
            streamed.status_code, headers=headers, content=b"".join(chunks), request=request
        )

    def _record_breaker(self, key: str, *, ok: bool) -> None:
        self.breaker.record(key, ok=ok, now=time.time(), threshold=self.policy.breaker_threshold)
