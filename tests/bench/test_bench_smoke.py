"""`hub bench api --smoke` end to end: a real PostgreSQL database, a real `hub serve`, real
sockets. Timings are never asserted (the machine is shared); only the shape of the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

EXPECTED_KEYS = {
    "bench",
    "clients",
    "baseline_rps",
    "baseline_p50_ms",
    "baseline_p99_ms",
    "get_rps",
    "get_p50_ms",
    "get_p99_ms",
    "get_vs_baseline_rps",
    "get_vs_baseline_p99",
    "post_rps",
    "post_p50_ms",
    "post_p99_ms",
    "post_vs_baseline_rps",
    "replay_rps",
    "replay_p99_ms",
    "errors",
    "server",
    "db",
}


def _on_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


@pytest.mark.postgres
@pytest.mark.skipif(not _on_postgres(), reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
def test_bench_api_smoke() -> None:
    # A database of its own, so that the test never drops a developer's running benchmark.
    database = f"hub_bench_test_{os.getpid()}"
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "bench", "api", "--smoke", "--database", database],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-4000:]
    result = json.loads(lines[-1])
    assert set(result) >= EXPECTED_KEYS, sorted(EXPECTED_KEYS - set(result))
    assert result["bench"] == "api"
    assert result["db"] == "postgresql"
    assert result["clients"] == 16
    assert result["errors"] == 0, done.stderr[-4000:]
    assert all(result["requests"][phase] > 0 for phase in ("baseline", "get", "post", "replay"))


@pytest.mark.parametrize(
    ("database_url", "message"),
    [
        ("sqlite:///tmp/not-postgres.sqlite3", "needs PostgreSQL"),
        ("postgres://postgres@127.0.0.1:1/hub", "PostgreSQL is not reachable"),
    ],
)
def test_bench_refuses_without_postgres(database_url: str, message: str) -> None:
    """No PostgreSQL, no benchmark: a clear reason and a non-zero exit, and no JSON line."""
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "bench", "api", "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DATABASE_URL": database_url},
        check=False,
    )
    assert done.returncode == 2, done.stderr[-4000:]
    assert message in done.stderr
    assert done.stdout.strip() == ""


ADAPTER_KEYS = {
    "bench",
    "submit_overhead_p50_ms",
    "submit_overhead_p99_ms",
    "sync_overhead_p50_ms",
    "sync_overhead_p99_ms",
    "sandbox_p50_ms",
    "baseline_client_overhead_p50_ms",
    "baseline_rps",
    "ingest_rps",
    "ingest_p50_ms",
    "ingest_p99_ms",
    "ingest_vs_baseline_rps",
    "apply_waiting",
    "apply_settled",
    "apply_rps",
    "notifications_by_status",
    "errors",
}


@pytest.mark.postgres
@pytest.mark.skipif(not _on_postgres(), reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
def test_bench_adapters_smoke() -> None:
    database = f"hub_bench_adapters_test_{os.getpid()}"
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "bench", "adapters", "--smoke", "--database", database],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) >= ADAPTER_KEYS, sorted(ADAPTER_KEYS - set(result))
    assert result["bench"] == "adapters"
    assert result["errors"] == 0, result.get("error_samples")
    # Every notification sent was verified, stored once and then applied, none refused.
    assert set(result["notifications_by_status"]) == {"applied"}
    applied = result["notifications_by_status"]["applied"]
    assert applied > 0
    assert result["apply_waiting"] == result["apply_settled"] == applied


LEDGER_KEYS = {
    "batch_transfers_per_s",
    "copy_rows_per_s",
    "batch_vs_copy",
    "single_transfers_per_s",
    "hot_account_transfers_per_s",
    "hot_vs_single",
    "rest_transfers_per_s",
    "rest_p99_ms",
    "rest_errors",
    "targets_met",
}


@pytest.mark.postgres
@pytest.mark.skipif(not _on_postgres(), reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
def test_bench_ledger_smoke() -> None:
    database = f"hub_bench_ledger_test_{os.getpid()}"
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "bench", "ledger", "--smoke", "--database", database],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) >= LEDGER_KEYS, sorted(LEDGER_KEYS - set(result))
    assert (result["bench"], result["smoke"]) == ("ledger", True)
    assert (result["batches"], result["batch_size"], result["single_transfers"]) == (1, 500, 400)
    assert result["rest_errors"] == 0, result["rest_error_samples"]
    assert set(result["targets_met"]) == set(result["targets"])
