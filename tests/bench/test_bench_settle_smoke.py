"""`hub bench settle --smoke` end to end on a real PostgreSQL database. Timings are never
asserted (the machine is shared); only the shape of the result and the run's own check."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.bench.test_bench_smoke import _on_postgres

SETTLE_KEYS = {
    "bench",
    "payins",
    "merchants",
    "chunk",
    "run_seconds",
    "payins_per_s",
    "baseline_seconds",
    "baseline_per_s",
    "vs_baseline",
    "fees",
    "net",
    "totals_checked",
    "db",
    "smoke",
}


@pytest.mark.postgres
@pytest.mark.skipif(not _on_postgres(), reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
def test_bench_settle_smoke() -> None:
    database = f"hub_bench_settle_test_{os.getpid()}"
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "bench", "settle", "--smoke", "--database", database],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) >= SETTLE_KEYS, sorted(SETTLE_KEYS - set(result))
    assert (result["bench"], result["smoke"], result["db"]) == ("settle", True, "postgresql")
    assert (result["payins"], result["merchants"], result["chunk"]) == (400, 10, 200)
    assert result["totals_checked"] is True
    assert result["payins_per_s"] > 0
    assert result["baseline_per_s"] > 0
