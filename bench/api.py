"""``hub bench api``: authenticated GET and idempotent POST throughput and latency against
``hub serve`` on PostgreSQL, next to a baseline (the unauthenticated GET /v1/health) measured in
the same run, so that the ratios survive a noisy machine.

What it does, in order:

1. refuses (exit status 2) unless PostgreSQL answers at the server named by ``DATABASE_URL``
   (default ``postgres://postgres@127.0.0.1:5432``);
2. drops and recreates the database ``hub_bench`` (``--database``) on that server (never the
   database named in ``DATABASE_URL``), migrates it and seeds the sandbox
   (``hub seed sandbox --json``);
3. starts ``hub serve --no-beat --no-worker --worker-class sync --workers 3`` (the configuration
   chosen by measurement; ``--worker`` keeps the Celery worker) on a free loopback port, with a
   private data directory (so the file-system broker's queue is private too, unless
   ``--broker-url`` or ``CELERY_BROKER_URL`` names a broker; the queue is ``hub-bench``);
4. creates one merchant per client through the API (the POST phases' targets);
5. runs the phases, each with a warm-up that is not counted, ``--rounds`` times interleaved:
   ``baseline`` GET /v1/health (no key); ``get`` GET /v1/me and GET /v1/participants?limit=10
   alternately (operator key); ``post`` POST /v1/participants/{id} (metadata update) with a new
   Idempotency-Key per request; ``replay`` the same POST with the same key again and again (the
   stored response is replayed);
6. stops the server (SIGTERM, as Ctrl-C would), drops the database, and returns the figures.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from argparse import ArgumentParser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import BenchError
from bench.loadgen import PhaseResult, encode_request, percentile, run_phase
from hub.registration import brn_check_digit

HELP = "API throughput and latency at N concurrent clients against `hub serve` on PostgreSQL."

DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432"
BENCH_DATABASE = "hub_bench"
TARGET_GET_P99_MS = 25.0
HOST = "127.0.0.1"
PHASES = ("baseline", "get", "post", "replay")

Log = Callable[[str], None]


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--seconds", type=float, help="measured seconds per phase, over all rounds (default 10)"
    )
    size.add_argument("--requests", type=int, help="measured requests per phase, over all rounds")
    parser.add_argument(
        "--warmup", type=float, help="uncounted seconds before each phase's window (default 1)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="run the phases this many times, interleaved, and pool the samples (default 2)",
    )
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument(
        "--worker-class",
        choices=["sync", "gthread"],
        default="sync",
        help="gunicorn worker class for `hub serve` (default sync: chosen by measurement, see "
        "docs/benchmarks.md; `hub serve` itself defaults to gthread)",
    )
    parser.add_argument(
        "--workers", type=int, default=3, help="gunicorn worker processes (default 3)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per gthread worker (default 4, as `hub serve`); sync workers have one",
    )
    parser.add_argument(
        "--worker",
        action="store_true",
        help="also run the Celery worker that `hub serve` normally starts (off by default)",
    )
    parser.add_argument(
        "--broker-url",
        default=None,
        help="Celery broker for the server (default: CELERY_BROKER_URL, else the file-system "
        "broker in a temporary directory)",
    )
    parser.add_argument(
        "--database",
        default=BENCH_DATABASE,
        help=f"name of the database to drop, create and use (default {BENCH_DATABASE}; "
        "must start with hub_bench)",
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the database in place afterwards"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run for CI: one round, ~1 s per phase"
    )


# -- PostgreSQL -------------------------------------------------------------------------------


def bench_database_url(
    name: str = BENCH_DATABASE, environ: dict[str, str] | os._Environ[str] = os.environ
) -> str:
    """The URL of database ``name`` (``hub_bench...``) on the server that ``DATABASE_URL`` names.
    The database in ``DATABASE_URL`` itself is never touched: the benchmark only ever drops
    databases whose name starts with ``hub_bench``."""
    if not re.fullmatch(r"hub_bench[a-z0-9_]{0,40}", name):
        raise BenchError(f"--database must match hub_bench[a-z0-9_]*, not {name!r}")
    url = environ.get("DATABASE_URL", "") or DEFAULT_SERVER_URL
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise BenchError(
            f"hub bench api needs PostgreSQL, and DATABASE_URL is {parts.scheme}://...; "
            "set DATABASE_URL=postgres://user@host:port/name (only its server is used) "
            "or unset it for postgres://postgres@127.0.0.1:5432"
        )
    return urlunsplit(("postgres", parts.netloc, "/" + name, parts.query, ""))


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, "/" + name, parts.query, ""))


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(":" + parts.password + "@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class BenchDatabase:
    """The run's own database. An advisory lock, held on a maintenance connection for the whole
    run, keeps two runs from dropping each other's database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = _database_name(url)
        self.admin: Any = None

    def connect(self) -> None:
        import psycopg

        try:
            self.admin = psycopg.connect(
                _with_database(self.url, "postgres"), autocommit=True, connect_timeout=5
            )
        except psycopg.OperationalError as exc:
            raise BenchError(
                f"PostgreSQL is not reachable at {_redacted(self.url)}: {str(exc).strip()}\n"
                "Start it, or set DATABASE_URL=postgres://user@host:port/name to name another "
                "server."
            ) from exc

    def create(self) -> str:
        """Lock, drop and create the database; returns the server's version."""
        self.connect()
        lock = zlib.crc32(f"hub bench {self.name}".encode())
        if not self.admin.execute("SELECT pg_try_advisory_lock(%s)", (lock,)).fetchone()[0]:
            self.close()
            raise BenchError(
                f"another `hub bench` run is using the database {self.name}; wait for it, or "
                f"pass --database {self.name}_2"
            )
        version = str(self.admin.execute("SHOW server_version").fetchone()[0])
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.execute(f'CREATE DATABASE "{self.name}"')
        return version

    def drop(self) -> None:
        if self.admin is not None:
            self.admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def close(self) -> None:
        if self.admin is not None:
            self.admin.close()  # releases the advisory lock
            self.admin = None


