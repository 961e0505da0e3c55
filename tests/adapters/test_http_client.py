"""The hub-owned HTTP client: what each failure becomes, what is retried, what is logged."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from adapters.errors import AdapterTimeout, CounterpartyUnavailable, HostNotAllowed, UnknownOutcome
from adapters.http import (
    REDACTED,
    AttemptRecord,
    ClientPolicy,
    HubHttpClient,
    MemoryBreakerStore,
    redact_text,
)

SECRET = "sk_live_abcdef123456"


def make_client(
    handler: Callable[[httpx.Request], httpx.Response] | None = None,
    *,
    hosts: frozenset[str] = frozenset({"api.bank.example"}),
    allow_private: bool = False,
    resolver: Callable[[str, int], list[str]] = lambda host, port: ["93.184.215.14"],
    **policy: object,
) -> tuple[HubHttpClient, list[AttemptRecord], list[float]]:
    records: list[AttemptRecord] = []
    sleeps: list[float] = []
    client = HubHttpClient(
        participant_id="par_1",
        adapter="testbank",
        policy=ClientPolicy(allowed_hosts=hosts, allow_private=allow_private, **policy),  # type: ignore[arg-type]
        breaker=MemoryBreakerStore(),
        recorder=records.append,
        secrets=(SECRET,),
        transport=httpx.MockTransport(handler) if handler else None,
        sleep=sleeps.append,
        resolver=resolver,
    )
    return client, records, sleeps


def scripted(
    *answers: object,
) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, int)
        return httpx.Response(answer, json={"status": answer})

    return handler, seen


def post(client: HubHttpClient) -> httpx.Request:
    return client.build_request(
        "POST",
        "https://api.bank.example/payouts",
        json={"reference": "po_1", "token": SECRET},
        headers={"Authorization": f"Bearer {SECRET}", "X-Trace": "t1", "X-Auth": SECRET},
    )


def test_success_is_logged_once_with_secrets_redacted():
    handler, seen = scripted(200)
    client, records, _ = make_client(handler)
    response = client.send("payout_create", post(client), idempotent=False)
    assert response.status_code == 200
    assert len(seen) == 1
    (record,) = records
    assert (record.attempt, record.status_code, record.result, record.error) == (1, 200, "ok", "")
    assert record.request_headers["authorization"] == REDACTED
    assert record.request_headers["x-trace"] == "t1"
    assert record.request_headers["x-auth"] == REDACTED  # a credential under a plain name
    assert SECRET not in record.request_body
    assert json.loads(record.request_body)["token"] == REDACTED
    assert (record.participant_id, record.adapter, record.operation) == (
        "par_1",
        "testbank",
        "payout_create",
    )


def test_5xx_on_non_idempotent_operation_is_unknown_and_not_retried():
    handler, seen = scripted(503)
    client, records, sleeps = make_client(handler)
    with pytest.raises(UnknownOutcome):
        client.send("payout_create", post(client), idempotent=False)
    assert len(seen) == 1
    assert [r.status_code for r in records] == [503]
    assert sleeps == []


def test_5xx_on_idempotent_operation_is_retried_with_bounded_jitter():
    handler, seen = scripted(500, 502, 200)
    client, records, sleeps = make_client(
        handler, max_attempts=3, backoff_base=0.2, backoff_cap=2.0
    )
    assert client.send("payout_status", post(client), idempotent=True).status_code == 200
    assert len(seen) == 3
    assert [(r.attempt, r.status_code) for r in records] == [(1, 500), (2, 502), (3, 200)]
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.2
    assert 0 <= sleeps[1] <= 0.4


def test_idempotent_operation_still_failing_after_retries_is_unknown():
    handler, seen = scripted(500)
    client, _, _ = make_client(handler, max_attempts=3)
    with pytest.raises(UnknownOutcome):
        client.send("payout_status", post(client), idempotent=True)
    assert len(seen) == 3


def test_connection_refused_is_retried_even_when_not_idempotent_and_ends_unavailable():
    handler, seen = scripted(httpx.ConnectError("refused"))
    client, records, _ = make_client(handler, max_attempts=2)
    with pytest.raises(CounterpartyUnavailable) as raised:
        client.send("payout_create", post(client), idempotent=False)
    assert not isinstance(raised.value, UnknownOutcome)
    assert len(seen) == 2
    assert [r.result for r in records] == ["connection_error", "connection_error"]


def test_read_timeout_on_non_idempotent_operation_is_an_unknown_timeout():
    handler, seen = scripted(httpx.ReadTimeout("slow"))
    client, records, _ = make_client(handler)
    with pytest.raises(AdapterTimeout):
        client.send("payout_create", post(client), idempotent=False)
    assert len(seen) == 1
    assert records[0].result == "timeout"


def test_refused_then_landed_reads_unknown():
    handler, seen = scripted(httpx.ReadTimeout("slow"), httpx.ConnectError("refused"))
    client, _, _ = make_client(handler, max_attempts=2)
    with pytest.raises(UnknownOutcome):
        client.send("payout_status", post(client), idempotent=True)
    assert len(seen) == 2


def test_429_is_retried_and_4xx_is_returned_for_the_error_table():
    handler, seen = scripted(429, 402)
    client, records, _ = make_client(handler, max_attempts=3)
    response = client.send("payout_create", post(client), idempotent=False)
    assert response.status_code == 402
    assert len(seen) == 2
    assert [r.error for r in records] == ["HTTP 429", "HTTP 402"]


def test_redirects_are_not_followed_and_read_as_unknown():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "https://evil.example/steal"})

    client, records, _ = make_client(handler)
    with pytest.raises(UnknownOutcome):
        client.send("payout_status", post(client), idempotent=True)
    assert [r.url for r in seen] == ["https://api.bank.example/payouts"]
    assert [(r.status_code, r.error) for r in records] == [(302, "unexpected redirect HTTP 302")]


def test_a_circuit_opening_between_retries_of_a_landed_call_reads_unknown():
    handler, seen = scripted(httpx.ReadTimeout("slow"))
    client, records, _ = make_client(handler, max_attempts=3, breaker_threshold=1)
    with pytest.raises(UnknownOutcome):
        client.send("payout_status", post(client), idempotent=True)
    assert len(seen) == 1
    assert [r.result for r in records] == ["timeout", "circuit_open"]


def test_undecodable_and_oversized_bodies_read_unknown_and_are_logged():
    def bad_gzip(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"not gzip")

    client, records, _ = make_client(bad_gzip)
    with pytest.raises(UnknownOutcome):
        client.send("payout_create", post(client), idempotent=False)
    assert [r.result for r in records] == ["protocol_error"]

    def huge(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 2048)

    client, records, _ = make_client(huge, max_response_bytes=1024)
    with pytest.raises(UnknownOutcome):
        client.send("payout_create", post(client), idempotent=False)
    assert "larger than 1024 bytes" in records[0].error


def test_a_recorder_that_fails_does_not_change_the_outcome():
    handler, _ = scripted(200)
    client, _, _ = make_client(handler)

    def broken(record: AttemptRecord) -> None:
        raise RuntimeError("database down")

    client.recorder = broken
    assert client.send("payout_create", post(client), idempotent=False).status_code == 200


def test_circuit_opens_after_threshold_and_answers_fast():
    handler, seen = scripted(500)
    client, records, _ = make_client(
        handler, max_attempts=1, breaker_threshold=3, breaker_cooldown=60
    )
    for _ in range(3):
        with pytest.raises(UnknownOutcome):
            client.send("payout_create", post(client), idempotent=False)
    with pytest.raises(CounterpartyUnavailable) as raised:
        client.send("payout_create", post(client), idempotent=False)
    assert raised.value.code == "counterparty_unavailable"
    assert len(seen) == 3  # the fourth call never left
    assert records[-1].result == "circuit_open"
    # Another operation of the same participant has its own circuit: its call goes out.
    with pytest.raises(UnknownOutcome):
        client.send("payout_status", post(client), idempotent=True)
    assert len(seen) == 4


def test_circuit_half_opens_after_cooldown_and_closes_on_success():
    store = MemoryBreakerStore()
    key = "k"
    for _ in range(2):
        store.record(key, ok=False, now=0.0, threshold=2)
    assert not store.allow(key, now=1.0, threshold=2, cooldown=10)
    assert store.allow(key, now=11.0, threshold=2, cooldown=10)  # one trial
    assert not store.allow(key, now=11.5, threshold=2, cooldown=10)  # only one
    store.record(key, ok=True, now=12.0, threshold=2)
    assert store.state(key) == "closed"
    assert store.allow(key, now=12.0, threshold=2, cooldown=10)


@pytest.mark.parametrize(
    ("url", "hosts", "resolved", "allow_private"),
    [
        ("https://other.example/x", {"api.bank.example"}, ["93.184.215.14"], False),
        ("https://api.bank.example/x", {"api.bank.example"}, ["10.0.0.5"], False),
        ("https://api.bank.example/x", {"api.bank.example"}, ["127.0.0.1"], False),
        ("https://api.bank.example/x", {"api.bank.example"}, ["169.254.169.254"], False),
        ("http://api.bank.example/x", {"api.bank.example"}, ["93.184.215.14"], False),
        ("ftp://api.bank.example/x", {"api.bank.example"}, ["93.184.215.14"], True),
    ],
)
def test_hosts_outside_the_configuration_are_refused(url, hosts, resolved, allow_private):
    handler, seen = scripted(200)
    client, records, _ = make_client(
        handler, hosts=frozenset(hosts), resolver=lambda h, p: resolved, allow_private=allow_private
    )
    with pytest.raises(HostNotAllowed):
        client.send("payout_create", client.build_request("POST", url), idempotent=False)
    assert seen == []
    assert records[0].result == "refused"


# Real sockets: a loopback server that is slow, resets, or answers.


class _Server(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mode = "ok"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.mode == "reset":  # type: ignore[attr-defined]
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        if self.server.mode == "slow":  # type: ignore[attr-defined]
            threading.Event().wait(1.0)
        if self.server.mode == "trickle":  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Length", "20")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"x")
                self.wfile.flush()
                threading.Event().wait(0.1)
            return
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def loopback() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    server.mode = "ok"  # type: ignore[attr-defined]
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("mode", "error"),
    [("slow", AdapterTimeout), ("reset", UnknownOutcome), ("trickle", AdapterTimeout)],
)
def test_real_socket_faults_on_a_sandbox_host(loopback, mode, error):
    loopback.mode = mode
    client, records, _ = make_client(
        hosts=frozenset({"127.0.0.1"}), allow_private=True, read_timeout=0.3, total_timeout=0.5
    )
    url = f"http://127.0.0.1:{loopback.server_address[1]}/payouts"
    with pytest.raises(error):
        client.send("payout_create", client.build_request("POST", url, json={}), idempotent=False)
    assert len(records) == 1


def test_real_socket_success_and_loopback_refused_without_sandbox(loopback):
    url = f"http://127.0.0.1:{loopback.server_address[1]}/payouts"
    client, records, _ = make_client(hosts=frozenset({"127.0.0.1"}), allow_private=True)
    assert client.send(
        "payout_create", client.build_request("POST", url, json={}), idempotent=False
    ).json() == {"ok": True}
    assert [(r.status_code, r.result) for r in records] == [(200, "ok")]
    live, _, _ = make_client(
        hosts=frozenset({"127.0.0.1"}), allow_private=False, resolver=lambda h, p: ["127.0.0.1"]
    )
    with pytest.raises(HostNotAllowed):
        live.send("payout_create", live.build_request("POST", url, json={}), idempotent=False)


@pytest.mark.parametrize(
    ("text", "logged"),
    [
        ('{"account_number": "6217000010001234567"}', '{"account_number": "****4567"}'),
        ('{"creditor": {"iban":"NL26VAYB8060476890"}}', '{"creditor": {"iban":"****6890"}}'),
        (
            "<Acct><Id><IBAN>NL26VAYB8060476890</IBAN></Id></Acct>",
            "<Acct><Id><IBAN>****6890</IBAN></Id></Acct>",
        ),
        (
            "<CdtrAcct><Id><Othr><Id>6217000010001234567</Id></Othr></Id></CdtrAcct>",
            "<CdtrAcct><Id><Othr><Id>****4567</Id></Othr></Id></CdtrAcct>",
        ),
        ("<x:IBAN>DE89370400440532013000</x:IBAN>", "<x:IBAN>****3000</x:IBAN>"),
        ('{"amount": "6217000010001234567"}', '{"amount": "6217000010001234567"}'),
    ],
)
def test_account_numbers_are_masked_in_what_is_logged(text: str, logged: str) -> None:
    assert redact_text(text, ()) == logged


def test_secrets_are_redacted_after_masking() -> None:
    assert redact_text('{"account_number": "12345678"} key=sk_live_1234', ("sk_live_1234",)) == (
        '{"account_number": "****5678"} key=[redacted]'
    )
