"""Benchmarks, each runnable as ``hub bench NAME`` and printing one JSON line last.

A benchmark is a module with ``HELP``, ``add_arguments(parser)`` and ``run(options, log)``, which
returns the result as a dict (the JSON line) or raises :class:`BenchError` for a refusal that the
command reports with a non-zero exit status.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any, Protocol, cast

# name -> module. Add a benchmark here and it appears under ``hub bench``.
BENCHMARKS: dict[str, str] = {
    "api": "bench.api",
    "adapters": "bench.adapters",
    "ledger": "bench.ledger",
    "reconcile": "bench.reconcile",
    "settle": "bench.settle",
    "fx": "bench.fx",
    "audit": "bench.audit",
}


class BenchError(Exception):
    """The benchmark cannot run (e.g. PostgreSQL unreachable) or its setup failed."""


class Benchmark(Protocol):
    HELP: str

    def add_arguments(self, parser: ArgumentParser) -> None: ...

    def run(self, options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]: ...


def load(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise BenchError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    return cast(Benchmark, importlib.import_module(BENCHMARKS[name]))


def run_probe(module: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run ``python -m module args`` (a benchmark's in-process half, on the benchmark's database
    through ``env``) and return the JSON line it prints last."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(
            f"the probe failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
