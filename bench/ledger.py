"""``hub bench ledger``: how many transfers the ledger makes per second on PostgreSQL.

On a database of its own (``hub_bench_ledger``, dropped and created), with A merchant accounts
funded first:

1. ``batch``: B batches of 8,000 transfers between random accounts through
   ``transfers_create_batch`` (atomic, one durable commit each): ``batch_transfers_per_s``.
   Baseline in the same run: the same rows with a raw ``COPY`` into a scratch table with the same
   columns and no index, trigger or constraint: ``copy_rows_per_s``, and ``batch_vs_copy``.
2. ``single``: N transfers between random pairs through ``transfer_create`` from 16 threads,
   each its own commit: ``single_transfers_per_s``.
3. ``hot``: the same, every transfer crediting one account opened ``hot`` (see
   ``settlement.models.AccountDelta``): ``hot_account_transfers_per_s``.
4. ``rest``: ``POST /v1/transfers`` (an operator key, a transfer id per request) from 16
   closed-loop clients against ``hub serve`` (gunicorn sync workers): ``rest_transfers_per_s``
   and ``rest_p50_ms`` / ``rest_p99_ms``, next to ``GET /v1/health`` at the same concurrency.

Each in-process phase runs in a subprocess (``bench.ledger_probe``) on the benchmark database.
"""

from __future__ import annotations

import asyncio
import json
import os
from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

from bench import run_probe
from bench.api import HOST, scratch_hub
from bench.loadgen import encode_request, rest_against_health

HELP = "ledger transfers per second: batches, single, hot account, REST (PostgreSQL)"
DATABASE = "hub_bench_ledger"
TARGETS = {
    "batch_transfers_per_s": 50_000,
    "batch_vs_copy": 0.25,
    "single_transfers_per_s": 3_000,
    "hot_vs_single": 0.5,
    "rest_transfers_per_s": 500,
    "rest_p99_ms": 50.0,
}

Log = Callable[[str], None]


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=1000, help="merchant accounts (1000)")
    parser.add_argument("--batches", type=int, default=10, help="batches of 8,000 (10)")
    parser.add_argument("--singles", type=int, default=20000, help="single transfers (20000)")
    parser.add_argument("--threads", type=int, default=16, help="threads and clients (16)")
    parser.add_argument("--rest-seconds", type=float, default=10.0, help="REST phase (10 s)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers (3)")
    parser.add_argument("--database", default=DATABASE, help=f"database to recreate ({DATABASE})")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="a tiny run for CI")


def _probe(env: dict[str, str], *args: str) -> dict[str, Any]:
    return run_probe("bench.ledger_probe", env, *args)


async def _rest(
    port: int, clients: int, seconds: float, key: str, pairs: list[list[str]]
) -> dict[str, Any]:
    host = f"{HOST}:{port}"

    def transfer(client: int, seq: int) -> tuple[str, bytes]:
        debit, credit = pairs[(seq * clients + client) % len(pairs)]
        body = json.dumps(
            {
                "id": f"rest-{client}-{seq}",
                "debit_account": debit,
                "credit_account": credit,
                "amount": {"amount": "1.00", "currency": "CNY"},
            }
        ).encode()
        return "transfer", encode_request(
            "POST",
            "/v1/transfers",
            host=host,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            body=body,
        )

    return await rest_against_health(
        host=HOST, port=port, clients=clients, seconds=seconds, maker=transfer, per_s="transfers"
    )


def run(options: dict[str, Any], log: Log) -> dict[str, Any]:
    smoke = bool(options.get("smoke"))
    accounts = 50 if smoke else int(options.get("accounts") or 1000)
    batches = 1 if smoke else int(options.get("batches") or 10)
    batch_size = 500 if smoke else 8000
    singles = 400 if smoke else int(options.get("singles") or 20000)
    threads = int(options.get("threads") or 16)
    rest_seconds = 1.0 if smoke else float(options.get("rest_seconds") or 10.0)
    workers = int(options.get("workers") or 3)
    result: dict[str, Any] = {"bench": "ledger"}
    loadavg_before = list(os.getloadavg())
    with scratch_hub(options, database=DATABASE, name="ledger", log=log) as hub:
        env = hub.env
        log(f"setup: {accounts} funded merchant accounts")
        setup = _probe(env, "setup", str(accounts))
        log(f"batch: {batches} x {batch_size}, then the same rows by COPY")
        result.update(_probe(env, "batch", str(batches), str(batch_size)))
        log(f"single: {singles} transfers from {threads} threads")
        result.update(_probe(env, "single", str(threads), str(singles)))
        log(f"hot account: {singles} transfers from {threads} threads, one credit account")
        result.update(_probe(env, "hot", str(threads), str(singles)))
        rest_setup = _probe(env, "rest-setup", str(threads * 64))
        port = hub.serve(workers=workers)
        log(f"rest: POST /v1/transfers, {threads} clients, {rest_seconds} s")
        result.update(
            asyncio.run(_rest(port, threads, rest_seconds, rest_setup["key"], rest_setup["pairs"]))
        )
        result["accounts"] = setup["accounts"]
        version = hub.version
    result["hot_vs_single"] = round(
        result["hot_account_transfers_per_s"] / result["single_transfers_per_s"], 3
    )
    met = {
        name: (result[name] <= target if name.endswith("_ms") else result[name] >= target)
        for name, target in TARGETS.items()
    }
    result.update(
        {
            "targets": TARGETS,
            "targets_met": met,
            "all_targets_met": all(met.values()),
            "server": f"gunicorn sync {workers} workers",
            "db": "postgresql",
            "db_version": version,
            "smoke": smoke,
            "nproc": os.cpu_count(),
            "loadavg_before": loadavg_before,
        }
    )
    return result
