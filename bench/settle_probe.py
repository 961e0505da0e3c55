"""The in-process half of ``hub bench settle``, run as a subprocess on the benchmark database
(``python -m bench.settle_probe ...`` with DATABASE_URL set). Prints one JSON line.

- ``setup N M``: a Korean payment institution with a connection, M merchants with KRW accounts,
  a default fee rule (1.5% + 100 won), and N payins paid before yesterday's cutoff with their
  pending credits; and, for the baseline, N more pending credits that belong to no payin.
- ``run``: the institution's settlement run for yesterday, started and executed here, timed;
  its totals are checked against the payins.
- ``baseline C``: the same ledger work on the other N pending credits (each posted less a
  refund, then a fee transfer), C per transaction with no savepoint per transfer, as the run
  makes them: what the run costs without its own bookkeeping.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from datetime import timedelta
from typing import Any

import django

REFERENCE = "bench"


def _institution() -> Any:
    from hub.models import Participant

    return Participant.objects.get(role="payment_institution", legal_name="Bench Pay")


def setup(payins: int, merchants: int) -> dict[str, Any]:
    from django.utils import timezone

    from hub.models import AdapterConnection, Participant, Role
    from hub.sandbox import make_brn, make_uscc
    from settlement.ledger import TransferSpec, transfers_create_batch
    from settlement.models import Account
    from settlement.models_payins import FeeRule, Payin
    from settlement.payouts import hub_account
    from settlement.runs import cutoff_of, last_closed_day

    Participant.objects.create(
        role=Role.OPERATOR,
        legal_name="Bench Hub",
        country="KR",
        registration_id=make_brn("131877777"),
    )
    institution = Participant.objects.create(
        role=Role.PAYMENT_INSTITUTION,
        legal_name="Bench Pay",
        country="KR",
        registration_id=make_brn("220877777"),
    )
    connection = AdapterConnection.objects.create(
        participant=institution,
        adapter="stripe_like",
        livemode=False,
        sandbox=True,
        config={"base_url": "http://127.0.0.1:9/"},
    )
    owners = [
        Participant.objects.create(
            role=Role.MERCHANT,
            legal_name=f"Bench Merchant {n}",
            country="CN",
            registration_id=make_uscc("371000", f"MA8B{n:04d}"),
        )
        for n in range(merchants)
    ]
    accounts = [
        Account.objects.create(
            livemode=False,
            owner=owner,
            currency="KRW",
            kind=Account.Kind.MERCHANT_SETTLEMENT,
            debits_must_not_exceed_credits=True,
            reference=REFERENCE,
        )
        for owner in owners
    ]
    FeeRule.objects.create(livemode=False, currency="KRW", percent_bps=150, fixed=100)
    day = last_closed_day("Asia/Seoul", timezone.now())
    paid_at = cutoff_of(day, "Asia/Seoul") - timedelta(hours=1)
    rng = random.Random(7)
    rows = [
        Payin(
            livemode=False,
            merchant=account.owner,
            account=account,
            connection=connection,
            amount=rng.randrange(10_000, 2_000_000),
            currency="KRW",
            reference=f"order-{n}",
            status=Payin.Status.SUCCEEDED,
            succeeded_at=paid_at,
            # Every tenth payin was partly refunded before it settled.
            refunded=1_000 if n % 10 == 0 else 0,
        )
        for n, account in ((n, accounts[n % merchants]) for n in range(payins))
    ]
    made = Payin.objects.bulk_create(rows, batch_size=5000)
    receivable = hub_account(
        kind=Account.Kind.INSTITUTION_RECEIVABLE, currency="KRW", livemode=False, owner=institution
    )
    specs = [
        TransferSpec(
            id=payin.credit_id,
            debit_account_id=receivable.pk,
            credit_account_id=payin.account_id,
            amount=payin.amount,
            currency="KRW",
            pending=True,
            reference=payin.pk,
            code="payin",
        )
        for payin in made
    ] + [
        TransferSpec(
            id=f"baseline-{n}",
            debit_account_id=receivable.pk,
            credit_account_id=payin.account_id,
            amount=payin.amount,
            currency="KRW",
            pending=True,
            reference=REFERENCE,
        )
        for n, payin in enumerate(made)
    ]
    for start in range(0, len(specs), 8000):
        transfers_create_batch(livemode=False, specs=specs[start : start + 8000], atomic=True)
    return {"payins": payins, "merchants": merchants, "business_date": day.isoformat()}


def run() -> dict[str, Any]:
    from django.db.models import Sum
    from django.utils import timezone

    from settlement.models_payins import Payin
    from settlement.runs import last_closed_day, settlement_run_execute, settlement_run_start

    day = last_closed_day("Asia/Seoul", timezone.now())
    began = time.perf_counter()
    run, _ = settlement_run_start(
        institution_id=_institution().pk, currency="KRW", business_date=day, livemode=False
    )
    outcome = settlement_run_execute(run_id=run.pk)
    seconds = time.perf_counter() - began
    run.refresh_from_db()
    totals = Payin.objects.aggregate(gross=Sum("amount"), refunded=Sum("refunded"))
    checked = (
        outcome == "completed"
        and run.payins_count == Payin.objects.count()
        and run.gross == totals["gross"]
        and run.refunds_netted == totals["refunded"]
        and run.net == totals["gross"] - totals["refunded"]
        and not Payin.objects.exclude(status="settled").exists()
    )
    if not checked:
        raise SystemExit(f"the run's totals disagree with its payins: {run.pk}")
    return {
        "run_seconds": round(seconds, 3),
        "payins_per_s": round(run.payins_count / seconds, 1),
        "fees": run.fees,
        "net": run.net,
        "totals_checked": True,
    }


def baseline(chunk: int) -> dict[str, Any]:
    from django.db import transaction

    from settlement.ledger import TransferSpec, savepoints_off, transfer_create, transfer_post
    from settlement.models import Account, Transfer
    from settlement.runs import fee_of, fee_rule_for

    pending = list(
        Transfer.objects.filter(type="pending", reference=REFERENCE)
        .order_by("seq")
        .values_list("id", "credit_account_id", "amount")
    )
    fees = Account.objects.get(kind=Account.Kind.FEES, currency="KRW")
    owner_of = dict(Account.objects.filter(reference=REFERENCE).values_list("pk", "owner_id"))
    rules: dict[str, Any] = {}
    began = time.perf_counter()
    for start in range(0, len(pending), chunk):
        with transaction.atomic(durable=True), savepoints_off():
            for n, (transfer_id, account_id, amount) in enumerate(
                pending[start : start + chunk], start
            ):
                settled = amount - (1_000 if n % 10 == 0 else 0)
                merchant = owner_of[account_id]
                if merchant not in rules:
                    rules[merchant] = fee_rule_for(
                        merchant_id=merchant, currency="KRW", livemode=False
                    )
                fee = fee_of(settled, rules[merchant])
                transfer_post(livemode=False, pending_id=transfer_id, amount=settled)
                transfer_create(
                    livemode=False,
                    spec=TransferSpec(
                        debit_account_id=account_id,
                        credit_account_id=fees.pk,
                        amount=fee,
                        currency="KRW",
                        code="fee",
                    ),
                )
    seconds = time.perf_counter() - began
    return {
        "baseline_seconds": round(seconds, 3),
        "baseline_per_s": round(len(pending) / seconds, 1),
    }


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    command, *args = argv
    if command == "setup":
        result = setup(int(args[0]), int(args[1]))
    elif command == "run":
        result = run()
    elif command == "baseline":
        result = baseline(int(args[0]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
