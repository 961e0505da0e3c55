"""``hub demo`` for real: a live hub, the sandbox institutions on free ports, a real Celery worker
and beat; the demo drives one order end to end over HTTP, and the database holds exactly what it
printed. Against nothing, or with keys the hub refuses, it stops with the error and no traceback.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from adapters.sandbox.bank import BankSandbox
from adapters.sandbox.stripe_like import StripeLikeSandbox
from hub.sandbox import sandbox_connections, sandbox_participants
from hub.transparency.bundle import verify_bundle
from hub.transparency.keys import signing_keys
from tests.support.adapters import Control
from tests.support.worker import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
# Fast enough for a test, the same path as `make run`: beat's repair task syncs each bank
# payout soon after it is sent, and the bank settles it quickly. (Not faster: the file-system
# broker takes about a message a second per poll, and a backlog of repair ticks would delay
# every other task behind it.)
FAST_ENV = {
    "HUB_ADAPTER_REPAIR_SECONDS": "2",
    "HUB_ADAPTER_SYNC_SCHEDULE": "1,2,3,5,10,30",
    "HUB_SETTLEMENT_RUNS_SECONDS": "3600",
}
# ``make run`` and tests/hub/test_serve.py use these; this test must not.
RESERVED_PORTS = {8000, 8701, 8702}


def _free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port


@dataclass
class Hub:
    url: str
    psp: StripeLikeSandbox
    bank: BankSandbox
    connections: dict[str, str]


class BeatProcess:
    """Celery beat on the test database and broker, as ``hub serve`` runs it."""

    def __init__(self, env: dict[str, str], schedule: Path, log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "hub",
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    str(schedule),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def hub(
    live_server: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    celery_worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> Iterator[Hub]:
    """What ``make run`` starts, in this process and beside it: the API (live_server), the
    sandbox institutions on free ports connected as ``hub seed sandbox`` connects them, a
    worker and beat."""
    from hub.services.adapters import inbound as inbound_module

    # The API process asks for notifications to be applied at most once per interval; a fresh
    # throttle so that an earlier test's nudge does not hold this one back.
    monkeypatch.setattr(inbound_module, "_ask_for_apply", inbound_module._Nudge())
    settings.HUB = {
        **settings.HUB,
        "ADAPTER_SYNC_SCHEDULE": [1.0, 2.0, 3.0, 5.0, 10.0, 30.0],
    }
    with (
        StripeLikeSandbox(port=_free_port()) as psp,
        BankSandbox(port=_free_port(), settle_delay_seconds=0.5) as bank,
    ):
        settings.HUB = {
            **settings.HUB,
            "SANDBOX_PORTS": {"stripe_like": psp.port, "bank": bank.port},
        }
        connections = sandbox_connections(sandbox_participants())
        # As ``hub serve`` starts it: notifications go to the seeded connection's endpoint.
        psp.webhook_url = f"{live_server.url}/v1/inbound/{connections['stripe_like']}"
        worker = celery_worker_factory(**FAST_ENV)
        # The worker's environment: the test database, its data dir and queue, the fast knobs.
        beat = BeatProcess(worker.env, tmp_path / "beat-schedule", tmp_path / "beat.log")
        try:
            yield Hub(live_server.url, psp, bank, connections)
        finally:
            beat.stop()


def _sandbox_state(sandbox: Any) -> dict[str, Any]:
    """What the sandbox institution holds, read over its control API."""
    control = Control(sandbox)
    try:
        return control.state()
    finally:
        control.close()


def _id(pattern: str, output: str) -> str:
    found = re.search(pattern, output)
    assert found, f"{pattern!r} not in the output:\n{output}"
    return found.group(1)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_demo_drives_one_order_end_to_end_and_the_database_agrees(
    hub: Hub, tmp_path: Path
) -> None:
    from fx.models import FxConversion
    from fx.models_receipts import Receipt
    from fx.models_verification import Verification
    from settlement.models import Account
    from settlement.models_payins import Payin, SettlementRun
    from settlement.models_payouts import Payout
    from trade.models import DocumentUpload, Order, PaymentRecord, Waybill

    out = io.StringIO()
    call_command(
        "demo", "--url", hub.url, "--out", str(tmp_path / "proofs"), "--timeout", "60", stdout=out
    )
    output = out.getvalue()

    # Every step, in order, and the closing line.
    positions = [output.index(f"[{n}/11]") for n in range(1, 12)]
    assert positions == sorted(positions)
    assert "Done: the order was paid, verified, settled" in output

    order_no = _id(r"order\s+(DEMO-[0-9A-F]+)\n", output)
    payin_id = _id(r"payin\s+(pay_\w+)\n", output)
    verification_id = _id(r"verification\s+(ver_\w+)\n", output)
    run_id = _id(r"settlement run\s+(srun_\w+)\n", output)
    conversion_id = _id(r"conversion\s+(conv_\w+)\n", output)
    payout_id = _id(r"payout\s+(po_\w+)\n", output)
    receipt_id = _id(r"receipt\s+(rcpt_\w+)\n", output)
    bundle_path = Path(_id(r"bundle\s+(\S+\.json)\n", output))

    # The documents: one file each, every row accepted.
    assert sorted(DocumentUpload.objects.values_list("kind", "status", "rows_accepted")) == [
        ("order", "accepted", 1),
        ("payment_record", "accepted", 1),
        ("waybill", "accepted", 1),
    ]
    order = Order.objects.get(order_no=order_no)
    assert (order.trade_type, order.customs_mode, order.buyer_country) == ("B2C", "9610", "KR")
    assert (order.currency, order.amount) == ("KRW", 150000)
    assert PaymentRecord.objects.get(order_no=order_no).amount == 150000
    assert Waybill.objects.filter(order_no=order_no).count() == 1

    # The payin: paid at the sandbox institution, verified, settled by the early-closed run.
    payin = Payin.objects.get()
    assert (payin.pk, payin.reference, payin.amount, payin.status) == (
        payin_id,
        order_no,
        150000,
        "settled",
    )
    assert [i["status"] for i in _sandbox_state(hub.psp)["payment_intents"]] == ["succeeded"]
    verification = Verification.objects.get()
    assert (verification.pk, verification.outcome, verification.reasons) == (
        verification_id,
        "verified",
        [],
    )
    run = SettlementRun.objects.get(pk=run_id)
    assert (run.status, run.payins_count, run.gross) == ("completed", 1, 150000)
    assert payin.run_id == run_id
    net = 150000 - (payin.fee or 0)

    # Converted and paid out: the accounts end where the summary says.
    conversion = FxConversion.objects.get()
    assert conversion.pk == conversion_id
    payout = Payout.objects.get()
    assert (payout.pk, payout.status, payout.currency, payout.amount) == (
        payout_id,
        "paid",
        "CNY",
        conversion.buy_amount,
    )
    [bank_payout] = _sandbox_state(hub.bank)["payouts"]
    assert bank_payout["end_to_end_id"] == payout_id
    assert bank_payout["status"] == "completed"
    krw = Account.objects.get(kind="merchant_settlement", currency="KRW")
    cny = Account.objects.get(kind="merchant_settlement", currency="CNY")
    # Credited the payin; debited the fee and the net sold (margin included).
    assert conversion.sell_amount == net
    # (debits_posted, credits_posted, debits_pending, credits_pending)
    assert krw.balance_columns == (150000, 150000, 0, 0)
    assert cny.balance_columns == (conversion.buy_amount, conversion.buy_amount, 0, 0)
    assert "KRW  before 0 / 0 / 0 KRW" in output
    assert "after  0 / 0 / 0 KRW" in output
    assert "after  0.00 / 0.00 / 0.00 CNY" in output

    # Exactly one receipt, for the payin; its proof was saved and verifies offline.
    receipt = Receipt.objects.get()
    assert (receipt.pk, receipt.payin_id, receipt.verification_id) == (
        receipt_id,
        payin_id,
        verification_id,
    )
    bundle = json.loads(bundle_path.read_text())
    assert bundle["receipt"]["id"] == receipt_id
    assert verify_bundle(bundle, trusted_keys=[key.vkey for key in signing_keys()]).ok
    assert f"hub audit verify {bundle_path} --key" in output
    assert "FAIL" not in output

    # Again, the same day: the sandbox institution's day is closed, so the second order goes
    # through another sandbox institution; everything else is the first run's story again.
    out = io.StringIO()
    call_command("demo", "--url", hub.url, "--out", str(tmp_path / "proofs"), stdout=out)
    again = out.getvalue()
    assert "was already closed early by an earlier demo" in again
    second = Payin.objects.get(pk=_id(r"payin\s+(pay_\w+)\n", again))
    assert second.reference == _id(r"order\s+(DEMO-[0-9A-F]+)\n", again) != order_no
    assert second.status == "settled"
    assert second.connection.participant_id != payin.connection.participant_id
    assert second.connection.config["base_url"] == hub.psp.base_url
    assert sorted(Receipt.objects.values_list("payin_id", flat=True)) == sorted(
        [payin_id, second.pk]
    )
    assert Payout.objects.filter(status="paid").count() == 2
    assert "KRW  before 0 / 0 / 0 KRW" in again


def test_against_a_url_where_nothing_listens_the_demo_says_so_and_exits_1(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps({role: {"key": "hk_test_x"} for role in ("operator", "merchant", "regulator")})
    )
    url = f"http://127.0.0.1:{_free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "demo", "--url", url, "--keys", str(keys)],
        cwd=ROOT,
        env={**os.environ, "HUB_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"The demo stopped: The hub at {url} is not reachable" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "[1/11] Keys" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_keys_the_hub_refuses_stop_the_demo_with_the_api_error(
    live_server: Any, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps(
            {
                role: {"participant": "par_x", "key": "hk_test_" + "0" * 32}
                for role in ("operator", "merchant", "regulator")
            }
        )
    )
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("demo", "--url", live_server.url, "--keys", str(keys), stdout=out)
    message = str(raised.value)
    assert "answered 401" in message
    assert '"type": "authentication_error"' in message
    assert '"request_id": "req_' in message


def test_a_keys_file_without_every_role_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"operator": {"key": "hk_test_x"}}))
    with pytest.raises(CommandError, match="has no key for the merchant role"):
        call_command("demo", "--keys", str(keys), stdout=io.StringIO())
