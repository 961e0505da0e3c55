"""The forex regulator's audit API: search, export and count electronic receipts, fetch a
receipt's proof bundle, the log's signed checkpoints, consistency proofs between them and the
public keys. Read only, regulator keys only, and every read (refused ones too) is kept in the
audit trail with its query string. The operator may publish a checkpoint on demand."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterable, Iterator
from datetime import date
from itertools import islice
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from django.db.models import Count, Max, QuerySet, Sum
from django.db.models.functions import TruncMonth
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from fx.api import date_param
from fx.models_receipts import Receipt
from fx.models_verification import Outcome
from fx.receipts import receipt_bundle
from hub import errors
from hub.api.base import HubAPIView
from hub.api.exports import ExportView, csv_streaming_response, file_response
from hub.api.pagination import LIST_PARAMETERS, choice_param, list_body, paginate
from hub.api.permissions import Rule
from hub.api.serializers import timestamp
from hub.ids import is_valid_id
from hub.models import Checkpoint, Role
from hub.money import format_amount
from hub.transparency.keys import signing_keys
from hub.transparency.log import (
    checkpoint_latest,
    checkpoint_publish,
    log_consistency_proof,
    log_root,
    log_size,
)
from trade.models import CustomsMode, TradeType

REGULATOR = frozenset({Role.REGULATOR})
OPERATOR = frozenset({Role.OPERATOR})
EXPORT_ROWS = 1_000_000
FILTERS = [
    OpenApiParameter("merchant", str),
    OpenApiParameter("institution", str),
    OpenApiParameter("settled_from", str, description="YYYY-MM-DD, inclusive"),
    OpenApiParameter("settled_to", str, description="YYYY-MM-DD, inclusive"),
    OpenApiParameter("currency", str),
    OpenApiParameter("customs_mode", str, enum=CustomsMode.values),
    OpenApiParameter("trade_type", str, enum=TradeType.values),
    OpenApiParameter("outcome", str, enum=[Outcome.VERIFIED, Outcome.REJECTED]),
    OpenApiParameter("direction", str, enum=Receipt.Direction.values),
]


def _b64(value: bytes | memoryview) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def _day(request: Request, name: str) -> date | None:
    return date_param(request, name) if name in request.query_params else None


def _size(request: Request, name: str, *, required: bool) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        if required:
            raise errors.InvalidRequest(
                f"{name} is required.", code="parameter_missing", param=name
            )
        return None
    if not re.fullmatch(r"[0-9]{1,15}", raw):
        raise errors.InvalidRequest(
            f"{name} is a tree size: a whole number.", code="parameter_invalid", param=name
        )
    return int(raw)


def receipts_search(request: Request, *, livemode: bool) -> QuerySet[Receipt]:
    """The receipts of the caller's mode that the query's filters select."""
    queryset = Receipt.objects.filter(livemode=livemode)
    params = request.query_params
    for name, prefix in (("merchant", "par"), ("institution", "par")):
        value = params.get(name)
        if value is not None:
            if not is_valid_id(prefix, value):
                raise errors.InvalidRequest(
                    f"{name} is a participant id.", code="parameter_invalid", param=name
                )
            queryset = queryset.filter(**{f"{name}_id": value})
    start, end = _day(request, "settled_from"), _day(request, "settled_to")
    if start is not None:
        queryset = queryset.filter(settled_on__gte=start)
    if end is not None:
        queryset = queryset.filter(settled_on__lte=end)
    currency = params.get("currency")
    if currency is not None:
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise errors.InvalidRequest(
                "currency is an ISO 4217 code.", code="parameter_invalid", param="currency"
            )
        queryset = queryset.filter(currency=currency)
    for name, values in (
        ("customs_mode", CustomsMode.values),
        ("trade_type", TradeType.values),
        ("outcome", (Outcome.VERIFIED, Outcome.REJECTED)),
        ("direction", Receipt.Direction.values),
    ):
        value = choice_param(request, name, values)
        if value is not None:
            queryset = queryset.filter(**{name: value})
    return queryset


def receipt_payload(receipt: Receipt) -> dict[str, Any]:
    return {
        "id": receipt.pk,
        "object": "receipt",
        "livemode": receipt.livemode,
        "merchant": receipt.merchant_id,
        "institution": receipt.institution_id,
        "verification": receipt.verification_id,
        "payin": receipt.payin_id,
        "payout": receipt.payout_id,
        "direction": receipt.direction,
        "amount": {
            "amount": format_amount(receipt.amount, receipt.currency),
            "currency": receipt.currency,
        },
        "customs_mode": receipt.customs_mode or None,
        "trade_type": receipt.trade_type or None,
        "counterparty_country": receipt.counterparty_country or None,
        "outcome": receipt.outcome,
        "settled_on": receipt.settled_on.isoformat(),
        "leaf_index": receipt.leaf_index,
        "key_id": receipt.key_id,
        "metadata": {},
        "created_at": timestamp(receipt.created_at),
    }


def checkpoint_payload(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "id": checkpoint.pk,
        "object": "checkpoint",
        "livemode": checkpoint.livemode,
        "tree_size": checkpoint.tree_size,
        "root_hash": _b64(checkpoint.root_hash),
        "timestamp": timestamp(checkpoint.timestamp),
        "key_id": checkpoint.key_id,
        "note": checkpoint.note,
        "metadata": {},
        "created_at": timestamp(checkpoint.timestamp),
    }


class AuditView(HubAPIView):
    audit_reads = True


# --- receipts ------------------------------------------------------------------------------


class ReceiptListView(AuditView):
    access = {"GET": Rule(REGULATOR, "receipts:read")}

    @extend_schema(parameters=[*LIST_PARAMETERS, *FILTERS], operation_id="receipts_list")
    def get(self, request: Request) -> Response:
        rows, has_more = paginate(request, receipts_search(request, livemode=self.actor.livemode))
        return Response(list_body([receipt_payload(r) for r in rows], has_more, request.path))


class ReceiptDetailView(AuditView):
    access = {"GET": Rule(REGULATOR, "receipts:read")}

    @extend_schema(
        operation_id="receipts_retrieve",
        description="The receipt's searchable fields, and under `signed` the exact JSON "
        "that was signed (RFC 8785) with its signature.",
    )
    def get(self, request: Request, receipt_id: str) -> Response:
        receipt = Receipt.objects.filter(pk=receipt_id, livemode=self.actor.livemode).first()
        if receipt is None:
            raise errors.NotFound()
        body = bytes(receipt.body)
        return Response(
            {
                **receipt_payload(receipt),
                "signed": {
                    "body": body.decode("utf-8"),
                    "signature": _b64(receipt.signature),
                    "algorithm": "Ed25519",
                },
            }
        )


class ReceiptProofView(AuditView):
    access = {"GET": Rule(REGULATOR, "receipts:read")}

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "tree_size",
                int,
                description="the size of a published checkpoint; default: the latest",
            )
        ],
        operation_id="receipts_proof",
        description="A self-contained bundle: the receipt, its signature and public key, its "
        "inclusion proof and the signed checkpoint it leads to. `hub audit verify` checks it "
        "offline.",
    )
    def get(self, request: Request, receipt_id: str) -> Response:
        tree_size = _size(request, "tree_size", required=False)
        receipt = Receipt.objects.filter(pk=receipt_id, livemode=self.actor.livemode).first()
        if receipt is None:
            raise errors.NotFound()
        return Response(receipt_bundle(receipt=receipt, tree_size=tree_size))


EXPORT_COLUMNS = (
    "id",
    "settled_on",
    "direction",
    "merchant",
    "institution",
    "currency",
    "amount",
    "customs_mode",
    "trade_type",
    "counterparty_country",
    "outcome",
    "verification",
    "payin",
    "payout",
    "leaf_index",
    "key_id",
    "created_at",
)


class ReceiptExportView(ExportView):
    audit_reads = True
    access = {"GET": Rule(REGULATOR, "receipts:read")}
    formats = ("csv", "parquet")

    @extend_schema(
        parameters=[*FILTERS, OpenApiParameter("format", str, enum=["csv", "parquet"])],
        operation_id="receipts_export",
        description=f"Every receipt the filters select, oldest first, as CSV or Parquet "
        f"(amounts as decimal strings; at most {EXPORT_ROWS:,} rows: narrow the dates).",
    )
    def get(self, request: Request) -> Any:
        fmt = self.file_format(request)
        queryset = receipts_search(request, livemode=self.actor.livemode)
        # The receipts committed when the export begins: leaves are appended one transaction at
        # a time in leaf order, so those are every selected one up to the last leaf seen now.
        bound = queryset.aggregate(count=Count("pk"), last=Max("leaf_index"))
        count = bound["count"]
        if count > EXPORT_ROWS:
            raise errors.InvalidRequest(
                f"More than {EXPORT_ROWS:,} receipts: narrow settled_from and settled_to.",
                code="export_too_large",
            )
        rows = (
            (
                r["id"],
                r["settled_on"].isoformat(),
                r["direction"],
                r["merchant_id"],
                r["institution_id"],
                r["currency"],
                format_amount(r["amount"], r["currency"]),
                r["customs_mode"],
                r["trade_type"],
                r["counterparty_country"],
                r["outcome"],
                r["verification_id"],
                r["payin_id"] or "",
                r["payout_id"] or "",
                r["leaf_index"],
                r["key_id"],
                timestamp(r["created_at"]),
            )
            for r in _pages(queryset, last=bound["last"])
        )
        if fmt == "csv":
            response: Any = csv_streaming_response(
                EXPORT_COLUMNS, rows, "receipts.csv", chunk=EXPORT_CHUNK
            )
        else:
            response = file_response(
                _parquet(rows), "application/vnd.apache.parquet", "receipts.parquet"
            )
        # The rows the file holds: a CSV cut short (the stream broken) is told from a whole one.
        response["Row-Count"] = str(count)
        return response


EXPORT_CHUNK = 20_000
# What each column is read from: the participants, the verification and the movements by id.
_EXPORT_FIELDS = tuple(
    f"{name}_id" if name in {"merchant", "institution", "verification", "payin", "payout"} else name
    for name in EXPORT_COLUMNS
)


def _pages(queryset: QuerySet[Receipt], *, last: int | None) -> Iterator[dict[str, Any]]:
    """The selected receipts up to leaf ``last``, in leaf order, ``EXPORT_CHUNK`` at a time:
    each page is a query of its own, after the last leaf of the page before. However long the
    file takes to send, nothing stays open on the server (a cursor held past its transaction
    would keep the whole result there), and receipts appended meanwhile are not in it."""
    after = -1
    while last is not None and after < last:
        page = list(
            queryset.filter(leaf_index__gt=after, leaf_index__lte=last)
            .order_by("leaf_index")
            .values(*_EXPORT_FIELDS)[:EXPORT_CHUNK]
        )
        yield from page
        if len(page) < EXPORT_CHUNK:
            return
        after = page[-1]["leaf_index"]


_PARQUET_SCHEMA = pa.schema(
    [(name, pa.int64() if name == "leaf_index" else pa.string()) for name in EXPORT_COLUMNS]
)


def _parquet(rows: Iterable[tuple[Any, ...]]) -> bytes:
    """The rows as one Parquet file, written a row group of ``EXPORT_CHUNK`` at a time: the
    server holds the compressed file and one group's rows, not every row at once."""
    out = io.BytesIO()
    it = iter(rows)
    with pq.ParquetWriter(out, _PARQUET_SCHEMA) as writer:
        empty = True
        while group := list(islice(it, EXPORT_CHUNK)):
            writer.write_table(_row_group(group))
            empty = False
        if empty:
            writer.write_table(_row_group([]))
    return out.getvalue()


