"""Forex e-document verification: a merchant's cross-border payin or payout checked against the
trade documents of its order (``fx.verification_rules`` decides), a bank officer's review of what
the rules sent to review, and one vectorised pass over every order of an uploaded file.

The documents of an order are read with the same queries whether one order or a hundred thousand
are verified, and go through the same rules as one frame: a batch and a single verification agree
row by row. Where an order has several payment records (or waybills, or declarations), the first
filed is the one checked.

Inputs the documents do not carry:

- the payer's year-to-date total: what the same payer (identity number and country) paid in the
  same currency in the calendar year (Asia/Shanghai) before this payment, summed over every B2C
  payment record filed with the hub in the mode, whichever merchant filed it;
- document reuse: the order already backs the verification of another payin or payout whose
  decision is not ``rejected`` (checks of a batch, made before money moved, back nothing);
- denied parties: the buyer of the order or the payer of the payment record on the list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from django.db import IntegrityError, connection, transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from fx.models_verification import DeniedParty, Outcome, Verification, VerificationBatch
from fx.verification_rules import Rules, denied_flags, payer_year_to_date, verify
from hub import errors
from hub.api.serializers import timestamp
from hub.conf import hub_settings
from hub.ids import new_id, new_ids
from hub.models import Participant, Role
from hub.money import money_payload
from hub.principal import Principal
from hub.services.events import event_emit, register_event_types
from settlement.models_payins import Payin
from settlement.models_payouts import Payout
from trade.models import (
    CustomsDeclaration,
    DocumentUpload,
    Order,
    PaymentRecord,
    TradeType,
    Waybill,
)

register_event_types("verification.created", "verification.reviewed", "verification_batch.created")

Subject = Verification.Subject
Review = Verification.Review

NOTE_MAX = 1000


def rules_in_force() -> Rules:
    return Rules.from_settings(hub_settings.FX_VERIFICATION)


def verification_payload(verification: Verification) -> dict[str, Any]:
    """The verification as the API and its events show it."""
    return {
        "id": verification.pk,
        "object": "verification",
        "livemode": verification.livemode,
        "merchant": verification.merchant_id,
        "subject": verification.subject,
        "payin": verification.payin_id,
        "payout": verification.payout_id,
        "batch": verification.batch_id,
        "order_no": verification.order_no,
        "documents": {
            "order": verification.order_id,
            "payment_record": verification.payment_record_id,
            "waybill": verification.waybill_id,
            "customs_declaration": verification.customs_declaration_id,
        },
        "amount": money_payload(verification.amount, verification.currency),
        "outcome": verification.outcome,
        "reasons": list(verification.reasons),
        "decision": verification.decision,
        "review": {
            "status": verification.review,
            "reviewed_by": verification.reviewed_by_id,
            "note": verification.review_note or None,
            "reviewed_at": timestamp(verification.reviewed_at),
        },
        "created_at": timestamp(verification.created_at),
        "updated_at": timestamp(verification.updated_at),
    }


def batch_payload(batch: VerificationBatch) -> dict[str, Any]:
    return {
        "id": batch.pk,
        "object": "verification_batch",
        "livemode": batch.livemode,
        "merchant": batch.merchant_id,
        "upload": batch.upload_id,
        "orders_count": batch.orders_count,
        "verified_count": batch.verified_count,
        "rejected_count": batch.rejected_count,
        "review_count": batch.review_count,
        "created_at": timestamp(batch.created_at),
    }


def denied_party_payload(party: DeniedParty) -> dict[str, Any]:
    return {
        "id": party.pk,
        "object": "denied_party",
        "livemode": party.livemode,
        "name": party.name,
        "id_number": party.id_number or None,
        "country": party.country or None,
        "reason": party.reason,
        "created_at": timestamp(party.created_at),
    }


# --- selectors -----------------------------------------------------------------------------------


def verifications_visible(*, actor: Principal) -> QuerySet[Verification]:
    """A merchant's own; for a bank, what it decided and the review queue of the merchants it
    serves (those it pays out for: a bank sees no other merchant's trade data); all for the
    operator, who also works the queue of merchants no bank serves yet."""
    queryset = Verification.objects.filter(livemode=actor.livemode)
    if actor.is_operator:
        return queryset
    if actor.role == Role.BANK:
        bank = actor.participant
        served = Payout.objects.filter(connection__participant=bank).values("merchant_id")
        return queryset.filter(
            Q(reviewed_by=bank) | Q(review=Review.PENDING, merchant_id__in=served),
            subject__in=(Subject.PAYIN, Subject.PAYOUT),
        )
    if actor.role == Role.MERCHANT:
        return queryset.filter(merchant=actor.participant)
    return queryset.none()


def verification_batches_visible(*, actor: Principal) -> QuerySet[VerificationBatch]:
    queryset = VerificationBatch.objects.filter(livemode=actor.livemode)
    if actor.is_operator:
        return queryset
    if actor.role == Role.MERCHANT:
        return queryset.filter(merchant=actor.participant)
    return queryset.none()


def denied_parties_visible(*, actor: Principal) -> QuerySet[DeniedParty]:
    queryset = DeniedParty.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.none()


# --- reading the documents into a frame ----------------------------------------------------------

# Frame column <- model field, per kind of document.
ORDER_FIELDS = {
    "order_id": "id",
    "order_order_no": "order_no",
    "trade_type": "trade_type",
    "customs_mode": "customs_mode",
    "buyer_name": "buyer_name",
    "buyer_id": "buyer_id",
    "buyer_country": "buyer_country",
    "order_currency": "currency",
    "order_amount": "amount",
    "goods_amount": "goods_amount",
    "shipping_amount": "shipping_amount",
    "tax_amount": "tax_amount",
    "ordered_at": "ordered_at",
}
PAYMENT_FIELDS = {
    "payment_id": "id",
    "order_id": "order_id",
    "payment_order_no": "order_no",
    "payer_name": "payer_name",
    "payer_id": "payer_id",
    "payer_country": "payer_country",
    "payment_currency": "currency",
    "payment_amount": "amount",
    "paid_at": "paid_at",
}
WAYBILL_FIELDS = {
    "waybill_id": "id",
    "order_id": "order_id",
    "waybill_no": "waybill_no",
    "waybill_order_no": "order_no",
    "shipped_at": "shipped_at",
}
CUSTOMS_FIELDS = {
    "customs_id": "id",
    "order_id": "order_id",
    "customs_order_no": "order_no",
    "customs_waybill_no": "waybill_no",
    "declared_mode": "customs_mode",
    "customs_currency": "currency",
    "customs_amount": "amount",
    "declared_at": "declared_at",
}
# Who paid (identity number and country), in which currency, when and how much: what a payer's
# year to date sums.
_PAYER = ("payer_id", "payer_country", "currency", "paid_at", "amount")
_PAYER_KEYS = ("payer_country", "payer_id", "currency")
HISTORY_FIELDS = {
    "payment_id": "id",
    "payer_id": "payer_id",
    "payer_country": "payer_country",
    "currency": "currency",
    "paid_at": "paid_at",
    "amount": "amount",
}


def _read(queryset: QuerySet[Any], fields: dict[str, str]) -> pd.DataFrame:
    """The queryset's rows as a frame with ``fields``' names: text as Python objects (numpy
    compares them as they are), amounts as ``int64``, times as ``datetime64[ns, UTC]``. On
    PostgreSQL the rows come packed in one value that Arrow parses: the ORM, or even a plain
    cursor, makes a Python object of every value, which at a hundred thousand rows costs more
    than the query, and so does parsing a hundred thousand timestamps in Python."""
    sql, params = queryset.values_list(*fields.values()).query.sql_with_params()
    return _read_sql(sql, params, fields)


def _read_sql(sql: str, params: Sequence[Any], fields: dict[str, str]) -> pd.DataFrame:
    """``_read`` of a query's rows: its columns are ``fields``' values, in order."""
    amounts = [name for name, source in fields.items() if source.endswith("amount")]
    times = [name for name, source in fields.items() if source.endswith("_at")]
    packed = (
        _read_packed(sql, params, fields, amounts, times)
        if connection.vendor == "postgresql"
        else None
    )
    if packed is not None:
        return packed
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    values = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
    frame = pd.DataFrame(
        {
            name: pd.Series(
                np.asarray(column, dtype=np.int64 if name in amounts else object),
                dtype=np.int64 if name in amounts else object,
            )
            for name, column in zip(fields, values, strict=True)
        }
    )
    for name in times:
        frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    return frame


# Unit and record separators: control characters that trade documents' text never holds (a
# value that did would change the count of rows or fields, and the frame is read again plainly).
# Arrow's reader ends a row at a line feed or a carriage return, so text holding either is read
# plainly too.
_UNIT, _RECORD = "\x1f", "\n"


def _read_packed(
    sql: str,
    params: Sequence[Any],
    fields: dict[str, str],
    amounts: list[str],
    times: list[str],
) -> pd.DataFrame | None:
    """Every row packed by PostgreSQL into one text value, unpacked by Arrow's CSV reader (in
    C++): no Python object per row, nor a message per row (as COPY sends them), and times
    parsed without Python; text columns become Python strings in one pass each. None when a
    value held a separator, or a time is not as PostgreSQL writes it in ISO style."""
    names = [f"c{n}" for n in range(len(fields))]
    packed = ", ".join(f"coalesce({column}::text, '')" for column in names)
    query = (
        f"SELECT count(*), string_agg(concat_ws(E'\\x1f', {packed}), E'\\n') "  # noqa: S608
        f"FROM ({sql}) AS rows ({', '.join(names)})"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        count, text = cursor.fetchone()
    if not count:
        return pd.DataFrame(
            {
                name: pd.Series(
                    [],
                    dtype=np.int64
                    if name in amounts
                    else "datetime64[ns, UTC]"
                    if name in times
                    else object,
                )
                for name in fields
            }
        )
    # A value holding a separator shows as one too many.
    if (
        text.count(_UNIT) != count * (len(fields) - 1)
        or text.count(_RECORD) != count - 1
        or "\r" in text
    ):
        return None
    table = _arrow_table(text.encode(), fields, amounts, times)
    if (
        table is None
        or table.num_rows != count
        or any(table.column(name).null_count for name in amounts)
    ):
        return None
    columns: dict[str, pd.Series] = {}
    for name in fields:
        column = table.column(name)
        if name in amounts:
            columns[name] = pd.Series(column.to_numpy(), dtype=np.int64)
        elif name in times:
            naive = column.to_numpy(zero_copy_only=False).astype("datetime64[ns]")
            columns[name] = pd.Series(naive).dt.tz_localize("UTC")
        else:
            columns[name] = pd.Series(column.to_numpy(zero_copy_only=False), dtype=object)
    return pd.DataFrame(columns)


def _arrow_table(data: bytes, fields: dict[str, str], amounts: list[str], times: list[str]) -> Any:
    """``data`` (rows of ``fields`` as ``_read_packed`` packs them) as an Arrow table: text as
    text, however it reads ("NA" is a name, "" is empty, not missing), amounts as ``int64``,
    times in UTC (missing where empty); None where the reader finds the rows malformed."""
    types = {
        name: pa.int64()
        if name in amounts
        else pa.timestamp("ns", tz="UTC")
        if name in times
        else pa.string()
        for name in fields
    }
    try:
        return pa_csv.read_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(column_names=list(fields)),
            parse_options=pa_csv.ParseOptions(
                delimiter=_UNIT,
                quote_char=False,
                escape_char=False,
                newlines_in_values=False,
                ignore_empty_lines=False,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=types,
                # Only a time reads as missing, where empty: text never does.
                null_values=[""],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                timestamp_parsers=[pa_csv.ISO8601],
            ),
        )
    except (pa.ArrowInvalid, ValueError):
        return None


def _first_per_order(queryset: QuerySet[Any], fields: dict[str, str]) -> pd.DataFrame:
    frame = _read(queryset, fields)
    if not frame["order_id"].duplicated().any():
        return frame
    # Ids grow with time: the smallest is the first filed.
    first = next(iter(fields))
    return frame.sort_values(first, kind="stable").drop_duplicates("order_id")


_DOCUMENTS = (
    (PaymentRecord, PAYMENT_FIELDS),
    (Waybill, WAYBILL_FIELDS),
    (CustomsDeclaration, CUSTOMS_FIELDS),
)


def _taken(source: pd.Series, at: Any, found: Any, index: pd.Index) -> pd.Series:
    """``source[at]``, missing where ``at`` is -1 as a left merge leaves it: NaT for times, NaN
    for amounts (then floats), None for text."""
    if isinstance(source.dtype, pd.DatetimeTZDtype):
        times = np.full(len(at), np.datetime64("NaT"), dtype="datetime64[ns]")
        times[found] = source.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")[at[found]]
        return pd.Series(times, index=index).dt.tz_localize("UTC")
    values = source.to_numpy()
    if found.all():
        return pd.Series(values[at], index=index, dtype=values.dtype)
    if values.dtype == object:
        column = np.full(len(at), None, dtype=object)
    else:
        column = np.full(len(at), np.nan)
    column[found] = values[at[found]]
    return pd.Series(column, index=index, dtype=column.dtype)


def documents_frame(orders: QuerySet[Order]) -> pd.DataFrame:
    """One row per order of ``orders`` (in id order) with its first payment record, waybill and
    customs declaration, columns as ``fx.verification_rules.COLUMNS`` names them; where an order
    has no document of a kind, its columns hold None (NaT for times)."""
    ids = orders.values("pk")
    frame = _read(orders.order_by("pk"), ORDER_FIELDS)
    columns: dict[str, Any] = {name: frame[name] for name in ORDER_FIELDS}
    for model, fields in _DOCUMENTS:
        documents = _first_per_order(model._default_manager.filter(order_id__in=ids), fields)
        # Each order's row among its documents (-1: none): a join without a merge's copies.
        at = pd.Index(documents["order_id"]).get_indexer(frame["order_id"])
        found = at >= 0
        for name in fields:
            if name != "order_id":
                columns[name] = _taken(documents[name], at, found, frame.index)
    columns["order_no"] = frame["order_order_no"]
    return pd.DataFrame(columns, index=frame.index)


def _no_documents(order_no: str) -> pd.DataFrame:
    """The frame of an order number that names no order."""
    columns = [*ORDER_FIELDS, *(name for _, fields in _DOCUMENTS for name in fields)]
    frame = pd.DataFrame([dict.fromkeys(columns)])
    frame["order_no"] = order_no
    return frame


def _year_to_date(
    frame: pd.DataFrame, *, orders: QuerySet[Order], livemode: bool, rules: Rules
) -> Any:
    """``payer_ytd`` for each row (see the module's docstring)."""
    counted = (
        frame["payment_id"].notna()
        & (frame["trade_type"] == TradeType.B2C)
        & frame["payment_currency"].isin(list(rules.annual_quotas))
    )
    if not counted.any():
        return 0
    paid_at = pd.to_datetime(frame.loc[counted, "paid_at"], utc=True)
    # Another merchant's records count only where they back a payin or payout still standing:
    # records filed and never paid against cannot use up (or probe) a payer's quota.
    standing = (
        Verification.objects.filter(subject__in=(Subject.PAYIN, Subject.PAYOUT))
        .exclude(outcome=Outcome.REJECTED)
        .exclude(review=Review.REJECTED)
        .values("payment_record_id")
    )
    # Only the payers of the orders verified: the history of anyone else changes no outcome.
    payers = PaymentRecord.objects.filter(order_id__in=orders.values("pk")).values("payer_id")
    window = PaymentRecord.objects.filter(
        Q(merchant_id__in=orders.values("merchant_id")) | Q(pk__in=standing),
        payer_id__in=payers,
        livemode=livemode,
        currency__in=sorted(set(frame.loc[counted, "payment_currency"])),
        # A calendar year in any time zone lies within these bounds.
        paid_at__gte=paid_at.min().to_pydatetime() - timedelta(days=367),
        paid_at__lte=paid_at.max().to_pydatetime(),
    ).values_list("pk", "order_id", *_PAYER)
    window_sql, window_params = window.query.sql_with_params()
    # A payment alone of its payer and currency in the window has nothing before it and is
    # before nothing else: only the others are read (most payers pay once), and only they are
    # looked up among the orders (B2C ones count): one statement, grouped by the database.
    payer = ", ".join(_PAYER_KEYS)
    history = (
        f"WITH w (id, order_id, {', '.join(_PAYER)}) AS ({window_sql}), "  # noqa: S608
        f"r AS (SELECT {payer} FROM w GROUP BY {payer} HAVING count(*) > 1) "
        f"SELECT {', '.join(f'w.{column}' for column in HISTORY_FIELDS.values())} "
        f"FROM w JOIN r ON {' AND '.join(f'r.{c} = w.{c}' for c in _PAYER_KEYS)} "
        f"JOIN {Order._meta.db_table} o ON o.id = w.order_id WHERE o.trade_type = %s"
    )
    return payer_year_to_date(
        _read_sql(history, [*window_params, TradeType.B2C.value], HISTORY_FIELDS),
        frame["payment_id"].fillna(""),
    )


def _flags(
    frame: pd.DataFrame, *, orders: QuerySet[Order], livemode: bool, rules: Rules
) -> pd.DataFrame:
    """``frame`` with what the documents do not say: ``payer_ytd``, ``document_reused``,
    ``buyer_denied``, ``payer_denied``."""
    parties = list(
        DeniedParty.objects.filter(livemode=livemode).values_list("name", "id_number", "country")
    )
    for role in ("buyer", "payer"):
        frame[f"{role}_denied"] = denied_flags(
            parties,
            names=frame[f"{role}_name"].fillna(""),
            id_numbers=frame[f"{role}_id"].fillna(""),
            countries=frame[f"{role}_country"].fillna(""),
        )
    frame["document_reused"] = frame["order_id"].isin(_backing(orders))
    frame["payer_ytd"] = _year_to_date(frame, orders=orders, livemode=livemode, rules=rules)
    return frame


def _backing(orders: QuerySet[Order]) -> set[str]:
    """Orders of ``orders`` that back a payin's or a payout's verification still standing."""
    queryset = (
        Verification.objects.filter(
            order_id__in=orders.values("pk"), subject__in=(Subject.PAYIN, Subject.PAYOUT)
        )
        .exclude(outcome=Outcome.REJECTED)
        .exclude(review=Review.REJECTED)
    )
    return set(queryset.values_list("order_id", flat=True))


def _none_if_blank(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# --- one payin or payout -------------------------------------------------------------------------


def verification_create(
    *,
    actor: Principal,
    payin_id: str | None = None,
    payout_id: str | None = None,
    order_no: str,
) -> tuple[Verification, bool]:
    """Verify the actor's payin (or payout) against the documents of order ``order_no``. Once
    per payin or payout: asking again returns the verification made the first time (and
    ``False``); naming another order then is 409 ``verification_exists``."""
    if actor.role not in (Role.MERCHANT, Role.OPERATOR):
        raise errors.PermissionDenied(
            "Only a merchant (or the operator) asks for verifications.", code="role_forbidden"
        )
    if (payin_id is None) == (payout_id is None):
        raise errors.InvalidRequest(
            "Name the payin or the payout to verify (one of them).",
            code="parameter_missing" if payin_id is None else "parameter_invalid",
            param="payin",
        )
    if not isinstance(order_no, str) or not 1 <= len(order_no) <= 64 or "\x00" in order_no:
        raise errors.InvalidRequest(
            "order_no is the order's number, 1 to 64 characters.",
            code="parameter_invalid",
            param="order_no",
        )
    return _verification_create(
        actor=actor, payin_id=payin_id, payout_id=payout_id, order_no=order_no
    )


def _movement(*, actor: Principal, payin_id: str | None, payout_id: str | None) -> Payin | Payout:
    model: type[Payin] | type[Payout] = Payin if payin_id is not None else Payout
    queryset: QuerySet[Any] = model.objects.filter(
        pk=payin_id or payout_id, livemode=actor.livemode
    )
    if not actor.is_operator:
        queryset = queryset.filter(merchant=actor.participant)
    # The lock serialises verifications of one movement: the second finds the first's.
    found = queryset.select_for_update(of=("self",)).order_by("pk").first()
    if found is None:
        name = "payin" if payin_id is not None else "payout"
        raise errors.NotFound(f"No such {name}.", param=name)
    return found


@transaction.atomic(durable=True)
def _verification_create(
    *, actor: Principal, payin_id: str | None, payout_id: str | None, order_no: str
) -> tuple[Verification, bool]:
    movement = _movement(actor=actor, payin_id=payin_id, payout_id=payout_id)
    subject = Subject.PAYIN if isinstance(movement, Payin) else Subject.PAYOUT
    existing = _existing(movement)
    if existing is not None:
        return _same_or_conflict(existing, order_no), False
    merchant: Participant = movement.merchant
    orders = Order.objects.filter(merchant=merchant, livemode=actor.livemode, order_no=order_no)
    # Verifications naming one order are serialised, so that each sees the others' reuse.
    list(orders.select_for_update().order_by("pk"))
    rules = rules_in_force()
    frame = documents_frame(orders)
    if frame.empty:
        frame = _no_documents(order_no)
    frame["currency"] = movement.currency
    frame["amount"] = movement.amount
    frame = _flags(frame, orders=orders, livemode=actor.livemode, rules=rules)
    result = verify(frame, rules=rules, now=timezone.now()).iloc[0]
    row = frame.iloc[0]
    outcome = str(result["outcome"])
    now = timezone.now()
    verification = Verification(
        livemode=actor.livemode,
        merchant=merchant,
        subject=subject,
        payin=movement if isinstance(movement, Payin) else None,
        payout=movement if isinstance(movement, Payout) else None,
        order_no=order_no,
        order_id=_none_if_blank(row.get("order_id")),
        payment_record_id=_none_if_blank(row.get("payment_id")),
        waybill_id=_none_if_blank(row.get("waybill_id")),
        customs_declaration_id=_none_if_blank(row.get("customs_id")),
        currency=movement.currency,
        amount=movement.amount,
        outcome=outcome,
        reasons=list(result["reasons"]),
        review=Review.PENDING if outcome == Outcome.REVIEW else Review.NONE,
        created_at=now,
        updated_at=now,
    )
    try:
        with transaction.atomic():
            verification.save(force_insert=True)
    except IntegrityError:
        # Another transaction verified the movement first (where rows are not locked).
        existing = _existing(movement)
        if existing is None:
            raise
        return _same_or_conflict(existing, order_no), False
    event_emit(
        type="verification.created",
        owner=merchant,
        actor=actor,
        data=verification_payload(verification),
    )
    return verification, True


def _existing(movement: Payin | Payout) -> Verification | None:
    if isinstance(movement, Payin):
        return Verification.objects.filter(payin=movement).first()
    return Verification.objects.filter(payout=movement).first()


def _same_or_conflict(existing: Verification, order_no: str) -> Verification:
    if existing.order_no != order_no:
        raise errors.Conflict(
            f"This {existing.subject} was verified against order {existing.order_no!r}.",
            code="verification_exists",
            param="order_no",
        )
    return existing


# --- review --------------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def verification_review(
    *, actor: Principal, verification_id: str, approve: bool, note: str
) -> Verification:
    """A bank officer (or the operator) decides a verification the rules sent to review."""
    if actor.role not in (Role.BANK, Role.OPERATOR):
        raise errors.PermissionDenied(
            "Only a bank (or the operator) reviews verifications.", code="role_forbidden"
        )
    if not isinstance(note, str) or not note.strip() or len(note) > NOTE_MAX or "\x00" in note:
        raise errors.InvalidRequest(
            f"A review needs a note of 1 to {NOTE_MAX} characters.",
            code="parameter_invalid",
            param="note",
        )
    verification = (
        verifications_visible(actor=actor)
        .select_for_update(of=("self",))
        .filter(pk=verification_id)
        .first()
    )
    if verification is None:
        raise errors.NotFound("No such verification.")
    if verification.review != Review.PENDING:
        raise errors.Conflict(
            f"The verification is {verification.decision} and not awaiting review "
            f"(review: {verification.review}).",
            code="verification_not_in_review",
        )
    now = timezone.now()
    verification.review = Review.APPROVED if approve else Review.REJECTED
    verification.reviewed_by = actor.participant
    verification.review_note = note.strip()
    verification.reviewed_at = now
    verification.updated_at = now
    verification.save(
        update_fields=["review", "reviewed_by", "review_note", "reviewed_at", "updated_at"]
    )
    event_emit(
        type="verification.reviewed",
        owner=verification.merchant,
        actor=actor,
        data=verification_payload(verification),
    )
    return verification


# --- a whole file (or every order not yet verified) in one pass ----------------------------------

# Upload kinds whose rows each name an order.
_KINDS: dict[str, type[Model]] = {
    DocumentUpload.Kind.PAYMENT_RECORD: PaymentRecord,
    DocumentUpload.Kind.WAYBILL: Waybill,
    DocumentUpload.Kind.CUSTOMS_DECLARATION: CustomsDeclaration,
}


def _orders_of(*, actor: Principal, upload_id: str | None) -> tuple[QuerySet[Order], str | None]:
    merchant = actor.participant
    orders = Order.objects.filter(merchant=merchant, livemode=actor.livemode)
    if upload_id is None:
        verified = Verification.objects.filter(
            merchant=merchant, livemode=actor.livemode, order__isnull=False
        ).values("order_id")
        return orders.exclude(pk__in=verified), None
    upload = DocumentUpload.objects.filter(
        pk=upload_id, merchant=merchant, livemode=actor.livemode
    ).first()
    if upload is None:
        raise errors.NotFound("No such upload.", param="upload")
    if upload.kind == DocumentUpload.Kind.ORDER:
        return orders.filter(upload=upload), upload.pk
    if upload.kind in _KINDS:
        named = _KINDS[upload.kind]._default_manager.filter(upload=upload).values("order_id")
        return orders.filter(pk__in=named), upload.pk
    raise errors.InvalidRequest(
        "An upload of orders, payment records, waybills or customs declarations names the "
        f"orders to verify; one of {upload.kind}s does not.",
        code="upload_kind_unsupported",
        param="upload",
    )


@transaction.atomic(durable=True)
def verification_batch_create(*, actor: Principal, upload_id: str | None) -> VerificationBatch:
    """Verify every order of the upload (or, without one, every order of the merchant that no
    verification names yet) in one vectorised pass, each as a verification of subject
    ``order`` (nothing to review: no money moved). The movement checked is the order's payment
    record (the order itself where it has none)."""
    if actor.role != Role.MERCHANT:
        raise errors.PermissionDenied(
            "A merchant verifies its own orders in a batch.", code="role_forbidden"
        )
    orders, upload = _orders_of(actor=actor, upload_id=upload_id)
    frame, results = batch_outcomes(orders, livemode=actor.livemode)
    now = timezone.now()
    counts = results["outcome"].value_counts()
    batch = VerificationBatch.objects.create(
        id=new_id("vbt"),
        livemode=actor.livemode,
        merchant=actor.participant,
        upload_id=upload,
        orders_count=len(frame),
        verified_count=int(counts.get(Outcome.VERIFIED, 0)),
        rejected_count=int(counts.get(Outcome.REJECTED, 0)),
        review_count=int(counts.get(Outcome.REVIEW, 0)),
        created_at=now,
    )
    verifications_insert(
        batch=batch, merchant_id=actor.participant.pk, frame=frame, results=results, now=now
    )
    event_emit(
        type="verification_batch.created",
        owner=actor.participant,
        actor=actor,
        data=batch_payload(batch),
    )
    return batch


def batch_outcomes(
    orders: QuerySet[Order], *, livemode: bool, rules: Rules | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The documents of every order of ``orders`` and what the rules make of them."""
    rules = rules or rules_in_force()
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        # The planner prices these whole-table reads high enough to compile them (JIT), which
        # takes longer than running them.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
    frame = documents_frame(orders)
    has_payment = frame["payment_id"].notna()
    frame["currency"] = frame["payment_currency"].where(has_payment, frame["order_currency"])
    frame["amount"] = frame["payment_amount"].where(has_payment, frame["order_amount"])
    frame = _flags(frame, orders=orders, livemode=livemode, rules=rules)
    return frame, verify(frame, rules=rules, now=timezone.now())


def verifications_insert(
    *,
    batch: VerificationBatch,
    merchant_id: str,
    frame: pd.DataFrame,
    results: pd.DataFrame,
    now: datetime,
) -> None:
    """One verification per row, all by one statement: a COPY on PostgreSQL."""
    n = len(frame)
    if n == 0:
        return
    # Few distinct masks however many rows: each one's outcome and reasons are written once.
    masks = results["mask"].to_numpy()
    _, first, inverse = np.unique(masks, return_index=True, return_inverse=True)
    outcomes = results["outcome"].to_numpy(dtype=object)
    reasons = results["reasons"].to_numpy(dtype=object)
    decided = [(str(outcomes[i]), json.dumps(list(reasons[i]))) for i in first]
    documents = {
        "order_no": frame["order_no"],
        "order_id": frame["order_id"],
        "payment_record_id": frame["payment_id"],
        "waybill_id": frame["waybill_id"],
        "customs_declaration_id": frame["customs_id"],
        "currency": frame["currency"],
    }
    amounts = frame["amount"].to_numpy().astype(np.int64)
    constants = {
        "livemode": batch.livemode,
        "merchant_id": merchant_id,
        "subject": Subject.ORDER.value,
        "batch_id": batch.pk,
        "review": Review.NONE.value,
        "review_note": "",
        "created_at": now,
        "updated_at": now,
    }
    if connection.vendor == "postgresql":
        _copy_verifications(
            documents=documents,
            amounts=amounts,
            decided=decided,
            inverse=inverse.ravel(),
            constants=constants,
        )
        return
    ids = new_ids("ver", n)
    texts = {name: [_null(v) for v in column.tolist()] for name, column in documents.items()}
    Verification.objects.bulk_create(
        [
            Verification(
                **constants,
                id=ids[row],
                amount=int(amounts[row]),
                outcome=decided[mask][0],
                reasons=json.loads(decided[mask][1]),
                **{name: values[row] for name, values in texts.items()},
            )
            for row, mask in enumerate(inverse.ravel().tolist())
        ],
        batch_size=500,
    )


def _null(value: Any) -> Any:
    """None for the NaN pandas puts where a document is missing."""
    return None if value is None or (isinstance(value, float) and value != value) else value


# COPY's text format: backslash escapes, \\N for null.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value).translate(_COPY_ESCAPES)


def _copy_column(column: pd.Series) -> npt.NDArray[Any]:
    """A column as COPY text, value by value: \\N where missing, escaped where needed (ids and
    codes never need it; only the few values holding a special character are rewritten)."""
    values = column.to_numpy(dtype=object).copy()
    missing = pd.isna(column).to_numpy()
    present = values[~missing]
    joined = "".join(present.tolist())
    special: Any = ()
    if any(character in joined for character in "\\\t\n\r"):
        special = np.flatnonzero(~missing)[
            [any(c in value for c in "\\\t\n\r") for value in present.tolist()]
        ]
    if len(special):
        values[special] = [str(value).translate(_COPY_ESCAPES) for value in values[special]]
    values[missing] = "\\N"
    return values


# Rows per piece of a COPY: the database inserts one piece while the next is written out.
_COPY_ROWS = 5_000


def _copy_verifications(
    *,
    documents: dict[str, pd.Series],
    amounts: npt.NDArray[np.int64],
    decided: list[tuple[str, str]],
    inverse: npt.NDArray[np.intp],
    constants: dict[str, Any],
) -> None:
    """The rows as COPY text, one statement sent piece by piece: the text of each piece (ids
    included) is made while PostgreSQL inserts the one before, and psycopg does no per-row
    work. The columns shared by every row (and the outcome with the reasons, shared by every
    row of one mask) are written out once and repeated."""
    tails = np.array(
        [
            "\t".join([outcome, reasons.translate(_COPY_ESCAPES)])
            + "\t"
            + "\t".join(_copy_field(value) for value in constants.values())
            for outcome, reasons in decided
        ],
        dtype=object,
    )[inverse]
    names = ["id", *documents, "amount", "outcome", "reasons", *constants]
    table = connection.ops.quote_name(Verification._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(name) for name in names)
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for start in range(0, len(amounts), _COPY_ROWS):
            rows = slice(start, start + _COPY_ROWS)
            fields = [
                new_ids("ver", len(amounts[rows])),
                *(_copy_column(column.iloc[rows]) for column in documents.values()),
                amounts[rows].astype(str).astype(object),
                tails[rows],
            ]
            copy.write(("\n".join(map("\t".join, zip(*fields, strict=True))) + "\n").encode())


# --- denied parties ------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def denied_party_create(
    *, actor: Principal, name: str, reason: str, id_number: str = "", country: str = ""
) -> DeniedParty:
    """Put a party on the list: matched by identity number (in ``country``, or anywhere when
    none is given), or, without a number, by name ignoring case and spacing."""
    if not actor.is_operator:
        raise errors.PermissionDenied(
            "Only the operator keeps the list of denied parties.", code="role_forbidden"
        )
    for value, param, low, high in (
        (name, "name", 1, 200),
        (reason, "reason", 1, 300),
        (id_number, "id_number", 0, 64),
    ):
        if not isinstance(value, str) or not low <= len(value.strip()) <= high or "\x00" in value:
            raise errors.InvalidRequest(
                f"{param} has {low} to {high} characters.", code="parameter_invalid", param=param
            )
    if country and (len(country) != 2 or not country.isascii() or not country.isupper()):
        raise errors.InvalidRequest(
            "country is an ISO 3166 alpha-2 code, upper case.",
            code="parameter_invalid",
            param="country",
        )
    return DeniedParty.objects.create(
        livemode=actor.livemode,
        name=name.strip(),
        id_number=id_number.strip(),
        country=country,
        reason=reason.strip(),
    )
