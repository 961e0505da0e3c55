"""`hub bench audit --smoke` end to end on a real PostgreSQL database. Timings are never
asserted (the machine is shared); only the shape of the result and the work it did."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.bench.test_bench_smoke import _on_postgres

AUDIT_KEYS = {
    "bench",
    "receipts",
    "receipts_processes",
    "receipts_per_s",
    "sign_only_per_s",
    "receipts_vs_sign_only",
    "proof_tree_size",
    "inclusion_p50_ms",
    "inclusion_p99_ms",
    "consistency_p99_ms",
    "batch_orders",
    "batch_triples_per_s",
    "rules_triples_per_s",
    "batch_vs_rules",
    "targets",
    "met",
    "db",
    "loadavg_before",
}


@pytest.mark.postgres
@pytest.mark.skipif(not _on_postgres(), reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
def test_bench_audit_smoke() -> None:
    database = f"hub_bench_audit_test_{os.getpid()}"
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "bench", "audit", "--smoke", "--database", database],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) >= AUDIT_KEYS, sorted(AUDIT_KEYS - set(result))
    assert (result["bench"], result["smoke"], result["db"]) == ("audit", True, "postgresql")
    assert (result["receipts"], result["proof_tree_size"], result["batch_orders"]) == (
        200,
        2000,
        300,
    )
    assert set(result["met"]) == {"receipts_per_s", "inclusion_p99_ms", "batch_triples_per_s"}
