"""Rows of the access matrix (tests/hub/test_permissions.py) for this area's endpoints, and the
makers of the objects their URLs name; with the payins, payouts and documents the verification
tests start from."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fx.models_verification import Verification, VerificationBatch
from hub.crypto import encrypt
from hub.models import AdapterConnection, Participant, Role
from settlement.models import Account
from settlement.models_payins import Payin
from settlement.models_payouts import Payout, PayoutBankAccount
from tests.access import Row
from tests.conftest import Tenant
from tests.factories import make_participant
from tests.factories.trade import (
    DAY,
    CustomsDeclarationFactory,
    OrderFactory,
    PaymentRecordFactory,
    WaybillFactory,
)
from trade.models import Order

# --- what verifications start from --------------------------------------------------------------


def connection_of(institution: Participant, adapter: str = "stripe_like") -> AdapterConnection:
    found = AdapterConnection.objects.filter(participant=institution, adapter=adapter).first()
    if found is not None:
        return found
    credentials = (
        {"signing_key": "k" * 32}
        if adapter == "bank"
        else {"secret_key": "sk_test_x", "webhook_secret": "whsec_x"}
    )
    return AdapterConnection.objects.create(
        participant=institution,
        adapter=adapter,
        livemode=False,
        sandbox=True,
        config={"base_url": "http://127.0.0.1:9/", "client_id": "weihai-hub"},
        credentials_encrypted=encrypt(json.dumps(credentials)),
    )


def _institution(role: str) -> Participant:
    found = Participant.objects.filter(role=role).order_by("pk").first()
    return found or make_participant(role=role)


def account_of(merchant: Participant, currency: str) -> Account:
    found = Account.objects.filter(
        owner=merchant, currency=currency, kind=Account.Kind.MERCHANT_SETTLEMENT, livemode=False
    ).first()
    return found or Account.objects.create(
        livemode=False, owner=merchant, currency=currency, kind=Account.Kind.MERCHANT_SETTLEMENT
    )


def make_payin(
    merchant: Participant,
    *,
    amount: int = 150_000,
    currency: str = "KRW",
    institution: Participant | None = None,
) -> Payin:
    """A paid payin of ``merchant``, straight in the database."""
    connection = connection_of(institution or _institution(Role.PAYMENT_INSTITUTION))
    return Payin.objects.create(
        livemode=False,
        merchant=merchant,
        account=account_of(merchant, currency),
        connection=connection,
        amount=amount,
        currency=currency,
        reference=f"order-{Payin.objects.count() + 1}",
        status=Payin.Status.SUCCEEDED,
    )


def make_payout(
    merchant: Participant,
    *,
    amount: int = 150_000,
    currency: str = "KRW",
    bank: Participant | None = None,
) -> Payout:
    payee = PayoutBankAccount.objects.create(
        livemode=False,
        owner=merchant,
        account_number_encrypted=encrypt("6217000010001234567"),
        account_number_last4="4567",
        account_number_hash=f"hash-{merchant.pk}-{PayoutBankAccount.objects.count()}",
        account_name="Rizhao Matrix Trading Co., Ltd.",
        bank_code="CCBCCNBJ",
        country="CN",
        currency=currency,
    )
    return Payout.objects.create(
        livemode=False,
        merchant=merchant,
        source_account=account_of(merchant, currency),
        bank_account=payee,
        amount=amount,
        currency=currency,
        reference=f"payout-{Payout.objects.count() + 1}",
        connection=connection_of(bank or _institution(Role.BANK), "bank"),
    )


def make_documents(
    merchant: Participant,
    *,
    order_no: str = "ORD-1",
    payment: dict[str, Any] | None = None,
    waybill: dict[str, Any] | None = None,
    customs: dict[str, Any] | None = None,
    with_payment: bool = True,
    with_waybill: bool = True,
    with_customs: bool = False,
    **order: Any,
) -> Order:
    """An order of ``merchant`` (150,000 KRW, B2C 9610, goods 140,000 + shipping 10,000, made
    on ``DAY``) with its payment record (the buyer pays it all five minutes later), its waybill
    (a day later) and, if asked, its customs declaration; each overridable."""
    made: Order = OrderFactory.create(merchant=merchant, order_no=order_no, **order)
    payer = {"payer_name": made.buyer_name, "payer_id": made.buyer_id, "payer_country": "KR"}
    if with_payment:
        PaymentRecordFactory.create(merchant=merchant, order=made, **{**payer, **(payment or {})})
    if with_waybill:
        WaybillFactory.create(merchant=merchant, order=made, **(waybill or {}))
    if with_customs:
        CustomsDeclarationFactory.create(merchant=merchant, order=made, **(customs or {}))
    return made


def stored_verification(
    merchant: Participant,
    *,
    outcome: str = "verified",
    review: str = "none",
    reviewed_by: Participant | None = None,
    subject: str = "payin",
) -> Verification:
    """A verification as the service would have stored it, without running the rules."""
    payin = make_payin(merchant) if subject == "payin" else None
    reasons = {"verified": [], "review": ["payer_not_buyer"], "rejected": ["order_missing"]}
    return Verification.objects.create(
        livemode=False,
        merchant=merchant,
        subject=subject,
        payin=payin,
        order_no="ORD-1",
        currency="KRW",
        amount=150_000,
        outcome=outcome,
        reasons=reasons[outcome],
        review=review,
        reviewed_by=reviewed_by,
    )


def when(days: float = 0, **delta: float) -> datetime:
    return DAY + timedelta(days=days, **delta)


# --- the access matrix ---------------------------------------------------------------------------

MERCHANT = frozenset({"merchant"})
OPERATOR = frozenset({"operator"})
ASKERS = frozenset({"merchant", "operator"})
READERS = frozenset({"merchant", "bank", "operator"})
REVIEWERS = frozenset({"bank", "operator"})


def _merchant_of(tenant: Tenant) -> Participant:
    owner = tenant.participant
    return owner if owner.role == Role.MERCHANT else make_participant(role=Role.MERCHANT)


def _verification(tenant: Tenant) -> str:
    """A bank's: one it approved; anyone else's: a verified one of its own (or of a merchant of
    its own), which no bank sees."""
    if tenant.participant.role == Role.BANK:
        merchant = make_participant(role=Role.MERCHANT)
        return stored_verification(
            merchant, outcome="review", review="approved", reviewed_by=tenant.participant
        ).pk
    return stored_verification(_merchant_of(tenant)).pk


def _in_review(tenant: Tenant) -> str:
    """In the review queue: a bank's, of a merchant it pays out for; anyone else's, of a
    merchant of its own (which no bank serves: another tenant's is 404 to a bank)."""
    merchant = _merchant_of(tenant)
    if tenant.participant.role == Role.BANK:
        make_payout(merchant, bank=tenant.participant)
    return stored_verification(merchant, outcome="review", review="pending").pk


def _batch(tenant: Tenant) -> str:
    batch = VerificationBatch.objects.create(livemode=False, merchant=_merchant_of(tenant))
    return batch.pk


def a_verification(tenants: dict[str, Tenant]) -> dict[str, Any]:
    merchant = tenants["merchant"].participant
    make_documents(merchant, order_no="ORD-MATRIX")
    payin = make_payin(merchant, institution=tenants["payment_institution"].participant)
    return {"payin": payin.pk, "order_no": "ORD-MATRIX"}


NOTE = {"note": "documents checked with the merchant"}
DENIED = {"name": "Blocked Trading Ltd.", "id_number": "BRN-1", "country": "KR", "reason": "x"}

# fmt: off
ROWS: list[Row] = [
    Row("GET",  "fx_verifications",        READERS),
    Row("POST", "fx_verifications",        ASKERS,   201, None,               a_verification),
    Row("GET",  "fx_verification",         READERS,  200, "verification",     echo=True),
    Row("POST", "fx_verification_approve", REVIEWERS, 200, "verification_in_review", NOTE,
        echo=True),
    Row("POST", "fx_verification_reject",  REVIEWERS, 200, "verification_in_review", NOTE,
        echo=True),
    Row("GET",  "fx_verification_batches", ASKERS),
    Row("POST", "fx_verification_batches", MERCHANT, 201),
    Row("GET",  "fx_verification_batch",   ASKERS,   200, "verification_batch", echo=True),
    Row("GET",  "fx_denied_parties",       OPERATOR),
    Row("POST", "fx_denied_parties",       OPERATOR, 201, None,               DENIED),
]
# fmt: on
MAKERS: dict[str, Callable[[Tenant], str]] = {
    "verification": _verification,
    "verification_in_review": _in_review,
    "verification_batch": _batch,
}
