"""Order/payment/waybill triples verified per second: the rules alone on a frame in memory, and
the whole batch pass of ``verification_batch_create`` (the documents read from the database,
the rules, the verifications inserted) on a merchant's orders.

``rules_throughput`` needs no database. ``batch_throughput`` runs where Django is set up on the
benchmark's database (``python -m bench.audit_verify batch N`` with DATABASE_URL set prints its
JSON line): it files N orders, each with its payment record and waybill (a tenth of the 1210
orders with their customs declaration), straight into the tables, and verifies them all in one
pass. The mix is realistic for a clean file: most rows verify; a few go to review or are rejected
(a payer other than the buyer, a missing declaration, an amount outside the tolerance).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

TARGET_TRIPLES_PER_S = 20_000
DAY = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
Log = Callable[[str], None]


def _mix(n: int, seed: int) -> dict[str, Any]:
    """Column values shared by the in-memory frame and the database rows."""
    rng = np.random.default_rng(seed)
    goods = rng.integers(10_000, 900_000, n)
    shipping = np.full(n, 3_000)
    amount = goods + shipping
    stray = rng.random(n)
    paid = np.where(stray < 0.01, amount + amount // 50, np.where(stray < 0.03, goods, amount))
    modes = np.where(rng.random(n) < 0.8, "9610", "1210")
    minutes = rng.integers(0, 60 * 24 * 20, n)
    return {
        "index": np.arange(n),
        "goods": goods,
        "shipping": shipping,
        "amount": amount,
        "paid": paid,
        "modes": modes,
        "other_payer": rng.random(n) < 0.02,
        "declared": (modes == "1210") & (rng.random(n) < 0.9),
        "ordered_at": pd.to_datetime(DAY) + pd.to_timedelta(minutes, unit="min"),
    }


def synthetic_frame(n: int, *, seed: int = 0) -> pd.DataFrame:
    """A frame of ``n`` rows as ``fx.verification.documents_frame`` makes them."""
    mix = _mix(n, seed)
    i = [str(x) for x in mix["index"]]
    order_nos = [f"ORD-{x}" for x in i]
    ordered = mix["ordered_at"]
    declared = mix["declared"]
    buyers = [f"kr-{x}" for x in i]
    return pd.DataFrame(
        {
            "order_no": order_nos,
            "currency": "KRW",
            "amount": mix["paid"],
            "order_id": [f"ord_{x}" for x in i],
            "order_order_no": order_nos,
            "trade_type": "B2C",
            "customs_mode": mix["modes"],
            "buyer_name": [f"Buyer {x}" for x in i],
            "buyer_id": buyers,
            "buyer_country": "KR",
            "order_currency": "KRW",
            "order_amount": mix["amount"],
            "goods_amount": mix["goods"],
            "shipping_amount": mix["shipping"],
            "tax_amount": 0,
            "ordered_at": ordered,
            "payment_id": [f"pmr_{x}" for x in i],
            "payment_order_no": order_nos,
            "payer_name": [f"Buyer {x}" for x in i],
            "payer_id": np.where(mix["other_payer"], "someone", buyers),
            "payer_country": "KR",
            "payment_currency": "KRW",
            "payment_amount": mix["paid"],
            "paid_at": ordered + pd.Timedelta(minutes=5),
            "waybill_id": [f"wb_{x}" for x in i],
            "waybill_no": [f"WB{x}" for x in i],
            "waybill_order_no": order_nos,
            "shipped_at": ordered + pd.Timedelta(days=1),
            "customs_id": np.where(declared, [f"cus_{x}" for x in i], ""),
            "customs_order_no": np.where(declared, order_nos, ""),
            "customs_waybill_no": np.where(declared, [f"WB{x}" for x in i], ""),
            "declared_mode": np.where(declared, "1210", ""),
            "customs_currency": np.where(declared, "KRW", ""),
            "customs_amount": np.where(declared, mix["goods"], 0),
            "declared_at": ordered + pd.Timedelta(hours=12),
            "payer_ytd": 0,
            "document_reused": False,
            "buyer_denied": False,
            "payer_denied": False,
        }
    )


def rules_throughput(*, rows: int = 100_000, seed: int = 0, repeat: int = 3) -> dict[str, Any]:
    """The rules alone (``fx.verification_rules.verify``) on ``rows`` rows: the best of
    ``repeat`` runs."""
    from fx.verification_rules import Rules, verify

    frame = synthetic_frame(rows, seed=seed)
    rules = Rules(transaction_caps={"KRW": 1_000_000}, annual_quotas={"KRW": 5_200_000})
    now = datetime.now(UTC)
    best = float("inf")
    outcomes: dict[str, int] = {}
    for _ in range(repeat):
        started = time.perf_counter()
        result = verify(frame, rules=rules, now=now)
        best = min(best, time.perf_counter() - started)
        outcomes = {str(k): int(v) for k, v in result["outcome"].value_counts().items()}
    return {
        "rules_rows": rows,
        "rules_seconds": round(best, 4),
        "rules_triples_per_s": round(rows / best),
        "rules_outcomes": outcomes,
    }


# --- the whole pass, on a database ---------------------------------------------------------------


def _insert(model: Any, rows: list[dict[str, Any]]) -> None:
    """Rows into ``model``'s table at once: a COPY on PostgreSQL, a bulk insert elsewhere."""
    from django.db import connection

    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create([model(**row) for row in rows], batch_size=2000)
        return
    fields = [f for f in model._meta.concrete_fields if f.attname in rows[0]]
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    jsons = {f.attname for f in fields if f.get_internal_type() == "JSONField"}
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(
                [
                    json.dumps(row[f.attname]) if f.attname in jsons else row[f.attname]
                    for f in fields
                ]
            )


