"""``hub bench audit``: electronic receipts and the transparency log on PostgreSQL, in a database
of its own (``hub_bench_audit``). Three figures, each against a baseline of the same run:

1. ``receipts_per_s``: settled, verified payins turned into receipts as the worker does it
   (canonical JSON, Ed25519 signature, leaf appended, receipt stored; a batch per
   transaction), against ``sign_only_per_s``: canonicalising and signing alone.
2. ``inclusion_p99_ms`` at 1,000,000 leaves: ``log_inclusion_proof`` of random leaves against
   the stored log (built first by a bulk load), one call at a time, each proof verified.
3. ``batch_triples_per_s``: ``verification_batch_create`` over N filed orders with their payment
   records and waybills, end to end (read, rules, insert, commit), against
   ``rules_triples_per_s``: the vectorised rules alone on as many rows.
"""

from __future__ import annotations

import os
from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

from bench import run_probe
from bench.api import scratch_hub

HELP = "receipts signed and logged per second, proof p99 at 1M leaves, triples verified per second"
DATABASE = "hub_bench_audit"
TARGETS = {"receipts_per_s": 5000, "inclusion_p99_ms": 10.0, "batch_triples_per_s": 20000}
Log = Callable[[str], None]


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--receipts", type=int, default=20000, help="receipts issued (20000)")
    parser.add_argument("--leaves", type=int, default=1_000_000, help="log size (1000000)")
    parser.add_argument("--orders", type=int, default=100_000, help="batch orders (100000)")
    parser.add_argument("--database", help=f"database URL or name (default {DATABASE})")
    parser.add_argument("--keep-database", action="store_true", help="do not drop it afterwards")
    parser.add_argument("--smoke", action="store_true", help="a tiny run for CI")


def run(options: dict[str, Any], log: Log) -> dict[str, Any]:
    smoke = bool(options.get("smoke"))
    receipts = 200 if smoke else int(options.get("receipts") or 20000)
    leaves = 2000 if smoke else int(options.get("leaves") or 1_000_000)
    orders = 300 if smoke else int(options.get("orders") or 100_000)
    loadavg_before = round(os.getloadavg()[0], 2)
    result: dict[str, Any] = {"bench": "audit"}
    with scratch_hub(options, database=DATABASE, name="audit", log=log) as hub:
        log(f"receipts: {receipts} settled, verified payins issued as the worker does")
        result.update(run_probe("bench.audit_probe", hub.env, "receipts", str(receipts)))
        log(f"log: built to {leaves} leaves, then inclusion and consistency proofs timed")
        result.update(run_probe("bench.audit_log", hub.env, str(leaves)))
        log(f"verification: {orders} orders filed, then one batch pass")
        result.update(run_probe("bench.audit_verify", hub.env, "batch", str(orders)))
        result.update(run_probe("bench.audit_verify", hub.env, "rules", str(orders)))
        version = hub.version
    result.pop("target_met", None)
    rules_per_s = result.get("rules_triples_per_s") or result.get("rules_rows_per_s")
    result.update(
        {
            "receipts_vs_sign_only": round(result["receipts_per_s"] / result["sign_only_per_s"], 3),
            "batch_vs_rules": round(result["batch_triples_per_s"] / rules_per_s, 3)
            if rules_per_s
            else None,
            "targets": TARGETS,
            "met": {
                "receipts_per_s": result["receipts_per_s"] >= TARGETS["receipts_per_s"],
                "inclusion_p99_ms": result["inclusion_p99_ms"] <= TARGETS["inclusion_p99_ms"],
                "batch_triples_per_s": result["batch_triples_per_s"]
                >= TARGETS["batch_triples_per_s"],
            },
            "db": "postgresql",
            "db_version": version,
            "smoke": smoke,
            "nproc": os.cpu_count(),
            "loadavg_before": loadavg_before,
        }
    )
    return result
