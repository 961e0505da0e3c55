"""The in-process half of ``hub bench adapters``, run as a subprocess on the benchmark database
(``python -m bench.adapters_probe MODE ...`` with DATABASE_URL set): it sets Django up, does its
work and prints one JSON line.

- ``outbound N``: N payout submits then N status syncs through the hub's full path (adapter
  runtime, database circuit breaker, attempt records, the operation's transactions) against the
  bank sandbox in a thread of this process. Every ``httpx`` transport call is timed, so the hub's
  own overhead of a call is its total time minus the time spent on the wire and in the sandbox.
  The same-run baseline is the bare ``HubHttpClient`` (memory breaker, list recorder) making the
  same GET: the client's own share of the overhead.
- ``seed-inbound N FILE``: a stripe_like connection and N pending payins, and N signed
  ``payment_intent.succeeded`` notifications for them written to FILE (one JSON line each) for
  the load generator.
- ``apply T``: what the workers do after the API acknowledged them: apply every received
  notification (``inbound_apply_due``) with T threads in this process, timed, once the server
  has stopped.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from typing import Any

import django
import httpx


def _timed_transport() -> list[int]:
    """Patch httpx's transport to add each call's nanoseconds to the returned list."""
    spent: list[int] = []
    original = httpx.HTTPTransport.handle_request

    def handle_request(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter_ns()
        response = original(self, request)
        response.read()  # the body too: the sandbox's time ends when its answer is in
        spent.append(time.perf_counter_ns() - started)
        return response

    httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
    return spent


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": float("nan"), "p99": float("nan")}

    def at(pct: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))]

    return {"p50": round(at(50), 3), "p99": round(at(99), 3)}


def outbound(calls: int) -> dict[str, Any]:
    from adapters.http import ClientPolicy, HubHttpClient, MemoryBreakerStore
    from adapters.interface import Amount, BankAccount, PayoutRequest
    from adapters.sandbox.bank import DEFAULT_CLIENT_ID, DEFAULT_SIGNING_KEY, BankSandbox
    from hub.models import AdapterConnection, Participant, Role
    from hub.sandbox import make_uscc
    from hub.services.adapters.operations import operation_submit, operation_sync

    spent = _timed_transport()
    sandbox = BankSandbox(settle_delay_seconds=10**9).start()
    try:
        bank = Participant.objects.create(
            role=Role.BANK,
            legal_name="Benchmark Bank",
            country="CN",
            registration_id=make_uscc("371000", "MA3BENCH"),
        )
        from hub.crypto import encrypt

        connection = AdapterConnection.objects.create(
            participant=bank,
            adapter="bank",
            livemode=False,
            sandbox=True,
            config={"base_url": sandbox.base_url, "client_id": DEFAULT_CLIENT_ID},
            credentials_encrypted=encrypt(json.dumps({"signing_key": DEFAULT_SIGNING_KEY})),
        )
        beneficiary = BankAccount("6217000010001234567", "Weihai Trading", "CCBCCNBJ", "CN")

        def measure(step: Any, count: int) -> tuple[list[float], list[float]]:
            total_ms, wire_ms = [], []
            for i in range(count):
                before = len(spent)
                started = time.perf_counter_ns()
                step(i)
                elapsed = time.perf_counter_ns() - started
                wire = sum(spent[before:])
                total_ms.append(elapsed / 1e6)
                wire_ms.append(wire / 1e6)
            return total_ms, wire_ms

        operations: list[str] = []
        prefix = ["po_warm"]

        def submit(i: int) -> None:
            request = PayoutRequest(
                reference=f"{prefix[0]}_{i:06d}",
                amount=Amount(100_00 + i, "CNY"),
                beneficiary=beneficiary,
                remittance_info="benchmark",
            )
            operation = operation_submit(connection_id=connection.pk, request=request)
            assert operation.state == "pending", operation.state
            operations.append(operation.pk)

        def sync(i: int) -> None:
            assert operation_sync(operation_id=operations[i]).state == "pending"

        measure(submit, min(20, calls))  # warm-up: connections, caches, the sandbox's threads
        operations.clear()
        prefix[0] = "po_bench"
        submit_total, submit_wire = measure(submit, calls)
        sync_total, sync_wire = measure(sync, calls)

        client = HubHttpClient(
            participant_id=bank.pk,
            adapter="bank",
            policy=ClientPolicy(allowed_hosts=frozenset({"127.0.0.1"}), allow_private=True),
            breaker=MemoryBreakerStore(),
            recorder=lambda record: None,
        )

        def bare(i: int) -> None:
            request = client.build_request("GET", sandbox.url("/_sandbox/state"))
            client.send("payout_status", request, idempotent=True)

        measure(bare, min(20, calls))
        bare_total, bare_wire = measure(bare, calls)
        client.close()
    finally:
        sandbox.stop()

    def overhead(total: list[float], wire: list[float]) -> list[float]:
        return [t - w for t, w in zip(total, wire, strict=True)]

    submit_over = _percentiles(overhead(submit_total, submit_wire))
    sync_over = _percentiles(overhead(sync_total, sync_wire))
    bare_over = _percentiles(overhead(bare_total, bare_wire))
    return {
        "calls": calls,
        "submit_overhead_p50_ms": submit_over["p50"],
        "submit_overhead_p99_ms": submit_over["p99"],
        "sync_overhead_p50_ms": sync_over["p50"],
        "sync_overhead_p99_ms": sync_over["p99"],
        "sandbox_p50_ms": _percentiles(submit_wire + sync_wire)["p50"],
        "baseline_client_overhead_p50_ms": bare_over["p50"],
        "baseline_client_overhead_p99_ms": bare_over["p99"],
    }


def seed_inbound(count: int, path: str) -> dict[str, Any]:
    from django.utils import timezone

    from adapters.builtin.stripe_like import sign_payload
    from adapters.sandbox.stripe_like import DEFAULT_SECRET_KEY, DEFAULT_WEBHOOK_SECRET
    from hub.crypto import encrypt
    from hub.models import AdapterConnection, AdapterOperation, Participant, Role
    from hub.sandbox import make_brn

    institution = Participant.objects.create(
        role=Role.PAYMENT_INSTITUTION,
        legal_name="Benchmark Pay",
        country="KR",
        registration_id=make_brn("131869999"),
    )
    connection = AdapterConnection.objects.create(
        participant=institution,
        adapter="stripe_like",
        livemode=False,
        sandbox=True,
        config={"base_url": "http://127.0.0.1:9"},
        credentials_encrypted=encrypt(
            json.dumps({"secret_key": DEFAULT_SECRET_KEY, "webhook_secret": DEFAULT_WEBHOOK_SECRET})
        ),
    )
    now = timezone.now()
    AdapterOperation.objects.bulk_create(
        [
            AdapterOperation(
                connection=connection,
                kind="payin",
                reference=f"pi_ref_{i:07d}",
                request={},
                amount_minor=150_000 + i,
                currency="KRW",
                provider_id=f"pi_bench_{i:07d}",
                state="pending",
                next_sync_at=now + timedelta(days=1),
            )
            for i in range(count)
        ],
        batch_size=2000,
    )
    stamp = int(time.time())
    with open(path, "w") as out:
        for i in range(count):
            event = {
                "id": f"evt_bench_{i:07d}",
                "object": "event",
                "created": stamp,
                "type": "payment_intent.succeeded",
                "livemode": False,
                "data": {
                    "object": {
                        "id": f"pi_bench_{i:07d}",
                        "object": "payment_intent",
                        "amount": 150_000 + i,
                        "currency": "krw",
                        "status": "succeeded",
                        "reference": f"pi_ref_{i:07d}",
                        "metadata": {"reference": f"pi_ref_{i:07d}"},
                    }
                },
            }
            body = json.dumps(event, separators=(",", ":"))
            signature = sign_payload(DEFAULT_WEBHOOK_SECRET, stamp, body.encode())
            out.write(json.dumps({"body": body, "signature": f"t={stamp},v1={signature}"}) + "\n")
    return {"connection": connection.pk, "count": count}


def apply_received(threads: int) -> dict[str, Any]:
    """``threads`` appliers at once, as a worker with that concurrency would run them: they
    claim disjoint batches, and their commits overlap (most of an application is waiting for
    PostgreSQL to make a commit durable)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from hub.models import InboundWebhook
    from hub.services.adapters.inbound import inbound_apply_due

    def drain(_: int) -> int:
        applied = 0
        try:
            while True:
                done = inbound_apply_due(batch=50)
                applied += done
                if done == 0:
                    return applied
        finally:
            connection.close()

    waiting = InboundWebhook.objects.filter(status="received").count()
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        applied = sum(pool.map(drain, range(threads)))
    seconds = time.perf_counter() - started
    return {
        "apply_threads": threads,
        "apply_waiting": waiting,
        "apply_settled": applied,
        "apply_seconds": round(seconds, 3),
        "apply_rps": round(applied / seconds, 1) if seconds else None,
    }


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    mode = argv[0]
    if mode == "outbound":
        result = outbound(int(argv[1]))
    elif mode == "seed-inbound":
        result = seed_inbound(int(argv[1]), argv[2])
    elif mode == "apply":
        result = apply_received(int(argv[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
