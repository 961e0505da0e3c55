"""The in-process half of ``hub bench ledger``, run as a subprocess on the benchmark database
(``python -m bench.ledger_probe ...`` with DATABASE_URL set). Prints one JSON line.

- ``setup A``: a hub equity account and A merchant settlement accounts in CNY, each funded.
- ``batch B S``: B batches of S transfers between random accounts (``transfers_create_batch``,
  atomic, one durable commit each); then the same rows with a raw ``COPY``, in text and in
  binary (the ledger's own format), into a scratch table with the same columns and no index,
  trigger or constraint (the floor of any bulk insert).
- ``single T N``: N transfers between random pairs of accounts through ``transfer_create``, from
  T threads at once (each its own connection, each transfer its own commit).
- ``hot T N``: the same, every transfer crediting one account, opened ``hot``.
- ``rest-setup P``: an operator's API key and P random pairs of accounts, for the REST phase.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django

FUNDING = 10**12  # minor units per account: no bench transfer ever runs out


def _accounts() -> tuple[str, list[str]]:
    from settlement.models import Account

    equity = Account.objects.get(kind="equity", reference="bench")
    merchants = list(
        Account.objects.filter(kind="merchant_settlement", reference="bench")
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return equity.pk, merchants


def setup(count: int) -> dict[str, Any]:
    from hub.models import Participant, Role
    from hub.sandbox import make_brn, make_uscc
    from settlement.ledger import TransferSpec, transfers_create_batch
    from settlement.models import Account

    operator = Participant.objects.create(
        role=Role.OPERATOR,
        legal_name="Bench Hub",
        country="KR",
        registration_id=make_brn("131899999"),
    )
    merchant = Participant.objects.create(
        role=Role.MERCHANT,
        legal_name="Bench Merchant",
        country="CN",
        registration_id=make_uscc("371000", "MA8BENCH"),
    )
    equity = Account.objects.create(
        livemode=False, owner=operator, currency="CNY", kind="equity", reference="bench"
    )
    Account.objects.bulk_create(
        Account(
            livemode=False,
            owner=merchant,
            currency="CNY",
            kind="merchant_settlement",
            debits_must_not_exceed_credits=True,
            # One hot account, for the hot account's phase (``_threads``).
            hot=n == 0,
            reference="bench",
        )
        for n in range(count)
    )
    _, merchants = _accounts()
    for start in range(0, len(merchants), 8000):
        transfers_create_batch(
            livemode=False,
            atomic=True,
            specs=[
                TransferSpec(
                    debit_account_id=equity.pk,
                    credit_account_id=m,
                    amount=FUNDING,
                    currency="CNY",
                )
                for m in merchants[start : start + 8000]
            ],
        )
    return {"accounts": len(merchants)}


def _pairs(merchants: list[str], count: int, rng: random.Random) -> list[tuple[str, str]]:
    pairs = []
    for _ in range(count):
        debit, credit = rng.sample(merchants, 2)
        pairs.append((debit, credit))
    return pairs


def batch(batches: int, size: int) -> dict[str, Any]:
    from django.db import connection
    from psycopg.types.json import Jsonb

    from settlement.ledger import _COLUMNS, _COPY_TYPES, TransferSpec, transfers_create_batch
    from settlement.models import Transfer

    _, merchants = _accounts()
    rng = random.Random(7)
    plans = [
        [
            TransferSpec(
                debit_account_id=d,
                credit_account_id=c,
                amount=rng.randint(1, 100_000),
                currency="CNY",
            )
            for d, c in _pairs(merchants, size, rng)
        ]
        for _ in range(batches)
    ]
    started = time.perf_counter()
    for specs in plans:
        results = transfers_create_batch(livemode=False, atomic=True, specs=specs)
        assert all(r.status == "created" for r in results)
    batch_seconds = time.perf_counter() - started

    # The floor: the same rows, COPY into a bare table, one durable commit per batch; in text
    # (COPY's default) and in binary (the format the ledger itself uses).
    rows = list(Transfer.objects.order_by("-seq").values_list(*_COLUMNS)[: batches * size])
    columns = ", ".join(_COLUMNS)

    def copy_all(binary: bool) -> float:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_copy_scratch")
            cursor.execute(
                "CREATE TABLE bench_copy_scratch AS SELECT * FROM settlement_transfer WITH NO DATA"
            )
        began = time.perf_counter()
        for n in range(batches):
            chunk = rows[n * size : (n + 1) * size]
            with connection.cursor() as cursor:
                raw: Any = cursor.cursor
                options = " (FORMAT BINARY)" if binary else ""
                with raw.copy(f"COPY bench_copy_scratch ({columns}) FROM STDIN{options}") as copy:
                    if binary:
                        copy.set_types(_COPY_TYPES)
                    for row in chunk:
                        copy.write_row(
                            tuple(
                                (Jsonb(v) if binary else json.dumps(v))
                                if isinstance(v, dict)
                                else v
                                for v in row
                            )
                        )
        spent = time.perf_counter() - began
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE bench_copy_scratch")
        return spent

    copy_seconds = copy_all(binary=False)
    binary_seconds = copy_all(binary=True)
    total = batches * size
    return {
        "batches": batches,
        "batch_size": size,
        "batch_accounts": len(merchants),
        "batch_seconds": round(batch_seconds, 3),
        "batch_transfers_per_s": round(total / batch_seconds, 1),
        "copy_seconds": round(copy_seconds, 3),
        "copy_rows_per_s": round(total / copy_seconds, 1),
        "batch_vs_copy": round(copy_seconds / batch_seconds, 3),
        "copy_binary_rows_per_s": round(total / binary_seconds, 1),
        "batch_vs_copy_binary": round(binary_seconds / batch_seconds, 3),
    }


def _threads(threads: int, count: int, hot: bool) -> dict[str, Any]:
    from django.db import connection

    from settlement.ledger import TransferSpec, transfer_create
    from settlement.models import Account

    _, merchants = _accounts()
    # The hot account, opened ``hot`` (see ``setup``); the single phase's pairs leave it out too.
    target = Account.objects.get(hot=True, reference="bench").pk
    rng = random.Random(11 if hot else 13)
    work = []
    for debit, credit in _pairs([m for m in merchants if m != target], count, rng):
        work.append((debit, target if hot else credit, rng.randint(1, 100_000)))
    chunks = [work[n::threads] for n in range(threads)]
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def run(chunk: list[tuple[str, str, int]]) -> None:
        mine = []
        try:
            transfer_create(  # a first call opens the connection outside the clock
                livemode=False,
                spec=TransferSpec(
                    debit_account_id=chunk[0][0],
                    credit_account_id=chunk[0][1],
                    amount=1,
                    currency="CNY",
                ),
            )
            barrier.wait()
            for debit, credit, amount in chunk:
                began = time.perf_counter()
                transfer_create(
                    livemode=False,
                    spec=TransferSpec(
                        debit_account_id=debit,
                        credit_account_id=credit,
                        amount=amount,
                        currency="CNY",
                    ),
                )
                mine.append(time.perf_counter() - began)
        finally:
            connection.close()
        with lock:
            latencies.extend(mine)

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(run, chunk) for chunk in chunks]
        barrier.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
        seconds = time.perf_counter() - started
    latencies.sort()
    prefix = "hot_account" if hot else "single"
    return {
        f"{prefix}_threads": threads,
        f"{prefix}_transfers": count,
        f"{prefix}_transfers_per_s": round(count / seconds, 1),
        f"{prefix}_p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        f"{prefix}_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
    }


def rest_setup(pairs: int) -> dict[str, Any]:
    """An operator's test key (the only role that makes transfers through the API) and random
    pairs of funded accounts for the load generator."""
    from hub.models import Participant, Role
    from hub.services.api_keys import issue_key_unaudited

    operator = Participant.objects.get(role=Role.OPERATOR, legal_name="Bench Hub")
    _, secret = issue_key_unaudited(participant=operator, livemode=False, name="bench")
    _, merchants = _accounts()
    chosen = _pairs(merchants, pairs, random.Random(17))
    return {"key": secret, "pairs": [list(pair) for pair in chosen]}


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    mode = argv[0]
    if mode == "setup":
        result = setup(int(argv[1]))
    elif mode == "batch":
        result = batch(int(argv[1]), int(argv[2]))
    elif mode == "rest-setup":
        result = rest_setup(int(argv[1]))
    elif mode in ("single", "hot"):
        result = _threads(int(argv[1]), int(argv[2]), hot=mode == "hot")
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
