"""`hub bench fx --smoke` end to end on a real PostgreSQL database and a real `hub serve`.
Timings are never asserted (the machine is shared); only the shape of the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.bench.test_bench_smoke import _on_postgres

FX_KEYS = {
    "bench",
    "merchants",
    "quotes",
    "baseline_ledger",
    "baseline_ledger_per_s",
    "service_conversions",
    "service_conversions_per_s",
    "service_conversions_p99_ms",
    "rest_conversions_per_s",
    "rest_p99_ms",
    "rest_baseline_rps",
    "rest_errors",
    "service_vs_baseline",
    "target_service_per_s",
    "target_met",
    "processes",
    "db",
}


@pytest.mark.postgres
@pytest.mark.skipif(not _on_postgres(), reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
def test_bench_fx_smoke() -> None:
    database = f"hub_bench_fx_test_{os.getpid()}"
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "bench", "fx", "--smoke", "--database", database],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) >= FX_KEYS, sorted(FX_KEYS - set(result))
    assert (result["bench"], result["smoke"], result["db"]) == ("fx", True, "postgresql")
    assert (result["service_conversions"], result["baseline_ledger"]) == (200, 200)
    assert result["rest_errors"] == 0, result["rest_error_samples"]
    assert result["rest_conversions_per_s"] > 0
    assert result["target_service_per_s"] == 1000
