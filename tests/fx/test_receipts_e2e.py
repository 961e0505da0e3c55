"""End to end: trade documents uploaded, a payin through the sandbox payment institution over
real sockets, its verification, the settlement run executed by a real Celery worker, the receipt
the worker issues, the regulator fetching the proof bundle, and ``hub audit verify`` run as a
command with no database: it passes, and fails once the stored receipt is altered; the
scheduled check then raises an operator alert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone

from fx.models import Receipt
from hub.models import OperatorTask
from settlement.models_payins import Payin
from settlement.runs import last_closed_day
from tests.conftest import Tenant
from tests.factories.trade import as_csv, order_body, payment_record_body, waybill_body
from tests.settlement.test_payins import Shop, shop  # noqa: F401  (the fixture)
from tests.support.adapters import PSP_WEBHOOK_SECRET
from tests.support.worker import wait_until

HUB = str(Path(sys.executable).with_name("hub"))
ORDER = "KR-ORDER-0001"


def stamp(hours_ago: float) -> str:
    return (timezone.now() - timedelta(hours=hours_ago)).isoformat()


def upload(store: Shop, kind: str, row: dict[str, str]) -> dict[str, Any]:
    response = store.api.client.post(
        "/v1/trade/uploads",
        {"file": SimpleUploadedFile(f"{kind}.csv", as_csv(kind, [row])), "kind": kind},
        headers={"Authorization": f"Bearer {store.merchant.key}"},
    )
    assert response.status_code == 201, response.content[:400]
    body: dict[str, Any] = response.json()
    return body


def audit_verify(bundle: dict[str, Any], path: Path, vkey: str) -> subprocess.CompletedProcess[str]:
    """The command an auditor runs, on a machine without the hub's database or broker."""
    path.write_text(json.dumps(bundle))
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env["DATABASE_URL"] = "postgres://nobody@127.0.0.1:1/none"
    return subprocess.run(
        [HUB, "audit", "verify", str(path), "--key", vkey],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_documents_payin_verification_settlement_receipt_and_an_offline_proof(
    shop: Shop,  # noqa: F811
    tenants: dict[str, Tenant],
    live_server: Any,
    celery_worker: Any,
    monkeypatch: Any,
    tmp_path: Path,
):
    from hub.services.adapters import inbound as inbound_module

    monkeypatch.setattr(inbound_module, "_ask_for_apply", inbound_module._Nudge())
    shop.ctl.configure(
        webhook_url=f"{live_server.url}/v1/inbound/{shop.conn.pk}",
        webhook_secret=PSP_WEBHOOK_SECRET,
    )
    api, merchant, regulator = shop.api, shop.merchant, tenants["regulator"]

    # The merchant files the order, the payment record and the waybill as bulk files.
    buyer = {"buyer_name": "Kim Minjun", "buyer_id": "kr-buyer-77"}
    uploads = [
        upload(shop, "order", order_body(order_no=ORDER, ordered_at=stamp(3), **buyer)),
        upload(
            shop,
            "payment_record",
            payment_record_body(
                order_no=ORDER, payer_name="Kim Minjun", payer_id="kr-buyer-77", paid_at=stamp(2)
            ),
        ),
        upload(shop, "waybill", waybill_body(order_no=ORDER, shipped_at=stamp(1))),
    ]
    assert [(u["status"], u["rows_accepted"]) for u in uploads] == [("accepted", 1)] * 3

    # The buyer pays at the sandbox institution; its notification reaches the live hub and the
    # worker applies it.
    payin = shop.create(reference=ORDER).json()
    shop.ctl.post(f"/payment_intents/{payin['institution_payment_id']}/pay", {})
    wait_until(
        lambda: Payin.objects.get(pk=payin["id"]).status == "succeeded",
        timeout=60,
        what="the notification applied",
        log=celery_worker.log,
    )

    verification = api.post(
        "/v1/fx/verifications", {"payin": payin["id"], "order_no": ORDER}, key=merchant.key
    )
    assert verification.status_code == 201, verification.json()
    assert (verification.json()["outcome"], verification.json()["reasons"]) == ("verified", [])
    assert Receipt.objects.count() == 0  # not settled yet

    # The operator settles today's payins now; the worker runs the settlement and then issues
    # the receipt.
    today = last_closed_day("Asia/Seoul", timezone.now()) + timedelta(days=1)
    run = api.post(
        "/v1/settlement_runs",
        {
            "institution": shop.institution.id,
            "currency": "KRW",
            "business_date": today.isoformat(),
            "close_early": True,
        },
        key=shop.operator.key,
    )
    assert run.status_code == 202, run.json()
    wait_until(
        lambda: Receipt.objects.filter(payin_id=payin["id"]).exists(),
        timeout=60,
        what="the receipt issued",
        log=celery_worker.log,
    )
    receipt = Receipt.objects.get(payin_id=payin["id"])
    assert (receipt.outcome, receipt.amount, receipt.customs_mode, receipt.trade_type) == (
        "verified",
        150000,
        "9610",
        "B2C",
    )

    # The regulator fetches the proof and checks it offline, pinning the hub's key.
    found = api.get(f"/v1/receipts?merchant={merchant.id}", key=regulator.key).json()
    assert [r["id"] for r in found["data"]] == [receipt.pk]
    bundle = api.get(f"/v1/receipts/{receipt.pk}/proof", key=regulator.key).json()
    [key] = api.get("/v1/audit/keys", key=regulator.key).json()["data"]
    assert bundle["receipt"]["movement"]["id"] == payin["id"]
    assert bundle["receipt"]["trade"]["documents"]["order"] == ORDER

    passed = audit_verify(bundle, tmp_path / "bundle.json", key["public_key"])

    assert passed.returncode == 0, passed.stdout + passed.stderr

    # Someone with database access rewrites the receipt's amount.
    altered = json.loads(bytes(receipt.body))
    altered["movement"]["amount"] = "15000"
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE fx_receipt SET body = %s WHERE id = %s",
            [json.dumps(altered, separators=(",", ":"), sort_keys=True).encode(), receipt.pk],
        )
    tampered = api.get(f"/v1/receipts/{receipt.pk}/proof", key=regulator.key).json()

    failed = audit_verify(tampered, tmp_path / "tampered.json", key["public_key"])

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "receipt_signature" in failed.stdout
    assert "leaf_hash" in failed.stdout

    # The scheduled check finds it too, and tells the operator.
    from fx.tasks import receipts_check_task

    receipts_check_task.delay()
    wait_until(
        lambda: OperatorTask.objects.filter(kind="transparency_alert").exists(),
        timeout=60,
        what="the operator alert",
        log=celery_worker.log,
    )
    [alert] = OperatorTask.objects.filter(kind="transparency_alert")
    assert [r["id"] for r in alert.details["receipts"]] == [receipt.pk, receipt.pk]
