"""The receipts part of ``hub bench audit``, run as a subprocess on the benchmark database
(``python -m bench.audit_probe receipts N [P]`` with DATABASE_URL set). Prints one JSON line.

N payins of one merchant, settled by a completed run and verified, are made in bulk (rows only:
the ledger is not what is measured); then P processes (2: one per core) run
``receipts_issue_all`` as workers do: each receipt canonicalised (RFC 8785) and signed
(Ed25519), the batch's leaves appended to the log and the receipts stored, a batch per
transaction. Baseline in the same run, from as many processes: building, canonicalising and
signing 5,000 of the same receipts each, with nothing stored (the cryptography's share).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import django


def setup(count: int) -> None:
    from django.utils import timezone

    from fx.models import Verification
    from hub.models import AdapterConnection, Participant, Role
    from hub.sandbox import make_brn, make_uscc
    from settlement.models import Account
    from settlement.models_payins import Payin, SettlementRun

    institution = Participant.objects.create(
        role=Role.PAYMENT_INSTITUTION,
        legal_name="Bench Pay",
        country="KR",
        registration_id=make_brn("220811234"),
    )
    merchant = Participant.objects.create(
        role=Role.MERCHANT,
        legal_name="Bench Trading Co., Ltd.",
        country="CN",
        registration_id=make_uscc("371000", "MA8BENCH"),
    )
    connection = AdapterConnection.objects.create(
        participant=institution,
        adapter="stripe_like",
        livemode=False,
        sandbox=True,
        config={"base_url": "http://127.0.0.1:9/"},
        credentials_encrypted="",
    )
    account = Account.objects.create(
        livemode=False, owner=merchant, currency="KRW", kind=Account.Kind.MERCHANT_SETTLEMENT
    )
    now = timezone.now()
    run = SettlementRun.objects.create(
        livemode=False,
        institution=institution,
        currency="KRW",
        business_date=timezone.localdate() - timedelta(days=1),
        time_zone="Asia/Seoul",
        cutoff_at=now,
        status=SettlementRun.Status.COMPLETED,
    )
    for start in range(0, count, 10_000):
        size = min(10_000, count - start)
        payins = Payin.objects.bulk_create(
            Payin(
                livemode=False,
                merchant=merchant,
                account=account,
                connection=connection,
                amount=10_000 + n,
                currency="KRW",
                reference=f"bench-{start + n}",
                status=Payin.Status.SETTLED,
                settled_amount=10_000 + n,
                fee=0,
                run=run,
                succeeded_at=now,
            )
            for n in range(size)
        )
        Verification.objects.bulk_create(
            Verification(
                livemode=False,
                merchant=merchant,
                subject=Verification.Subject.PAYIN,
                payin=payin,
                order_no=payin.reference,
                currency="KRW",
                amount=payin.amount,
                outcome="verified",
            )
            for payin in payins
        )


def receipts(count: int, processes: int) -> dict[str, Any]:
    from django.db import connection

    from fx.models import Receipt
    from hub.transparency.keys import signing_key_active
    from hub.transparency.log import log_size

    setup(count)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    signing_key_active()  # made once, before the processes start
    connection.close()
    signed = _children("sign", processes)
    sign_s = max(r["end"] for r in signed) - min(r["start"] for r in signed)
    signed_count = sum(r["signed"] for r in signed)

    # The issuing workers, as Celery runs them: separate processes sharing the work by
    # SKIP LOCKED claims, appending in turn under the log head's lock.
    reports = _children("issue", processes)
    issue_s = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    issued = sum(r["issued"] for r in reports)
    assert issued == count == Receipt.objects.count() == log_size(livemode=False)
    return {
        "receipts": count,
        "receipts_processes": processes,
        "receipts_seconds": round(issue_s, 3),
        "receipts_per_s": round(count / issue_s, 1),
        "sign_only_per_s": round(signed_count / sign_s, 1),
    }


def _children(command: str, processes: int) -> list[dict[str, Any]]:
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.audit_probe", command], stdout=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    reports = [json.loads(child.communicate()[0].strip().splitlines()[-1]) for child in children]
    if any(child.returncode for child in children):
        raise SystemExit(f"a {command} process failed")
    return reports


def sign() -> dict[str, Any]:
    """One baseline process: 5,000 receipts built, canonicalised and signed, none stored."""
    from django.utils import timezone

    from fx.models import Verification
    from fx.receipts import receipt_document, receipt_drafts
    from hub.ids import new_ids
    from hub.transparency.checkpoint import format_time
    from hub.transparency.jcs import canonicalize_plain
    from hub.transparency.keys import signing_key_active

    key = signing_key_active()
    sample = list(Verification.objects.order_by("pk").values_list("pk", flat=True)[:5000])
    drafts, parties = receipt_drafts(sample)
    ids = new_ids("rcpt", len(drafts))
    issued_at = format_time(timezone.now())
    start = time.time()
    for draft, receipt_id in zip(drafts, ids, strict=True):
        document = receipt_document(
            draft, parties=parties, receipt_id=receipt_id, issued_at=issued_at, livemode=False
        )
        key.sign(canonicalize_plain(document))
    return {"signed": len(drafts), "start": start, "end": time.time()}


def issue() -> dict[str, Any]:
    """One issuing process: everything it can claim, timed by the wall clock."""
    from fx.receipts import receipts_issue_all
    from hub.transparency.keys import signing_key_active

    signing_key_active()  # the key decrypted before the clock starts, as a warm worker has it
    start = time.time()
    issued = receipts_issue_all(livemode=False)
    return {"issued": issued, "start": start, "end": time.time()}


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    command = argv[0]
    if command == "receipts":
        print(json.dumps(receipts(int(argv[1]), int(argv[2]) if len(argv) > 2 else 2)))
    elif command == "issue":
        print(json.dumps(issue()))
    elif command == "sign":
        print(json.dumps(sign()))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