def _registration(n: int) -> str:
    from hub.sandbox import make_uscc

    return make_uscc("371000", f"MA9W{n % 10_000:04d}")


def file_orders(*, orders: int, seed: int = 0, livemode: bool = False) -> Any:
    """A new merchant with ``orders`` orders, each with its payment record and waybill (and the
    declarations of most 1210 orders), straight into the tables. Returns the merchant."""
    from django.db import transaction

    from hub.ids import new_ids
    from hub.models import Participant, Role
    from trade.models import CustomsDeclaration, Order, PaymentRecord, Waybill

    mix = _mix(orders, seed)
    # A registration of its own, also where an earlier run left its merchant in the database.
    taken = set(Participant.objects.filter(country="CN").values_list("registration_id", flat=True))
    run = next(n for n in range(seed, seed + 10_000) if _registration(n) not in taken)
    merchant = Participant.objects.create(
        role=Role.MERCHANT,
        legal_name=f"Bench Verification Merchant {seed}",
        country="CN",
        registration_id=_registration(run),
    )
    now = datetime.now(UTC)
    common = {"livemode": livemode, "merchant_id": merchant.pk, "metadata": {}, "created_at": now}
    order_ids, payment_ids = new_ids("ord", orders), new_ids("pmr", orders)
    waybill_ids, customs_ids = new_ids("wb", orders), new_ids("cus", orders)
    ordered = [t.to_pydatetime() for t in mix["ordered_at"]]
    order_rows, payment_rows, waybill_rows, customs_rows = [], [], [], []
    for n in range(orders):
        order_no = f"ORD-{seed}-{n:07d}"
        # Payers of their own: a run's year to date does not count an earlier run's payments.
        buyer = f"kr-{run}-{n}"
        at = ordered[n]
        order_rows.append(
            {
                **common,
                "id": order_ids[n],
                "order_no": order_no,
                "trade_type": "B2C",
                "customs_mode": str(mix["modes"][n]),
                "buyer_name": f"Buyer {n}",
                "buyer_id": buyer,
                "buyer_country": "KR",
                "currency": "KRW",
                "amount": int(mix["amount"][n]),
                "goods_amount": int(mix["goods"][n]),
                "shipping_amount": int(mix["shipping"][n]),
                "tax_amount": 0,
                "ordered_at": at,
            }
        )
        payment_rows.append(
            {
                **common,
                "id": payment_ids[n],
                "payment_no": f"PAY-{seed}-{n:07d}",
                "order_id": order_ids[n],
                "order_no": order_no,
                "payer_name": f"Buyer {n}",
                "payer_id": f"someone-{run}" if mix["other_payer"][n] else buyer,
                "payer_country": "KR",
                "institution_name": "Toss Payments",
                "currency": "KRW",
                "amount": int(mix["paid"][n]),
                "paid_at": at + timedelta(minutes=5),
            }
        )
        waybill_rows.append(
            {
                **common,
                "id": waybill_ids[n],
                "waybill_no": f"WB-{seed}-{n:07d}",
                "order_id": order_ids[n],
                "order_no": order_no,
                "carrier": "CJ Logistics",
                "consignee_name": f"Buyer {n}",
                "destination_country": "KR",
                "shipped_at": at + timedelta(days=1),
            }
        )
        if mix["declared"][n]:
            customs_rows.append(
                {
                    **common,
                    "id": customs_ids[n],
                    "declaration_no": f"CUS-{seed}-{n:07d}",
                    "order_id": order_ids[n],
                    "order_no": order_no,
                    "waybill_no": f"WB-{seed}-{n:07d}",
                    "customs_mode": "1210",
                    "currency": "KRW",
                    "amount": int(mix["goods"][n]),
                    "declared_at": at + timedelta(hours=12),
                }
            )
    with transaction.atomic():
        _insert(Order, order_rows)
        _insert(PaymentRecord, payment_rows)
        _insert(Waybill, waybill_rows)
        _insert(CustomsDeclaration, customs_rows)
    return merchant


