"""``hub bench settle``: a payment institution's daily settlement run, payins settled per
second, on PostgreSQL in a database of its own (``hub_bench_settle``).

N payins of M merchants, paid before yesterday's cutoff (every tenth partly refunded before it
settled), are settled by ``settlement_run_execute`` in one process: each payin's pending credit
posted less its refund, the hub's fee as its own transfer, the payin marked, a chunk per
transaction; the run's totals are checked against the payins. Baseline in the same run: the
same ledger work (the same posts and fee transfers, as many per transaction) on N other pending
credits, without the run's reads and writes of its payins.
"""

from __future__ import annotations

import os
from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

from bench import run_probe
from bench.api import scratch_hub

HELP = "settlement runs: payins settled per second, against the bare ledger work (PostgreSQL)"
DATABASE = "hub_bench_settle"
Log = Callable[[str], None]


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--payins", type=int, default=20000, help="payins in the run (20000)")
    parser.add_argument("--merchants", type=int, default=100, help="merchants (100)")
    parser.add_argument("--database", help=f"database URL or name (default {DATABASE})")
    parser.add_argument("--keep-database", action="store_true", help="do not drop it afterwards")
    parser.add_argument("--smoke", action="store_true", help="a tiny run for CI (400 payins)")


def run(options: dict[str, Any], log: Log) -> dict[str, Any]:
    smoke = bool(options.get("smoke"))
    payins = 400 if smoke else int(options.get("payins") or 20000)
    merchants = 10 if smoke else int(options.get("merchants") or 100)
    loadavg_before = round(os.getloadavg()[0], 2)
    with scratch_hub(options, database=DATABASE, name="settle", log=log) as hub:
        env = {**hub.env, "HUB_SETTLEMENT_CUTOFF": "23:00"}
        log(f"setup: {payins} paid payins of {merchants} merchants, and as many bare holds")
        result: dict[str, Any] = run_probe(
            "bench.settle_probe", env, "setup", str(payins), str(merchants)
        )
        chunk = int(env.get("HUB_SETTLEMENT_RUN_CHUNK", "200"))
        log(f"run: the institution's settlement run, {chunk} payins per transaction")
        result.update(run_probe("bench.settle_probe", env, "run"))
        log(f"baseline: the same posts and fees, {chunk} per transaction")
        result.update(run_probe("bench.settle_probe", env, "baseline", str(chunk)))
        version = hub.version
    result.update(
        {
            "bench": "settle",
            "chunk": chunk,
            "vs_baseline": round(result["payins_per_s"] / result["baseline_per_s"], 3),
            "db": "postgresql",
            "db_version": version,
            "smoke": smoke,
            "nproc": os.cpu_count(),
            "loadavg_before": loadavg_before,
        }
    )
    return result
