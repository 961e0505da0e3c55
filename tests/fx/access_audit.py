"""Rows of the access matrix (tests/hub/test_permissions.py) for the regulator's audit API, and
the maker of a receipt. The regulator reads every receipt of its mode, whoever's it is."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from fx.models import Verification
from hub.models import AdapterConnection
from settlement.models import Account
from settlement.models_payins import Payin, SettlementRun
from tests.access import OPERATOR, Row
from tests.conftest import Tenant
from tests.factories import make_participant

REGULATOR = frozenset({"regulator"})
SEES_ALL = frozenset({"regulator"})


def _receipt(tenant: Tenant) -> str:
    """A settled payin of the tenant's (or of a new merchant's), verified, with its receipt."""
    from fx.receipts import receipts_issue

    owner = tenant.participant
    merchant = owner if owner.role == "merchant" else make_participant(role="merchant")
    institution = make_participant(role="payment_institution", country="KR")
    connection = AdapterConnection.objects.create(
        participant=institution,
        adapter="stripe_like",
        livemode=False,
        sandbox=True,
        config={"base_url": "http://127.0.0.1:9/"},
        credentials_encrypted="",
    )
    account = Account.objects.create(
        livemode=False, owner=merchant, currency="KRW", kind="merchant_settlement"
    )
    run = SettlementRun.objects.create(
        livemode=False,
        institution=institution,
        currency="KRW",
        business_date=timezone.localdate() - timedelta(days=1),
        time_zone="Asia/Seoul",
        cutoff_at=timezone.now(),
        status=SettlementRun.Status.COMPLETED,
    )
    payin = Payin.objects.create(
        livemode=False,
        merchant=merchant,
        account=account,
        connection=connection,
        amount=150000,
        currency="KRW",
        reference=f"matrix-{account.pk[-12:]}",
        status=Payin.Status.SETTLED,
        settled_amount=150000,
        fee=0,
        run=run,
        succeeded_at=timezone.now(),
    )
    Verification.objects.create(
        livemode=False,
        merchant=merchant,
        subject="payin",
        payin=payin,
        order_no=payin.reference,
        currency="KRW",
        amount=150000,
        outcome="verified",
    )
    [receipt_id] = receipts_issue(livemode=False)
    return receipt_id


# fmt: off
ROWS: list[Row] = [
    #   method  URL name                   allowed    ok   object in the URL
    Row("GET",  "receipts",                REGULATOR),
    Row("GET",  "receipts_export",         REGULATOR),
    Row("GET",  "receipt",                 REGULATOR, 200, "receipt", echo=True, sees_all=SEES_ALL),
    Row("GET",  "receipt_proof",           REGULATOR, 200, "receipt", sees_all=SEES_ALL),
    Row("GET",  "audit_statistics",        REGULATOR),
    Row("GET",  "audit_checkpoints",       REGULATOR),
    Row("POST", "audit_checkpoints",       OPERATOR,  201),
    # Before any receipt, no checkpoint: the regulator is let in and told there is none yet.
    Row("GET",  "audit_checkpoint_latest", REGULATOR, 404),
    # Without from and to: the regulator is let in and told what is missing.
    Row("GET",  "audit_consistency",       REGULATOR, 400),
    Row("GET",  "audit_keys",              REGULATOR),
]
# fmt: on
MAKERS: dict[str, Callable[[Tenant], str]] = {"receipt": _receipt}
