"""``hub bench fx``: conversions per second on PostgreSQL, in a database of its own
(``hub_bench_fx``): through the service layer from 16 threads, and through REST from 16 clients.

Every conversion executes its own open quote (made in the setup) for one of 64 merchants, CNY to
KRW and back alternately, as three linked transfers through the hub's FX positions and fees.
Baselines in the same run: the same three linked transfers alone (one INSERT and its commit, on
the same shards of the hub's accounts), from the same threads: the ledger's part of a
conversion; and `GET /v1/health` at the same concurrency for REST.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import time
from argparse import ArgumentParser
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import run_probe
from bench.api import HOST, scratch_hub
from bench.loadgen import encode_request, rest_against_health

HELP = "FX conversions per second: service layer and REST (PostgreSQL)"
DATABASE = "hub_bench_fx"
TARGET_SERVICE_PER_S = 1000
Log = Callable[[str], None]


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--merchants", type=int, default=64, help="merchants (64)")
    parser.add_argument("--conversions", type=int, default=8000, help="service layer (8000)")
    parser.add_argument("--threads", type=int, default=16, help="threads and clients (16)")
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="service-layer processes sharing the threads (2, one per core: one Python "
        "process runs one thread at a time)",
    )
    parser.add_argument("--rest-seconds", type=float, default=10.0, help="REST phase (10 s)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers (3)")
    parser.add_argument("--database", help=f"database URL or name (default {DATABASE})")
    parser.add_argument("--keep-database", action="store_true", help="do not drop it afterwards")
    parser.add_argument("--smoke", action="store_true", help="a tiny run for CI")


async def _rest(port: int, clients: int, seconds: float, work: list[list[str]]) -> dict[str, Any]:
    host = f"{HOST}:{port}"
    # A quote per request; should they ever run out, the answers (409 quote_used) count as
    # errors rather than stopping the client.
    taken = itertools.cycle(range(len(work)))

    def conversion(client: int, seq: int) -> tuple[str, bytes]:
        quote, key, sell_account, buy_account = work[next(taken)]
        body = json.dumps(
            {
                "quote": quote,
                "sell_account": sell_account,
                "buy_account": buy_account,
                "reference": quote,
            }
        ).encode()
        return "conversion", encode_request(
            "POST",
            "/v1/fx/conversions",
            host=host,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            body=body,
        )

    return await rest_against_health(
        host=HOST,
        port=port,
        clients=clients,
        seconds=seconds,
        maker=conversion,
        per_s="conversions",
    )


def _nearest_rank(sorted_ms: list[float], pct: float) -> float:
    return sorted_ms[max(1, math.ceil(pct / 100 * len(sorted_ms))) - 1]


def _together(
    env: dict[str, str], command: str, prefix: str, processes: int, threads: int, count: int
) -> dict[str, Any]:
    """``processes`` probes at once, each with its share of the threads and of the work, all
    starting at one moment; throughput over the span from the first start to the last end."""
    start_at = time.time() + 8.0  # time for every probe to start Python and Django
    share = count // processes
    jobs = [
        (str(threads // processes), str(share), str(n * share), str(start_at))
        for n in range(processes)
    ]
    with ThreadPoolExecutor(processes) as pool:
        parts = list(pool.map(lambda job: run_probe("bench.fx_probe", env, command, *job), jobs))
    done = sum(part["count"] for part in parts)
    seconds = max(p["ended"] for p in parts) - min(p["started"] for p in parts)
    latencies = sorted(x for part in parts for x in part["latencies_ms"])
    return {
        f"{prefix}": done,
        f"{prefix}_per_s": round(done / seconds, 1),
        f"{prefix}_p50_ms": _nearest_rank(latencies, 50),
        f"{prefix}_p99_ms": _nearest_rank(latencies, 99),
    }


def run(options: dict[str, Any], log: Log) -> dict[str, Any]:
    smoke = bool(options.get("smoke"))
    merchants = 8 if smoke else int(options.get("merchants") or 64)
    count = 200 if smoke else int(options.get("conversions") or 8000)
    threads = int(options.get("threads") or 16)
    processes = max(1, min(int(options.get("processes") or 2), threads))
    rest_seconds = 1.0 if smoke else float(options.get("rest_seconds") or 10.0)
    workers = int(options.get("workers") or 3)
    # Quotes for the REST phase and its warm-up second at 2,000 a second, well over what this
    # machine makes.
    rest_quotes = int((rest_seconds + 1) * 2000) + 1000
    loadavg_before = round(os.getloadavg()[0], 2)
    result: dict[str, Any] = {"bench": "fx"}
    with scratch_hub(options, database=DATABASE, name="fx", log=log) as hub:
        env = hub.env

        def probe(*args: str) -> dict[str, Any]:
            return run_probe("bench.fx_probe", env, *args)

        log(f"setup: {merchants} merchants, {count + rest_quotes} open quotes")
        result.update(probe("setup", str(merchants), str(count + rest_quotes)))
        log(f"baseline: {count} x the three linked transfers, {threads} threads")
        result.update(_together(env, "baseline", "baseline_ledger", processes, threads, count))
        log(f"service: {count} conversions, {processes} processes x {threads // processes} threads")
        result.update(_together(env, "convert", "service_conversions", processes, threads, count))
        work = probe("rest-setup", str(rest_quotes))["work"]
        port = hub.serve(workers=workers)
        log(f"rest: POST /v1/fx/conversions, {threads} clients, {rest_seconds} s")
        result.update(asyncio.run(_rest(port, threads, rest_seconds, work)))
        version = hub.version
    result.update(
        {
            "threads": threads,
            "processes": processes,
            "service_vs_baseline": round(
                result["service_conversions_per_s"] / result["baseline_ledger_per_s"], 3
            ),
            "target_service_per_s": TARGET_SERVICE_PER_S,
            "target_met": result["service_conversions_per_s"] >= TARGET_SERVICE_PER_S,
            "server": f"gunicorn sync {workers} workers",
            "db": "postgresql",
            "db_version": version,
            "smoke": smoke,
            "nproc": os.cpu_count(),
            "loadavg_before": loadavg_before,
        }
    )
    return result