def _row_group(rows: list[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in EXPORT_COLUMNS]
    return pa.Table.from_arrays(
        [
            pa.array(column, type=field.type)
            for column, field in zip(columns, _PARQUET_SCHEMA, strict=True)
        ],
        schema=_PARQUET_SCHEMA,
    )


# --- statistics ----------------------------------------------------------------------------

GROUPS = {
    "month": "month",
    "customs_mode": "customs_mode",
    "trade_type": "trade_type",
    "currency": "currency",
    "country": "counterparty_country",
    "institution": "institution_id",
    "direction": "direction",
    "outcome": "outcome",
}


class StatisticsView(AuditView):
    access = {"GET": Rule(REGULATOR, "receipts:read")}

    @extend_schema(
        parameters=[
            *FILTERS,
            OpenApiParameter(
                "group_by",
                str,
                description="comma-separated, any of: "
                + ", ".join(GROUPS)
                + " (the currency is always one: amounts of two currencies are never added)",
            ),
        ],
        operation_id="audit_statistics",
        description="Counts and amounts of receipts per group: the pilot zone's statistics.",
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("group_by", "month")
        names = [name.strip() for name in raw.split(",") if name.strip()]
        unknown = [name for name in names if name not in GROUPS]
        if not names or unknown or len(set(names)) != len(names):
            raise errors.InvalidRequest(
                "group_by is a comma-separated list of: " + ", ".join(GROUPS) + ".",
                code="parameter_invalid",
                param="group_by",
            )
        if "currency" not in names:
            names.append("currency")
        queryset = receipts_search(request, livemode=self.actor.livemode)
        if "month" in names:
            queryset = queryset.annotate(month=TruncMonth("settled_on"))
        columns = [GROUPS[name] for name in names]
        groups = (
            queryset.values(*columns)
            .annotate(count=Count("pk"), total=Sum("amount"))
            .order_by(*columns)
        )
        rows = []
        for group in groups:
            row: dict[str, Any] = {}
            for name, column in zip(names, columns, strict=True):
                value = group[column]
                row[name] = value.strftime("%Y-%m") if name == "month" and value else value
            row["count"] = group["count"]
            row["amount"] = {
                "amount": format_amount(group["total"], group["currency"]),
                "currency": group["currency"],
            }
            rows.append(row)
        return Response({"object": "receipt_statistics", "group_by": names, "data": rows})


# --- the log -------------------------------------------------------------------------------


class CheckpointListView(AuditView):
    access = {
        "GET": Rule(REGULATOR, "transparency:read"),
        "POST": Rule(OPERATOR, "transparency:write"),
    }

    @extend_schema(parameters=LIST_PARAMETERS, operation_id="audit_checkpoints_list")
    def get(self, request: Request) -> Response:
        queryset = Checkpoint.objects.filter(livemode=self.actor.livemode)
        rows, has_more = paginate(request, queryset)
        return Response(list_body([checkpoint_payload(c) for c in rows], has_more, request.path))

    @extend_schema(
        request=None,
        operation_id="audit_checkpoints_publish",
        description="Publishes a signed checkpoint of the log as it is now (the schedule "
        "publishes one whenever the log grew).",
    )
    def post(self, request: Request) -> Response:
        checkpoint = checkpoint_publish(livemode=self.actor.livemode, force=True)
        return Response(checkpoint_payload(checkpoint), status=201)


class CheckpointLatestView(AuditView):
    access = {"GET": Rule(REGULATOR, "transparency:read")}

    @extend_schema(
        operation_id="audit_checkpoints_latest",
        description="The latest signed checkpoint (404 before the first is published).",
    )
    def get(self, request: Request) -> Response:
        checkpoint = checkpoint_latest(livemode=self.actor.livemode)
        if checkpoint is None:
            raise errors.NotFound("No checkpoint has been published yet.")
        return Response(checkpoint_payload(checkpoint))


class ConsistencyView(AuditView):
    access = {"GET": Rule(REGULATOR, "transparency:read")}

    @extend_schema(
        parameters=[
            OpenApiParameter("from", int, required=True),
            OpenApiParameter("to", int, required=True),
        ],
        operation_id="audit_consistency",
        description="The RFC 9162 consistency proof that the log at size `to` extends the log "
        "at size `from` (0 < from <= to <= the log's size), with both roots.",
    )
    def get(self, request: Request) -> Response:
        old = _size(request, "from", required=True)
        new = _size(request, "to", required=True)
        assert old is not None
        assert new is not None
        livemode = self.actor.livemode
        size = log_size(livemode=livemode)
        if old < 1 or old > new:
            raise errors.InvalidRequest(
                "from is at least 1 and at most to.", code="parameter_invalid", param="from"
            )
        if new > size:
            raise errors.InvalidRequest(
                f"to is at most the log's size ({size}).", code="parameter_invalid", param="to"
            )
        proof = log_consistency_proof(livemode=livemode, old_size=old, new_size=new)
        return Response(
            {
                "object": "consistency_proof",
                "from": old,
                "to": new,
                "from_root": _b64(log_root(livemode=livemode, size=old)),
                "to_root": _b64(log_root(livemode=livemode, size=new)),
                "proof": [_b64(node) for node in proof],
            }
        )


class KeyListView(AuditView):
    access = {"GET": Rule(REGULATOR, "transparency:read")}

    @extend_schema(
        operation_id="audit_keys_list",
        description="Every key that signed receipts or checkpoints, the retired ones too, as "
        "signed-note verifier keys (`name+hash+base64`).",
    )
    def get(self, request: Request) -> Response:
        keys = [
            {
                "object": "signing_key",
                "key_id": key.key_id,
                "public_key": key.vkey,
                "algorithm": "Ed25519",
                "created_at": timestamp(key.created_at),
                "retired_at": timestamp(key.retired_at) if key.retired_at else None,
            }
            for key in signing_keys()
        ]
        return Response({"object": "list", "data": keys, "has_more": False, "url": request.path})