def batch_throughput(*, orders: int = 100_000, seed: int = 0, log: Log = print) -> dict[str, Any]:
    """``verification_batch_create`` on a new merchant's ``orders`` orders (every one not yet
    verified), end to end; then the same pass phase by phase (read with the other inputs, the
    rules, the insert, the foreign keys' checks that the commit makes), rolled back."""
    from django.db import connection, transaction
    from django.utils import timezone

    from fx.models_verification import VerificationBatch
    from fx.verification import (
        _flags,
        documents_frame,
        rules_in_force,
        verification_batch_create,
        verifications_insert,
    )
    from fx.verification_rules import verify
    from hub.principal import Principal
    from hub.services.api_keys import issue_key_unaudited

    log(f"filing {orders} orders with their payment records and waybills")
    started = time.perf_counter()
    merchant = file_orders(orders=orders, seed=seed)
    filed_s = time.perf_counter() - started
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    key, _ = issue_key_unaudited(participant=merchant, livemode=False, name="bench")
    actor = Principal(
        participant=merchant, api_key=key, livemode=False, scopes=frozenset(key.scopes)
    )

    log("the batch pass, end to end")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    batch = verification_batch_create(actor=actor, upload_id=None)
    batch_s = time.perf_counter() - started

    log("the same pass, phase by phase (rolled back)")
    from trade.models import Order

    rules = rules_in_force()
    phases: dict[str, float] = {}
    with transaction.atomic():
        savepoint = transaction.savepoint()
        t0 = time.perf_counter()
        selected = Order.objects.filter(merchant=merchant, livemode=False)
        frame = documents_frame(selected)
        t1 = time.perf_counter()
        has_payment = frame["payment_id"].notna()
        frame["currency"] = frame["payment_currency"].where(has_payment, frame["order_currency"])
        frame["amount"] = frame["payment_amount"].where(has_payment, frame["order_amount"])
        frame = _flags(frame, orders=selected, livemode=False, rules=rules)
        t2 = time.perf_counter()
        results = verify(frame, rules=rules, now=timezone.now())
        t3 = time.perf_counter()
        scratch = VerificationBatch.objects.create(livemode=False, merchant=merchant)
        verifications_insert(
            batch=scratch, merchant_id=merchant.pk, frame=frame, results=results, now=timezone.now()
        )
        t4 = time.perf_counter()
        # What the commit would check: the deferred foreign keys of every row inserted.
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        t5 = time.perf_counter()
        transaction.savepoint_rollback(savepoint)
        phases = {
            "read_s": t1 - t0,
            "inputs_s": t2 - t1,
            "rules_s": t3 - t2,
            "insert_s": t4 - t3,
            "checks_s": t5 - t4,
        }
    return {
        "batch_orders": batch.orders_count,
        "batch_seconds": round(batch_s, 3),
        "batch_triples_per_s": round(batch.orders_count / batch_s),
        "batch_outcomes": {
            "verified": batch.verified_count,
            "review": batch.review_count,
            "rejected": batch.rejected_count,
        },
        **{f"batch_{name}": round(value, 3) for name, value in phases.items()},
        # What the phases (run again, rolled back) leave of the whole: the commit's flush, the
        # selection of orders not yet verified, the batch row and its event.
        "batch_rest_s": round(batch_s - sum(phases.values()), 3),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "filing_seconds": round(filed_s, 2),
        "target_triples_per_s": TARGET_TRIPLES_PER_S,
        "target_met": batch.orders_count / batch_s >= TARGET_TRIPLES_PER_S,
        "db": connection.vendor,
        "nproc": os.cpu_count(),
    }


def main(argv: list[str]) -> dict[str, Any]:
    command, count = argv[0], int(argv[1]) if len(argv) > 1 else 100_000
    if command == "rules":
        return rules_throughput(rows=count)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    import django

    django.setup()
    return batch_throughput(orders=count, log=lambda line: print(line, file=sys.stderr))


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