def recreate_database(url: str) -> str:
    """Drop and create the database of ``url`` (for other benchmarks: the lock is held only
    meanwhile, so a run that holds it is refused, not dropped); returns the server's version."""
    database = BenchDatabase(url)
    try:
        return database.create()
    finally:
        database.close()


def drop_database(url: str) -> None:
    database = BenchDatabase(url)
    try:
        database.connect()
        database.drop()
    finally:
        database.close()


# -- CPU accounting from /proc (Linux; elsewhere the figures are left out) --------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def cpu_sampler(server_pid: int, database: str) -> Callable[[], dict[str, float]] | None:
    """Cumulative CPU seconds of the server's process tree and of the PostgreSQL backends
    connected to ``database`` (WAL writer, checkpointer and other clusters' users excluded)."""
    if not Path("/proc/self/stat").exists():
        return None
    marker = f" {database} ".encode()

    def sample() -> dict[str, float]:
        stats: dict[int, tuple[int, float]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                stat = _proc_stat(int(entry.name))
                if stat is not None:
                    stats[int(entry.name)] = stat
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        server = 0.0
        todo = [server_pid]
        while todo:
            pid = todo.pop()
            if pid in stats:
                server += stats[pid][1]
            todo.extend(children.get(pid, []))
        db = sum(
            cpu
            for pid, (_, cpu) in stats.items()
            if (line := _cmdline(pid)).startswith(b"postgres:") and marker in line
        )
        return {"server": server, "db": db}

    return sample


# -- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _hub(*args: str) -> list[str]:
    return [sys.executable, "-m", "hub.cli", *args]


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _run_hub(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(_hub(*args), env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(
            f"`hub {' '.join(args)}` failed ({done.returncode}):\n"
            + (done.stdout + done.stderr)[-3000:]
        )
    return done.stdout


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as `hub serve` expects; its children stop with it. Kill the process group
        (ours: it was started in a new session) only if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def start_server(
    env: dict[str, str],
    *,
    port: int,
    worker_class: str,
    workers: int,
    threads: int,
    worker: bool,
    log: Path,
    sandbox: bool = True,
) -> Server:
    """`hub serve` without beat, in a new session; ``sandbox=False`` leaves out the sandbox
    institutions (their ports are fixed and belong to whichever `hub serve` a developer runs)."""
    args = ["serve", "--host", HOST, "--port", str(port), "--no-beat"]
    args += ["--worker-class", worker_class, "--workers", str(workers), "--threads", str(threads)]
    if not worker:
        args.append("--no-worker")
    if not sandbox:
        args.append("--no-sandbox")
    with open(log, "ab") as out:
        process = subprocess.Popen(
            _hub(*args), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(process, port, log)


def wait_healthy(server: Server, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"`hub serve` exited with {server.process.returncode}:\n{_tail(server.log)}"
            )
        try:
            status, _ = call(server.port, "GET", "/v1/health")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(
        f"`hub serve` did not answer /v1/health in {timeout:.0f} s:\n{_tail(server.log)}"
    )


class ScratchHub:
    """A hub of a benchmark's own: a freshly migrated database (``hub_bench...``), a private
    data directory and Celery queue, and, when asked, `hub serve` on a free port."""

    def __init__(self, url: str, version: str, data_dir: Path) -> None:
        self.url = url
        self.version = version
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "DATABASE_URL": url,
            "HUB_DATA_DIR": str(data_dir),
            "HUB_CELERY_QUEUE": "hub-bench",
            "CELERY_BROKER_URL": "",
            "HUB_LOG_LEVEL": "WARNING",
        }
        self.server: Server | None = None

    def serve(self, *, workers: int) -> int:
        """`hub serve` with sync workers and nothing else (no Celery worker, no sandbox
        institutions); returns its port once it answers."""
        server = start_server(
            self.env,
            port=free_port(),
            worker_class="sync",
            workers=workers,
            threads=1,
            worker=False,
            log=self.data_dir / "serve.log",
            sandbox=False,
        )
        self.server = server
        wait_healthy(server)
        return server.port

    def stop_serving(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@contextmanager
def scratch_hub(
    options: dict[str, Any], *, database: str, name: str, log: Callable[[str], None]
) -> Iterator[ScratchHub]:
    """A :class:`ScratchHub` for the length of a ``with``; its server stopped, its database
    dropped (unless ``--keep-database``) and its directory removed afterwards."""
    url = bench_database_url(str(options.get("database") or database))
    log(f"database: {_redacted(url)} (dropped and recreated)")
    version = recreate_database(url)
    hub = ScratchHub(url, version, Path(tempfile.mkdtemp(prefix=f"hub-bench-{name}-")))
    try:
        _run_hub(hub.env, "migrate", "--verbosity", "0")
        yield hub
    finally:
        hub.stop_serving()
        if not options.get("keep_database"):
            try:
                drop_database(url)
            except Exception as exc:
                log(f"could not drop the database: {exc}")
        shutil.rmtree(hub.data_dir, ignore_errors=True)


def call(
    port: int,
    method: str,
    path: str,
    *,
    key: str | None = None,
    body: Any = None,
    idempotency_key: str | None = None,
) -> tuple[int, Any]:
    """One request on a fresh connection (setup only): (status, parsed JSON body)."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw) if raw else None
    except ValueError:
        return response.status, raw.decode(errors="replace")


# -- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    clients: int
    seconds: float | None
    requests: int | None
    warmup: float
    rounds: int


def plan_from(options: dict[str, Any]) -> Plan:
    smoke = bool(options.get("smoke"))
    seconds, requests = options.get("seconds"), options.get("requests")
    if seconds is None and requests is None:
        seconds = 1.0 if smoke else 10.0
    warmup = options.get("warmup")
    rounds = options.get("rounds")
    plan = Plan(
        clients=int(options.get("clients") or 16),
        seconds=seconds,
        requests=requests,
        warmup=float(warmup if warmup is not None else (0.3 if smoke else 1.0)),
        rounds=int(rounds if rounds is not None else (1 if smoke else 2)),
    )
    if plan.clients < 1 or plan.rounds < 1 or plan.warmup < 0:
        raise BenchError("--clients and --rounds must be at least 1, --warmup not negative")
    if (plan.seconds is not None and plan.seconds <= 0) or (
        plan.requests is not None and plan.requests < plan.rounds
    ):
        raise BenchError("--seconds must be positive and --requests at least --rounds")
    return plan


def _brn(n: int) -> str:
    first9 = f"{970000000 + n:09d}"
    return first9 + brn_check_digit(first9)


def _setup(port: int, keys: dict[str, dict[str, str]], clients: int, run_id: str) -> list[str]:
    """One merchant per client, created by the operator through the API: the POST targets."""
    operator = keys["operator"]["key"]
    status, body = call(port, "GET", "/v1/me", key=operator)
    if status != 200:
        raise BenchError(f"GET /v1/me with the seeded operator key: {status} {body}")
    targets = []
    for i in range(clients):
        status, body = call(
            port,
            "POST",
            "/v1/participants",
            key=operator,
            idempotency_key=f"bench-{run_id}-setup-{i}",
            body={
                "role": "merchant",
                "legal_name": f"Bench Merchant {i}",
                "country": "KR",
                "registration_id": _brn(i),
                "metadata": {"bench": run_id},
            },
        )
        if status != 201:
            raise BenchError(f"POST /v1/participants (setup): {status} {body}")
        targets.append(body["id"])
    return targets


class Makers:
    """The raw requests of each phase, built with as little work per request as possible."""

    def __init__(self, port: int, operator_key: str, targets: list[str], run_id: str) -> None:
        host = f"{HOST}:{port}"
        auth = {"Authorization": f"Bearer {operator_key}"}
        self.health = encode_request("GET", "/v1/health", host=host)
        self.me = encode_request("GET", "/v1/me", host=host, headers=auth)
        self.list = encode_request("GET", "/v1/participants?limit=10", host=host, headers=auth)
        self.host, self.auth, self.targets, self.run_id = host, auth, targets, run_id
        self.replays = [self._post(i, self.replay_key(i), "replay") for i in range(len(targets))]

    def replay_key(self, client: int) -> str:
        return f"bench-{self.run_id}-replay-{client}"

    def _post(self, client: int, key: str, value: str) -> bytes:
        body = json.dumps({"metadata": {"bench": value}}).encode()
        headers = {**self.auth, "Content-Type": "application/json", "Idempotency-Key": key}
        path = f"/v1/participants/{self.targets[client]}"
        return encode_request("POST", path, host=self.host, headers=headers, body=body)

    def baseline(self, client: int, seq: int) -> tuple[str, bytes]:
        return "health", self.health

    def get(self, client: int, seq: int) -> tuple[str, bytes]:
        return ("me", self.me) if (client + seq) % 2 == 0 else ("list", self.list)

    def post(self, client: int, seq: int) -> tuple[str, bytes]:
        key = f"bench-{self.run_id}-{client}-{seq}"
        return "post", self._post(client, key, f"{client}-{seq}")

    def replay(self, client: int, seq: int) -> tuple[str, bytes]:
        return "replay", self.replays[client]


def _prime_replays(port: int, makers: Makers, operator_key: str) -> None:
    """The first request of each replay key really runs (not counted); later ones replay."""
    for i, target in enumerate(makers.targets):
        for attempt in range(2):
            status, _ = call(
                port,
                "POST",
                f"/v1/participants/{target}",
                key=operator_key,
                body={"metadata": {"bench": "replay"}},
                idempotency_key=makers.replay_key(i),
            )
            if status != 200:
                raise BenchError(f"POST /v1/participants/{target} (replay {attempt}): {status}")


async def _phases(
    port: int, plan: Plan, makers: Makers, sampler: Callable[[], dict[str, float]] | None, log: Log
) -> dict[str, PhaseResult]:
    results = {name: PhaseResult(name) for name in PHASES}
    next_seq = dict.fromkeys(PHASES, 0)
    for round_no in range(plan.rounds):
        for name in PHASES:
            result, next_seq[name] = await run_phase(
                name,
                host=HOST,
                port=port,
                clients=plan.clients,
                maker=getattr(makers, name),
                warmup=plan.warmup,
                seconds=plan.seconds / plan.rounds if plan.seconds is not None else None,
                requests=plan.requests // plan.rounds if plan.requests is not None else None,
                first_seq=next_seq[name],
                sampler=sampler,
            )
            results[name].merge(result)
            ordered = result.all_sorted()
            log(
                f"round {round_no + 1}/{plan.rounds} {name:<8} {result.count:>7} req "
                f"{result.rps:8.1f} req/s  p50 {percentile(ordered, 50):6.2f} ms  "
                f"p99 {percentile(ordered, 99):6.2f} ms  errors {result.errors}"
            )
            for sample in result.error_samples:
                log(f"  error: {sample}")
    return results


def _r(value: float, digits: int = 2) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else round(value, digits)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def summarise(results: dict[str, PhaseResult]) -> dict[str, Any]:
    """The flat figures: per phase rps/p50/p99, ratios against the baseline, CPU per request."""
    out: dict[str, Any] = {}
    for name, result in results.items():
        ordered = result.all_sorted()
        out[f"{name}_rps"] = _r(result.rps, 1)
        out[f"{name}_p50_ms"] = _r(percentile(ordered, 50))
        out[f"{name}_p99_ms"] = _r(percentile(ordered, 99))
    for label in ("me", "list"):
        ordered = results["get"].label_sorted(label)
        out[f"get_{label}_p50_ms"] = _r(percentile(ordered, 50))
        out[f"get_{label}_p99_ms"] = _r(percentile(ordered, 99))
    base = results["baseline"]
    base_sorted = base.all_sorted()
    for name in PHASES[1:]:
        ordered = results[name].all_sorted()
        out[f"{name}_vs_baseline_rps"] = _r(_ratio(results[name].rps, base.rps), 3)
        for pct in (50, 99):
            out[f"{name}_vs_baseline_p{pct}"] = _r(
                _ratio(percentile(ordered, pct), percentile(base_sorted, pct)), 3
            )
    cpu: dict[str, dict[str, float | None]] = {}
    for name, result in results.items():
        count = result.count or 1
        row = {"client": _r(result.client_cpu_seconds * 1000 / count, 3)}
        for who, seconds in result.extra_cpu_seconds.items():
            row[who] = _r(seconds * 1000 / count, 3)
        cpu[name] = row
    out["cpu_ms_per_req"] = cpu
    return out


@dataclass(frozen=True)
class ServerConfig:
    worker_class: str
    workers: int
    threads: int
    celery_worker: bool

    @property
    def name(self) -> str:
        if self.worker_class == "sync":
            return f"gunicorn sync {self.workers} workers"
        return f"gunicorn gthread {self.workers} workers x {self.threads} threads"


def server_config_from(options: dict[str, Any]) -> ServerConfig:
    worker_class = str(options.get("worker_class") or "sync")
    if worker_class == "sync" and options.get("threads") not in (None, 1):
        raise BenchError("sync workers have one thread each: use --worker-class gthread")
    config = ServerConfig(
        worker_class=worker_class,
        workers=int(options.get("workers") or 3),
        threads=1 if worker_class == "sync" else int(options.get("threads") or 4),
        celery_worker=bool(options.get("worker")),
    )
    if config.workers < 1 or config.threads < 1:
        raise BenchError("--workers and --threads must be at least 1")
    return config


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run(options: dict[str, Any], log: Log) -> dict[str, Any]:
    plan = plan_from(options)
    config = server_config_from(options)
    url = bench_database_url(str(options.get("database") or BENCH_DATABASE))
    broker = options.get("broker_url")
    if broker is None:
        broker = os.environ.get("CELERY_BROKER_URL", "")
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the server and database go too.
    previous = signal.signal(signal.SIGTERM, _raise_exit)
    try:
        started = datetime.now(UTC)
        load_before = os.getloadavg()
        database = BenchDatabase(url)
        log(f"database: {_redacted(url)} (dropped and recreated)")
        pg_version = database.create()
        try:
            results = _run_server_and_load(
                options,
                plan,
                config,
                url,
                broker,
                keep=bool(options.get("keep_database")),
                database=database,
                log=log,
            )
        finally:
            database.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = summarise(results)
    return {
        "bench": "api",
        "clients": plan.clients,
        **{k: v for k, v in summary.items() if k != "cpu_ms_per_req"},
        "get_p99_target_ms": TARGET_GET_P99_MS,
        "get_p99_target_met": bool(
            summary["get_p99_ms"] is not None and summary["get_p99_ms"] < TARGET_GET_P99_MS
        ),
        "errors": sum(r.errors for r in results.values()),
        "errors_by_phase": {name: r.errors for name, r in results.items()},
        "error_samples": [e for r in results.values() for e in r.error_samples][:5],
        "requests": {name: r.count for name, r in results.items()},
        "seconds_per_phase": round(sum(r.seconds for r in results.values()) / len(results), 2),
        "rounds": plan.rounds,
        "warmup_s": plan.warmup,
        "cpu_ms_per_req": summary["cpu_ms_per_req"],
        "server": config.name,
        "celery_worker": config.celery_worker,
        "broker": (broker.split(":", 1)[0] if broker else "filesystem"),
        "db": "postgresql",
        "db_version": pg_version,
        "smoke": bool(options.get("smoke")),
        "nproc": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "python": platform.python_version(),
        "started_at": started.isoformat(timespec="seconds"),
    }


def _run_server_and_load(
    options: dict[str, Any],
    plan: Plan,
    config: ServerConfig,
    url: str,
    broker: str,
    *,
    keep: bool,
    database: BenchDatabase,
    log: Log,
) -> dict[str, PhaseResult]:
    data_dir = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "HUB_DATA_DIR": str(data_dir),
        "HUB_CELERY_QUEUE": "hub-bench",
        "CELERY_BROKER_URL": broker,
        "HUB_LOG_LEVEL": "WARNING",
    }
    env.pop("HUB_ACCESS_LOG", None)
    server: Server | None = None
    try:
        _run_hub(env, "migrate", "--verbosity", "0")
        keys = json.loads(_run_hub(env, "seed", "sandbox", "--json"))
        port = int(options.get("port") or 0) or free_port()
        server = start_server(
            env,
            port=port,
            worker_class=config.worker_class,
            workers=config.workers,
            threads=config.threads,
            worker=config.celery_worker,
            log=data_dir / "serve.log",
            sandbox=False,  # this benchmark calls no institution
        )
        wait_healthy(server)
        log(
            f"server: hub serve on {HOST}:{port}, {config.name}, "
            f"celery worker {'on' if config.celery_worker else 'off'}, log {server.log}"
        )
        run_id = secrets.token_hex(4)
        targets = _setup(port, keys, plan.clients, run_id)
        makers = Makers(port, keys["operator"]["key"], targets, run_id)
        _prime_replays(port, makers, keys["operator"]["key"])
        sampler = cpu_sampler(server.process.pid, database.name)
        return asyncio.run(_phases(port, plan, makers, sampler, log))
    finally:
        if server is not None:
            code = server.stop()
            if code != 0:
                log(f"`hub serve` stopped with status {code}:\n{_tail(server.log)}")
        if broker and not broker.startswith("filesystem"):
            subprocess.run(
                [sys.executable, "-m", "celery", "-A", "hub", "purge", "-f", "-Q", "hub-bench"],
                env=env,
                capture_output=True,
                check=False,
            )
        if not keep:
            try:
                database.drop()
            except Exception as exc:
                log(f"could not drop {database.name}: {exc}")
        shutil.rmtree(data_dir, ignore_errors=True)
