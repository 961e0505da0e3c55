"""Electronic receipts: every settled cross-border movement whose verification has decided,
written once as RFC 8785 canonical JSON, signed with the hub's Ed25519 key and appended to the
transparency log of its mode. The log itself announces them: its signed checkpoints are what
regulators follow (no event per receipt).

A payin becomes a receipt once its settlement run posted it; a payout once the bank paid it. A
verification still in review waits for the officer's decision; a movement without a verification
is not a cross-border receipt and gets none. Issuing is idempotent (one receipt per verification,
a unique constraint), batched (one log append per batch) and safe to run from several workers:
candidates are claimed with ``SKIP LOCKED``, and the log's head lock orders the appends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from fx.models_receipts import Receipt
from fx.models_verification import Outcome, Verification
from hub import errors
from hub.fastinsert import copy_rows
from hub.ids import new_ids
from hub.jobs import enqueue_after_commit
from hub.models import Event, Participant
from hub.money import format_amount
from hub.services.events import register_event_handler
from hub.transparency import merkle
from hub.transparency.bundle import build_bundle
from hub.transparency.checkpoint import format_time
from hub.transparency.jcs import canonicalize_plain
from hub.transparency.keys import signing_key_active, signing_keys
from hub.transparency.log import (
    checkpoint_at,
    checkpoint_latest,
    checkpoint_publish,
    log_append,
    log_inclusion_proof,
    log_leaf_hashes,
    log_size,
)
from settlement.models_payins import Payin
from settlement.models_payouts import Payout
from settlement.runs import RUN_COMPLETED

logger = logging.getLogger(__name__)

RECEIPT_VERSION = 1
ISSUE_BATCH = 2000


def _party(participant: Participant) -> dict[str, str]:
    return {
        "id": participant.pk,
        "name": participant.legal_name,
        "country": str(participant.country),
        "registration_id": participant.registration_id,
        "role": str(participant.role),
    }


# What a receipt is made of, read as one row per verification (model instances would cost more
# than signing them): the verification, its documents' numbers and the movement it backs.
_FIELDS = (
    "pk",
    "merchant_id",
    "currency",
    "amount",
    "outcome",
    "reasons",
    "review",
    "reviewed_by_id",
    "reviewed_at",
    "order__order_no",
    "order__trade_type",
    "order__customs_mode",
    "order__buyer_country",
    "payment_record__payment_no",
    "waybill__waybill_no",
    "customs_declaration__declaration_no",
    "payin_id",
    "payin__reference",
    "payin__amount",
    "payin__currency",
    "payin__settled_amount",
    "payin__run_id",
    "payin__run__business_date",
    "payin__connection__participant_id",
    "payout_id",
    "payout__reference",
    "payout__amount",
    "payout__currency",
    "payout__updated_at",
    "payout__connection__participant_id",
)


@dataclass(frozen=True)
class _Draft:
    """What a receipt says before it is signed and given its place in the log."""

    row: dict[str, Any]
    institution_id: str
    direction: str
    movement: dict[str, Any]
    settled_on: date

    @property
    def decision(self) -> str:
        review = self.row["review"]
        if review == Verification.Review.APPROVED:
            return str(Outcome.VERIFIED)
        if review == Verification.Review.REJECTED:
            return str(Outcome.REJECTED)
        return str(self.row["outcome"])


def _draft(row: dict[str, Any]) -> _Draft:
    if row["payin_id"] is not None:
        currency = row["payin__currency"]
        return _Draft(
            row=row,
            institution_id=row["payin__connection__participant_id"],
            direction=str(Receipt.Direction.INBOUND),
            movement={
                "type": "payin",
                "id": row["payin_id"],
                "reference": row["payin__reference"],
                "amount": format_amount(row["payin__amount"], currency),
                "currency": currency,
                "settled_amount": format_amount(row["payin__settled_amount"], currency),
                "settlement_run": row["payin__run_id"],
            },
            settled_on=row["payin__run__business_date"],
        )
    currency = row["payout__currency"]
    amount = format_amount(row["payout__amount"], currency)
    return _Draft(
        row=row,
        institution_id=row["payout__connection__participant_id"],
        direction=str(Receipt.Direction.OUTBOUND),
        movement={
            "type": "payout",
            "id": row["payout_id"],
            "reference": row["payout__reference"],
            "amount": amount,
            "currency": currency,
            "settled_amount": amount,
            "settlement_run": None,
        },
        settled_on=timezone.localdate(row["payout__updated_at"]),
    )


def receipt_drafts(verification_ids: Sequence[str]) -> tuple[list[_Draft], dict[str, Any]]:
    """The drafts of these verifications' receipts, in id order, and the parties they name."""
    rows = list(
        Verification.objects.filter(pk__in=verification_ids).order_by("pk").values(*_FIELDS)
    )
    drafts = [_draft(row) for row in rows]
    ids = {d.row["merchant_id"] for d in drafts} | {d.institution_id for d in drafts}
    parties = {p.pk: _party(p) for p in Participant.objects.filter(pk__in=ids)}
    return drafts, parties


