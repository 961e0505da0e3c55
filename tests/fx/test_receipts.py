"""Electronic receipts: issued once per settled, decided movement, canonical JSON signed with
Ed25519, appended to the transparency log; proof bundles that verify offline and stop verifying
when a stored receipt is altered; the scheduled check that raises an operator alert."""

from __future__ import annotations

import base64
import json

from django.db import connection
from django.utils import timezone

from fx.models import Receipt, Verification
from fx.receipts import receipt_bundle, receipts_check, receipts_check_and_alert, receipts_issue
from hub.models import OperatorTask
from hub.transparency import merkle
from hub.transparency.bundle import verify_bundle
from hub.transparency.checkpoint import parse_vkey
from hub.transparency.jcs import canonicalize
from hub.transparency.keys import signing_key_rotate, signing_keys
from hub.transparency.log import checkpoint_latest, log_leaf_hashes, log_size
from tests.factories.receipts import settle


def b64(value: str) -> bytes:
    return base64.b64decode(value)


# --- issuing -------------------------------------------------------------------------------


def test_a_settled_verified_payin_becomes_one_signed_receipt_in_the_log(tenants):
    settled = settle(tenants, amounts=[150000])
    [payin], [verification] = settled.payins, settled.verifications

    issued = receipts_issue()

    [receipt] = Receipt.objects.all()
    assert issued == [receipt.pk]
    body = bytes(receipt.body)
    document = json.loads(body)
    assert canonicalize(document) == body
    assert document["id"] == receipt.pk
    assert document["movement"] == {
        "type": "payin",
        "id": payin.pk,
        "reference": payin.reference,
        "amount": "150000",
        "currency": "KRW",
        "settled_amount": "150000",
        "settlement_run": payin.run_id,
        "settled_on": payin.run.business_date.isoformat(),  # type: ignore[union-attr]
    }
    assert document["verification"]["id"] == verification.pk
    assert document["verification"]["decision"] == "verified"
    assert document["trade"] == {
        "trade_type": "B2C",
        "customs_mode": "9610",
        "counterparty_country": "KR",
        "documents": {
            "order": payin.reference,
            "payment_record": f"P-{payin.reference}",
            "waybill": f"W-{payin.reference}",
            "customs_declaration": None,
        },
    }
    assert document["merchant"]["id"] == tenants["merchant"].id
    assert document["institution"]["id"] == tenants["payment_institution"].id
    assert (receipt.leaf_index, log_size(livemode=False)) == (0, 1)
    assert log_leaf_hashes(livemode=False, start=0, stop=1) == [merkle.leaf_hash(body)]
    [key] = signing_keys()
    assert receipt.key_id == key.key_id
    parse_vkey(key.vkey)[2].verify(bytes(receipt.signature), body)


def test_issuing_again_issues_nothing_and_leaves_the_log_as_it_was(tenants):
    settle(tenants, amounts=[150000, 20000, 9999])
    first = receipts_issue()
    size = log_size(livemode=False)

    again = receipts_issue()

    assert (len(first), again, log_size(livemode=False), Receipt.objects.count()) == (3, [], 3, 3)
    assert size == 3
    assert sorted(Receipt.objects.values_list("leaf_index", flat=True)) == [0, 1, 2]


def test_a_verification_in_review_waits_for_the_officer(tenants):
    settled = settle(tenants, amounts=[150000, 20000], reviews=["pending", "none"])
    pending, plain = settled.verifications

    issued = receipts_issue()
    assert [Receipt.objects.get(pk=rid).verification_id for rid in issued] == [plain.pk]

    pending.review = Verification.Review.REJECTED
    pending.review_note = "the payer is not the buyer"
    pending.reviewed_by = tenants["bank"].participant
    pending.reviewed_at = timezone.now()
    pending.save()
    [rejected] = receipts_issue()

    receipt = Receipt.objects.get(pk=rejected)
    document = json.loads(bytes(receipt.body))
    assert (receipt.outcome, document["verification"]["decision"]) == ("rejected", "rejected")
    assert document["verification"]["review"] == "rejected"
    assert document["verification"]["reviewed_by"] == tenants["bank"].id


def test_a_payin_not_settled_yet_gets_no_receipt_until_its_run(tenants):
    settle(tenants, amounts=[150000], run=False)

    assert receipts_issue() == []
    assert (Receipt.objects.count(), log_size(livemode=False)) == (0, 0)


def test_a_settled_payin_without_a_verification_gets_no_receipt(tenants):
    settled = settle(tenants, amounts=[150000])
    Verification.objects.filter(pk=settled.verifications[0].pk).delete()

    assert receipts_issue() == []
    assert (Receipt.objects.count(), log_size(livemode=False)) == (0, 0)


# --- proofs --------------------------------------------------------------------------------


