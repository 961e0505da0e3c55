"""``hub bench adapters``: what the hub adds to every call to an institution, and how fast it
takes in institutions' notifications.

1. Outbound (``bench.adapters_probe outbound``, one process): payout submits and status syncs
   through the hub's whole path against the bank sandbox; the hub's overhead per call is its
   total time minus the time spent on the wire and in the sandbox (every transport call is
   timed). Baseline in the same run: the bare hub-owned client making a GET.
2. Inbound: ``hub serve`` on PostgreSQL takes signed stripe_like notifications
   (``payment_intent.succeeded``, each for its own pending payin) from 16 concurrent clients at
   ``POST /v1/inbound/{connection}``: verified on the raw body, deduplicated, stored and
   acknowledged. Baseline in the same run: ``GET /v1/health`` at the same concurrency.
3. Apply: once the server has stopped, every notification received is applied (what the
   workers do behind the API) by ``--apply-threads`` appliers at once, timed: ``apply_rps``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

from bench import BenchError, run_probe
from bench.api import HOST, scratch_hub
from bench.loadgen import PhaseResult, encode_request, percentile, run_phase

HELP = "hub overhead per outbound call; inbound notification ingestion (PostgreSQL)"
DATABASE = "hub_bench_adapters"
TARGET_INGEST_RPS = 500
TARGET_INGEST_P99_MS = 50.0
WARMUP_NOTIFICATIONS = 3000  # 0.5 s of warm-up at up to 6,000 a second

Log = Callable[[str], None]


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--calls", type=int, default=500, help="outbound calls of each kind (500)")
    parser.add_argument(
        "--notifications", type=int, default=6000, help="inbound notifications (6000)"
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers (4)")
    parser.add_argument(
        "--apply-threads", type=int, default=4, help="notifications applied at a time (4)"
    )
    parser.add_argument("--database", default=DATABASE, help=f"database to recreate ({DATABASE})")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="a tiny run for CI")


def _probe(env: dict[str, str], *args: str) -> dict[str, Any]:
    return run_probe("bench.adapters_probe", env, *args)


def _ms(value: float) -> float:
    return round(value, 2)


async def _ingest(
    port: int, clients: int, connection: str, notifications: list[dict[str, str]], measured: int
) -> tuple[PhaseResult, PhaseResult]:
    host = f"{HOST}:{port}"
    health = encode_request("GET", "/v1/health", host=host)

    def baseline(client: int, seq: int) -> tuple[str, bytes]:
        return "health", health

    path = f"/v1/inbound/{connection}"

    def notification(client: int, seq: int) -> tuple[str, bytes]:
        row = notifications[(seq * clients + client) % len(notifications)]
        request = encode_request(
            "POST",
            path,
            host=host,
            headers={"Content-Type": "application/json", "Stripe-Signature": row["signature"]},
            body=row["body"].encode(),
        )
        return "inbound", request

    # The warm-up takes notifications from the same list; the spare ones keep every request a
    # new event (a repeat would be a duplicate, a cheaper path).
    per_client = max(1, measured // clients)
    base, _ = await run_phase(
        "baseline",
        host=HOST,
        port=port,
        clients=clients,
        maker=baseline,
        warmup=1.0,
        requests=per_client * clients,
    )
    ingest, _ = await run_phase(
        "inbound",
        host=HOST,
        port=port,
        clients=clients,
        maker=notification,
        warmup=0.5,
        requests=per_client * clients,
    )
    return base, ingest


def run(options: dict[str, Any], log: Log) -> dict[str, Any]:
    smoke = bool(options.get("smoke"))
    calls = 30 if smoke else int(options.get("calls") or 500)
    count = 400 if smoke else int(options.get("notifications") or 6000)
    clients = int(options.get("clients") or 16)
    workers = int(options.get("workers") or 4)
    apply_threads = int(options.get("apply_threads") or 4)
    with scratch_hub(options, database=DATABASE, name="adapters", log=log) as hub:
        env = hub.env
        log(f"outbound: {calls} payout submits and {calls} syncs against the bank sandbox")
        outbound = _probe(env, "outbound", str(calls))
        spare = WARMUP_NOTIFICATIONS
        log(f"inbound: seeding {count} + {spare} pending payins and their signed notifications")
        notes_file = hub.data_dir / "notifications.jsonl"
        seeded = _probe(env, "seed-inbound", str(count + spare), str(notes_file))
        notifications = [json.loads(line) for line in notes_file.read_text().splitlines()]
        port = hub.serve(workers=workers)
        log(f"server: hub serve on {HOST}:{port}, gunicorn sync {workers} workers")
        base, ingest = asyncio.run(
            _ingest(port, clients, str(seeded["connection"]), notifications, measured=count)
        )
        hub.stop_serving()
        log(f"apply: every received notification, {apply_threads} at a time")
        applying = _probe(env, "apply", str(apply_threads))
        applied = _count_applied(env)
    base_sorted, ingest_sorted = base.all_sorted(), ingest.all_sorted()
    ingest_p99 = percentile(ingest_sorted, 99)
    return {
        "bench": "adapters",
        **outbound,
        "clients": clients,
        "baseline_rps": round(base.rps, 1),
        "baseline_p99_ms": _ms(percentile(base_sorted, 99)),
        "ingest_rps": round(ingest.rps, 1),
        "ingest_p50_ms": _ms(percentile(ingest_sorted, 50)),
        "ingest_p99_ms": _ms(ingest_p99),
        "ingest_vs_baseline_rps": round(ingest.rps / base.rps, 3) if base.rps else None,
        "ingest_target_met": bool(
            ingest.rps >= TARGET_INGEST_RPS and ingest_p99 <= TARGET_INGEST_P99_MS
        ),
        **applying,
        "notifications_by_status": applied,
        "errors": base.errors + ingest.errors,
        "error_samples": (base.error_samples + ingest.error_samples)[:5],
        "server": f"gunicorn sync {workers} workers",
        "db": "postgresql",
        "smoke": smoke,
        "nproc": os.cpu_count(),
    }


def _count_applied(env: dict[str, str]) -> dict[str, int]:
    code = (
        "import json, django; django.setup()\n"
        "from django.db.models import Count\n"
        "from hub.models import InboundWebhook\n"
        "rows = InboundWebhook.objects.values('status').annotate(n=Count('id'))\n"
        "print(json.dumps({r['status']: r['n'] for r in rows}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "DJANGO_SETTINGS_MODULE": "hub.settings"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(done.stderr[-2000:])
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