def receipt_document(
    draft: _Draft,
    *,
    parties: dict[str, Any],
    receipt_id: str,
    issued_at: str,
    livemode: bool,
) -> dict[str, Any]:
    """The receipt as signed: only strings, integers, booleans and nulls (RFC 8785 needs no
    float), amounts as decimal strings in the currency's precision, times as RFC 3339 UTC."""
    row = draft.row
    reviewed_at = row["reviewed_at"]
    return {
        "object": "electronic_receipt",
        "version": RECEIPT_VERSION,
        "id": receipt_id,
        "livemode": livemode,
        "issued_at": issued_at,
        "direction": draft.direction,
        "merchant": parties[row["merchant_id"]],
        "institution": parties[draft.institution_id],
        "movement": {**draft.movement, "settled_on": draft.settled_on.isoformat()},
        "trade": {
            "trade_type": row["order__trade_type"],
            "customs_mode": row["order__customs_mode"],
            "counterparty_country": row["order__buyer_country"],
            "documents": {
                "order": row["order__order_no"],
                "payment_record": row["payment_record__payment_no"],
                "waybill": row["waybill__waybill_no"],
                "customs_declaration": row["customs_declaration__declaration_no"],
            },
        },
        "verification": {
            "id": row["pk"],
            "outcome": str(row["outcome"]),
            "reasons": [str(reason) for reason in row["reasons"]],
            "review": str(row["review"]),
            "reviewed_by": row["reviewed_by_id"],
            "reviewed_at": format_time(reviewed_at) if reviewed_at else None,
            "decision": draft.decision,
        },
    }


def _issuable(livemode: bool | None) -> QuerySet[Verification]:
    decided = (Q(review=Verification.Review.NONE) & ~Q(outcome=Outcome.REVIEW)) | Q(
        review__in=(Verification.Review.APPROVED, Verification.Review.REJECTED)
    )
    settled = Q(subject=Verification.Subject.PAYIN, payin__status=Payin.Status.SETTLED) | Q(
        subject=Verification.Subject.PAYOUT, payout__status=Payout.Status.PAID
    )
    queryset = Verification.objects.filter(decided & settled, receipt__isnull=True)
    if livemode is not None:
        queryset = queryset.filter(livemode=livemode)
    return queryset


def receipts_issue(*, livemode: bool | None = None, limit: int = ISSUE_BATCH) -> list[str]:
    """Issue the receipts of up to ``limit`` settled, decided movements that have none yet.
    Returns the new receipts' ids (none when there was nothing to do)."""
    modes = (livemode,) if livemode is not None else (False, True)
    issued: list[str] = []
    failure: Exception | None = None
    for mode in modes:
        # One mode's failure (test data anyone can make) never holds up the other's receipts.
        try:
            issued += _issue_batch(livemode=mode, limit=limit)
        except DatabaseError as exc:
            logger.exception("receipts of the %s log not issued", "live" if mode else "test")
            failure = failure or exc
    if failure is not None and not issued:
        raise failure
    return issued


@transaction.atomic
def _issue_batch(*, livemode: bool, limit: int) -> list[str]:
    claimed = _issuable(livemode).order_by("pk")[:limit]
    if connection.features.has_select_for_update_skip_locked:
        claimed = claimed.select_for_update(skip_locked=True, of=("self",))
    ids = list(claimed.values_list("pk", flat=True))
    # A worker that committed while this one waited for its locks made receipts this query's
    # snapshot could not see: look again, now that the rows are ours.
    done = set(
        Receipt.objects.filter(verification_id__in=ids).values_list("verification_id", flat=True)
    )
    ids = [pk for pk in ids if pk not in done]
    if not ids:
        return []
    drafts, parties = receipt_drafts(ids)
    issued = _append(drafts, parties=parties, livemode=livemode)
    # Every receipt is covered by a signed checkpoint from the moment it exists: its proof
    # never waits for the schedule, and a regulator's read never has to write one.
    checkpoint_publish(livemode=livemode)
    return issued