def test_the_bundle_verifies_offline_and_fails_once_the_stored_receipt_is_altered(tenants):
    settle(tenants, amounts=[150000, 20000, 9999, 5])
    receipts_issue()
    receipt = Receipt.objects.order_by("leaf_index")[2]
    bundle = receipt_bundle(receipt=receipt)
    pinned = [key.vkey for key in signing_keys()]
    good = verify_bundle(bundle, trusted_keys=pinned)
    assert good.ok, good.checks
    assert bundle["log"]["tree_size"] == 4

    altered = json.loads(bytes(receipt.body))
    altered["movement"]["amount"] = "99999"
    Receipt.objects.filter(pk=receipt.pk).update(body=canonicalize(altered))
    receipt.refresh_from_db()
    result = verify_bundle(receipt_bundle(receipt=receipt), trusted_keys=pinned)

    assert set(result.failed) == {"receipt_signature", "leaf_hash"}


def test_old_receipts_verify_after_the_key_is_rotated(tenants):
    settle(tenants, amounts=[150000], days_ago=2)
    [old] = receipts_issue()
    signing_key_rotate()
    settle(tenants, amounts=[7000], prefix="NEW")
    [new] = receipts_issue()

    old_receipt, new_receipt = Receipt.objects.get(pk=old), Receipt.objects.get(pk=new)
    assert old_receipt.key_id != new_receipt.key_id
    for receipt in (old_receipt, new_receipt):
        result = verify_bundle(
            receipt_bundle(receipt=receipt), trusted_keys=[key.vkey for key in signing_keys()]
        )
        assert result.ok, result.checks


# --- the scheduled check -------------------------------------------------------------------


def test_the_check_finds_nothing_wrong_in_an_untouched_log(tenants):
    settle(tenants, amounts=[150000, 20000])
    receipts_issue()

    assert receipts_check_and_alert(livemode=False) == []
    assert OperatorTask.objects.count() == 0


def test_a_receipt_altered_in_the_database_raises_one_operator_alert(tenants):
    settle(tenants, amounts=[150000, 20000, 300])
    receipts_issue()
    receipt = Receipt.objects.order_by("leaf_index")[1]
    with connection.cursor() as cursor:
        body = bytes(receipt.body).replace(b'"150000"', b'"1"').replace(b'"20000"', b'"1"')
        cursor.execute("UPDATE fx_receipt SET body = %s WHERE id = %s", [body, receipt.pk])

    problems = receipts_check(livemode=False)
    receipts_check_and_alert(livemode=False)

    assert {(p.receipt_id, p.problem) for p in problems} == {
        (receipt.pk, "leaf_mismatch"),
        (receipt.pk, "signature_invalid"),
    }
    [task] = OperatorTask.objects.all()
    assert task.details["receipts"][0]["id"] == receipt.pk


def test_every_receipt_is_exactly_its_own_rfc8785_canonical_form(tenants):
    """Receipts are encoded without the general check (they are plain by construction): the
    full canonicalisation of what was stored gives back the same bytes, whatever the text."""
    merchant = tenants["merchant"].participant
    merchant.legal_name = '威海 "Glow" 코스메틱\t🚢 Co.\\Ltd'
    merchant.save()
    settled = settle(tenants, amounts=[150000, 20000, 1], reviews=["pending", "none", "none"])
    pending = settled.verifications[0]
    pending.review, pending.reviewed_at = Verification.Review.APPROVED, timezone.now()
    pending.reviewed_by = tenants["bank"].participant
    pending.save()

    receipts_issue()

    bodies = [bytes(body) for body in Receipt.objects.values_list("body", flat=True)]
    assert len(bodies) == 3
    for body in bodies:
        assert canonicalize(json.loads(body)) == body
    assert json.loads(bodies[0])["merchant"]["name"] == '威海 "Glow" 코스메틱\t🚢 Co.\\Ltd'


def test_issuing_publishes_a_checkpoint_covering_the_new_receipts(tenants):
    settle(tenants, amounts=[150000, 20000])

    receipts_issue()

    latest = checkpoint_latest(livemode=False)
    assert latest is not None
    assert latest.tree_size == 2


def test_a_receipt_made_by_another_worker_meanwhile_is_not_made_again(tenants, monkeypatch):
    """The claim's snapshot may predate another worker's commit (it sees no receipt where one
    now exists): what was made is looked up again once the rows are locked."""
    import fx.receipts as receipts_module

    settled = settle(tenants, amounts=[150000, 20000])
    [made] = receipts_issue(livemode=False, limit=1)  # the other worker's
    # This worker's claim, as of before that commit: both verifications look receipt-less.
    monkeypatch.setattr(
        receipts_module,
        "_issuable",
        lambda livemode: Verification.objects.filter(pk__in=[v.pk for v in settled.verifications]),
    )

    issued = receipts_issue(livemode=False)

    assert len(issued) == 1
    assert Receipt.objects.count() == 2
    assert set(Receipt.objects.values_list("verification_id", flat=True)) == {
        v.pk for v in settled.verifications
    }
    assert made not in issued