_COLUMNS = (
    "id",
    "livemode",
    "merchant_id",
    "institution_id",
    "verification_id",
    "payin_id",
    "payout_id",
    "direction",
    "currency",
    "amount",
    "customs_mode",
    "trade_type",
    "counterparty_country",
    "outcome",
    "settled_on",
    "body",
    "key_id",
    "signature",
    "leaf_index",
    "created_at",
)
_COPY_TYPES = (
    "varchar",
    "bool",
    "varchar",
    "varchar",
    "varchar",
    "varchar",
    "varchar",
    "varchar",
    "varchar",
    "int8",
    "varchar",
    "varchar",
    "varchar",
    "varchar",
    "date",
    "bytea",
    "varchar",
    "bytea",
    "int8",
    "timestamptz",
)


def _append(drafts: Sequence[_Draft], *, parties: dict[str, Any], livemode: bool) -> list[str]:
    """Sign the drafts, append their leaves in one go and store the receipts (in the caller's
    transaction: a failure leaves neither receipts nor leaves)."""
    key = signing_key_active()
    now = timezone.now()
    issued_at = format_time(now)
    receipt_ids = new_ids("rcpt", len(drafts))
    # Receipts are plain by construction (see receipt_document); tests check every receipt they
    # issue against the full canonicalisation.
    bodies = [
        canonicalize_plain(
            receipt_document(
                d, parties=parties, receipt_id=rid, issued_at=issued_at, livemode=livemode
            )
        )
        for d, rid in zip(drafts, receipt_ids, strict=True)
    ]
    signatures = [key.sign(body) for body in bodies]
    first = log_append(livemode=livemode, leaf_hashes=[merkle.leaf_hash(b) for b in bodies])
    rows = []
    for offset, draft in enumerate(drafts):
        row = draft.row
        rows.append(
            (
                receipt_ids[offset],
                livemode,
                row["merchant_id"],
                draft.institution_id,
                row["pk"],
                row["payin_id"],
                row["payout_id"],
                draft.direction,
                row["currency"],
                row["amount"],
                row["order__customs_mode"] or "",
                row["order__trade_type"] or "",
                row["order__buyer_country"] or "",
                draft.decision,
                draft.settled_on,
                bodies[offset],
                key.key_id,
                signatures[offset],
                first + offset,
                now,
            )
        )
    copy_rows(Receipt, _COLUMNS, _COPY_TYPES, rows)
    return receipt_ids


# --- proofs --------------------------------------------------------------------------------


def receipt_bundle(*, receipt: Receipt, tree_size: int | None = None) -> dict[str, Any]:
    """The self-contained proof of one receipt: the receipt, its signature and the key that
    made it, its place in the log with the inclusion proof, and the signed checkpoint the proof
    leads to (``tree_size``'s, or the latest: issuing publishes one that covers the receipt).
    ``hub audit verify`` checks it with no access to the hub."""
    if tree_size is None:
        checkpoint = checkpoint_latest(livemode=receipt.livemode)
        if checkpoint is None or checkpoint.tree_size <= receipt.leaf_index:
            raise errors.Conflict(
                "No signed checkpoint covers this receipt yet; the next one will.",
                code="checkpoint_pending",
            )
    else:
        checkpoint = checkpoint_at(livemode=receipt.livemode, tree_size=tree_size)
        if checkpoint is None:
            raise errors.InvalidRequest(
                "No checkpoint was published at this tree size.",
                code="checkpoint_missing",
                param="tree_size",
            )
        if tree_size <= receipt.leaf_index:
            raise errors.InvalidRequest(
                "The receipt was appended after this checkpoint.",
                code="checkpoint_too_old",
                param="tree_size",
            )
    keys = {k.key_id: k.vkey for k in signing_keys()}
    if receipt.key_id not in keys:  # a receipt names a key the hub no longer has
        raise errors.Conflict("The receipt's signing key is missing.", code="signing_key_missing")
    signers = [keys[key_id] for key_id in (checkpoint.key_id,) if key_id != receipt.key_id]
    proof = log_inclusion_proof(
        livemode=receipt.livemode, index=receipt.leaf_index, size=checkpoint.tree_size
    )
    # The leaf as the log holds it: a receipt changed in the database then shows as a receipt
    # that is not the log's entry, besides not matching its signature.
    [leaf] = log_leaf_hashes(
        livemode=receipt.livemode, start=receipt.leaf_index, stop=receipt.leaf_index + 1
    )
    return build_bundle(
        receipt=json.loads(bytes(receipt.body)),
        signature=bytes(receipt.signature),
        public_key=keys[receipt.key_id],
        origin=checkpoint_origin(checkpoint.note),
        leaf_index=receipt.leaf_index,
        tree_size=checkpoint.tree_size,
        leaf_hash=leaf,
        inclusion_proof=proof,
        checkpoint=checkpoint.note,
        checkpoint_keys=signers,
    )


def checkpoint_origin(note: str) -> str:
    return note.split("\n", 1)[0]


# --- checking what is stored --------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptProblem:
    receipt_id: str
    leaf_index: int
    problem: str  # leaf_mismatch, signature_invalid, key_missing, leaf_missing


def receipts_check(*, livemode: bool, chunk: int = 20_000) -> list[ReceiptProblem]:
    """Every stored receipt against the log: its body still hashes to its leaf and its
    signature still verifies under its key. A receipt altered in the database shows here."""
    from cryptography.exceptions import InvalidSignature

    from hub.transparency.checkpoint import parse_vkey

    keys = {k.key_id: parse_vkey(k.vkey)[2] for k in signing_keys()}
    size = log_size(livemode=livemode)
    problems: list[ReceiptProblem] = []
    start = 0
    while start < size:
        stop = min(size, start + chunk)
        leaves = log_leaf_hashes(livemode=livemode, start=start, stop=stop)
        rows = Receipt.objects.filter(
            livemode=livemode, leaf_index__gte=start, leaf_index__lt=stop
        ).values_list("pk", "leaf_index", "body", "signature", "key_id")
        for receipt_id, index, body, signature, key_id in rows:
            body = bytes(body)
            if merkle.leaf_hash(body) != leaves[index - start]:
                problems.append(ReceiptProblem(receipt_id, index, "leaf_mismatch"))
            public_key = keys.get(key_id)
            if public_key is None:
                problems.append(ReceiptProblem(receipt_id, index, "key_missing"))
                continue
            try:
                public_key.verify(bytes(signature), body)
            except InvalidSignature:
                problems.append(ReceiptProblem(receipt_id, index, "signature_invalid"))
        start = stop
    return problems


def receipts_check_and_alert(*, livemode: bool) -> list[ReceiptProblem]:
    """The scheduled check: an operator alert names the receipts that no longer match."""
    from hub.transparency.log import transparency_alert

    problems = receipts_check(livemode=livemode)
    if problems:
        first: Iterable[ReceiptProblem] = problems[:50]
        transparency_alert(
            livemode=livemode,
            summary="Stored receipts no longer match the transparency log",
            details={
                "problem": "receipts_altered",
                "count": len(problems),
                "receipts": [
                    {"id": p.receipt_id, "leaf_index": p.leaf_index, "problem": p.problem}
                    for p in first
                ],
            },
        )
        logger.error("transparency: %d receipts do not match the log", len(problems))
    return problems


# --- when to issue -------------------------------------------------------------------------


def receipts_issue_all(*, livemode: bool | None = None) -> int:
    """Issue batch after batch until nothing is left (what the task and the sweep run)."""
    total = 0
    while True:
        issued = receipts_issue(livemode=livemode)
        total += len(issued)
        if not issued:
            return total


def _nudge(event: Event) -> None:
    from fx.tasks import receipts_issue_task

    enqueue_after_commit(receipts_issue_task)


def register_handlers() -> None:
    """A settlement run, a paid payout or a verification's decision may each be the last thing
    a receipt waited for."""
    import fx.verification  # noqa: F401  (registers the verification event types)

    for type in (RUN_COMPLETED, "payout.paid", "verification.created", "verification.reviewed"):
        register_event_handler(type, _nudge)
