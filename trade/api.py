"""Trade document endpoints: a merchant files its orders, payment records, waybills, customs
declarations, contracts and invoices one at a time (JSON) or in bulk files (multipart), and
reads them back; the operator files for a merchant (naming it) and reads every merchant's.

Amounts are decimal strings in the currency's precision, next to one ``currency``; times are
RFC 3339 with their offset (answered in UTC).
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from hub import errors
from hub.api.base import HubAPIView
from hub.api.multipart import multipart_upload
from hub.api.pagination import LIST_PARAMETERS, choice_param, list_body, paginate
from hub.api.parsers import StrictJSONParser
from hub.api.permissions import Rule
from hub.api.serializers import MetadataField, ObjectTypeField, StrictSerializer, TimestampField
from hub.models import Role
from trade.models import CustomsMode, DocumentUpload, TradeType
from trade.rules import KINDS
from trade.selectors import document_get, documents_visible, upload_get, uploads_visible
from trade.services import document_create, document_payload
from trade.uploads import upload_create, upload_payload

TRADERS = frozenset({Role.MERCHANT, Role.OPERATOR})
READ = Rule(TRADERS, "trade:read")
WRITE = Rule(TRADERS, "trade:write")


def _text(help_text: str = "", *, required: bool = True) -> serializers.CharField:
    return serializers.CharField(
        required=required, allow_blank=not required, trim_whitespace=False, help_text=help_text
    )


AMOUNT = "A decimal string in the currency's precision (KRW 0 decimals, CNY 2)."
TIME = "RFC 3339 with its offset, such as 2026-11-02T10:15:00+09:00; not in the future."
COUNTRY = "ISO 3166-1 alpha-2, upper case."
NUMBER = "1 to 64 letters, digits and - _ . /, beginning with a letter or digit."


class _DocumentIn(StrictSerializer):
    merchant = serializers.CharField(
        required=False, help_text="operator: the merchant whose document this is"
    )
    metadata = MetadataField(required=False)


class TradeOrderIn(_DocumentIn):
    order_no = _text(NUMBER)
    trade_type = serializers.ChoiceField(choices=TradeType.values)
    customs_mode = serializers.ChoiceField(
        choices=CustomsMode.values, help_text="9610 and 1210 are B2C; 9710 and 9810 are B2B."
    )
    buyer_name = _text()
    buyer_id = _text("The buyer's identity at its platform.")
    buyer_country = _text(COUNTRY)
    currency = _text()
    amount = _text("goods_amount + shipping_amount + tax_amount. " + AMOUNT)
    goods_amount = _text(AMOUNT)
    shipping_amount = _text(AMOUNT + " Default 0.", required=False)
    tax_amount = _text(AMOUNT + " Default 0.", required=False)
    ordered_at = _text(TIME)


class TradePaymentRecordIn(_DocumentIn):
    payment_no = _text(NUMBER)
    order_no = _text("The order paid for, filed before.")
    payer_name = _text()
    payer_id = _text()
    payer_country = _text(COUNTRY)
    institution_name = _text(required=False)
    currency = _text()
    amount = _text(AMOUNT)
    paid_at = _text(TIME)


class TradeWaybillIn(_DocumentIn):
    waybill_no = _text(NUMBER)
    order_no = _text("The order shipped, filed before.")
    carrier = _text()
    consignee_name = _text()
    destination_country = _text(COUNTRY)
    shipped_at = _text(TIME)


class TradeCustomsDeclarationIn(_DocumentIn):
    declaration_no = _text(NUMBER)
    order_no = _text("The order declared, filed before.")
    waybill_no = _text("The waybill declared, as declared.", required=False)
    customs_mode = serializers.ChoiceField(choices=CustomsMode.values)
    currency = _text()
    amount = _text(AMOUNT)
    declared_at = _text(TIME)


class TradeContractIn(_DocumentIn):
    contract_no = _text(NUMBER)
    buyer_name = _text()
    buyer_country = _text(COUNTRY)
    currency = _text()
    amount = _text(AMOUNT)
    signed_at = _text(TIME)


class TradeInvoiceIn(_DocumentIn):
    invoice_no = _text(NUMBER)
    contract_no = _text("The contract billed, filed before.", required=False)
    order_no = _text("The order billed, filed before.", required=False)
    currency = _text()
    amount = _text(AMOUNT)
    issued_at = _text(TIME)


class _DocumentOut(serializers.Serializer):
    """Documentation of the answer; documents are rendered by ``document_payload``."""

    id = serializers.CharField()
    livemode = serializers.BooleanField()
    merchant = serializers.CharField()
    upload = serializers.CharField(allow_null=True, help_text="The bulk file it came in, if any")
    metadata = MetadataField()
    created_at = TimestampField()


def _out(kind: str) -> type[serializers.Serializer]:
    """An output schema: the input's fields (as strings) plus the common ones and links."""
    declared: dict[str, Any] = {"object": ObjectTypeField(kind)}
    for name in KINDS[kind].fields:
        declared[name] = serializers.CharField(allow_blank=True)
        if name in ("order_no", "contract_no") and kind not in ("order", "contract"):
            declared[name.removesuffix("_no")] = serializers.CharField(allow_null=True)
    name = "Trade" + "".join(part.title() for part in kind.split("_")) + "Out"
    return type(name, (_DocumentOut,), declared)


class _DocumentListView(HubAPIView):
    access = {"GET": READ, "POST": WRITE}
    kind: ClassVar[str]
    Input: ClassVar[type[StrictSerializer]]

    def get(self, request: Request) -> Response:
        queryset = documents_visible(actor=self.actor, kind=self.kind)
        spec = KINDS[self.kind]
        filters = {spec.number: spec.number, "upload": "upload_id", "merchant": "merchant_id"}
        if "order_no" in spec.fields:
            filters["order_no"] = "order_no"
        for param, field in filters.items():
            value = request.query_params.get(param)
            if value:
                queryset = queryset.filter(**{field: value})
        rows, has_more = paginate(request, queryset)
        return Response(list_body([document_payload(row) for row in rows], has_more, request.path))

    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        metadata = fields.pop("metadata", None)
        merchant = fields.pop("merchant", None)
        document = document_create(
            actor=self.actor,
            kind=self.kind,
            fields=fields,
            metadata=metadata,
            merchant_id=merchant,
        )
        return Response(document_payload(document), status=201)


class _DocumentDetailView(HubAPIView):
    access = {"GET": READ}
    kind: ClassVar[str]

    def get(self, request: Request, document_id: str) -> Response:
        document = document_get(actor=self.actor, kind=self.kind, document_id=document_id)
        return Response(document_payload(document))


_RULES = {
    "order": "amount = goods_amount + shipping_amount + tax_amount; the customs mode fits the "
    "trade type.",
    "payment_record": "order_no names an order the merchant filed; currency and amount may "
    "differ from the order's (verification judges them).",
    "waybill": "order_no names an order the merchant filed.",
    "customs_declaration": "order_no names an order the merchant filed; waybill_no is kept as "
    "declared.",
    "contract": "A B2B sales contract.",
    "invoice": "contract_no, order_no or both, each filed before.",
}


def _views(
    kind: str, plural: str, given: type[StrictSerializer]
) -> tuple[type[HubAPIView], type[HubAPIView]]:
    out = _out(kind)
    filters = [
        OpenApiParameter(KINDS[kind].number, str, description="exact number"),
        OpenApiParameter("upload", str, description="documents of one bulk file"),
        OpenApiParameter("merchant", str, description="operator: one merchant's"),
    ]
    if kind != "order" and "order_no" in KINDS[kind].fields:
        filters.append(OpenApiParameter("order_no", str, description="documents of one order"))
    name = "".join(part.title() for part in kind.split("_"))
    listing = type(
        f"{name}ListView",
        (_DocumentListView,),
        {"kind": kind, "Input": given, "__module__": __name__},
    )
    listing = extend_schema_view(
        get=extend_schema(
            parameters=[*LIST_PARAMETERS, *filters],
            responses=out(many=True),
            operation_id=f"trade_{plural}_list",
        ),
        post=extend_schema(
            request=given,
            responses={201: out},
            operation_id=f"trade_{plural}_create",
            description=f"File one {kind.replace('_', ' ')}. {_RULES[kind]} 409 document_exists "
            "for a number the merchant filed before.",
        ),
    )(listing)
    detail = type(
        f"{name}DetailView", (_DocumentDetailView,), {"kind": kind, "__module__": __name__}
    )
    detail = extend_schema_view(
        get=extend_schema(responses=out, operation_id=f"trade_{plural}_retrieve")
    )(detail)
    return listing, detail


OrderListView, OrderDetailView = _views("order", "orders", TradeOrderIn)
PaymentRecordListView, PaymentRecordDetailView = _views(
    "payment_record", "payment_records", TradePaymentRecordIn
)
WaybillListView, WaybillDetailView = _views("waybill", "waybills", TradeWaybillIn)
CustomsDeclarationListView, CustomsDeclarationDetailView = _views(
    "customs_declaration", "customs_declarations", TradeCustomsDeclarationIn
)
ContractListView, ContractDetailView = _views("contract", "contracts", TradeContractIn)
InvoiceListView, InvoiceDetailView = _views("invoice", "invoices", TradeInvoiceIn)


# --- bulk files ----------------------------------------------------------------------------------


KIND_HELP = "One of: " + ", ".join(DocumentUpload.Kind.values) + "."


class UploadForm(serializers.Serializer):
    """The multipart form of an upload (documentation only: the view reads the form itself)."""

    file = serializers.FileField(help_text="CSV with a header row, or JSON lines; UTF-8.")
    kind = serializers.CharField(help_text=KIND_HELP)
    mode = serializers.ChoiceField(
        choices=DocumentUpload.Mode.values,
        required=False,
        help_text="partial (default): good rows are kept, the others reported; "
        "all_or_nothing: one refused row refuses the file.",
    )
    format = serializers.ChoiceField(
        choices=DocumentUpload.Format.values,
        required=False,
        help_text="Default: from the file name (.csv; .jsonl or .ndjson).",
    )
    merchant = serializers.CharField(required=False, help_text="operator: whose documents")
    metadata = serializers.CharField(required=False, help_text="A JSON object of strings.")


FORM_FIELDS = ("file", "kind", "mode", "format", "merchant", "metadata")


# ``errors`` is a Serializer attribute: the answer's schema is built by name.
UploadOut: type[serializers.Serializer] = type(
    "DocumentUploadOut",
    (serializers.Serializer,),
    {
        "id": serializers.CharField(),
        "object": ObjectTypeField("document_upload"),
        "livemode": serializers.BooleanField(),
        "merchant": serializers.CharField(),
        "kind": serializers.CharField(help_text=KIND_HELP),
        "format": serializers.ChoiceField(choices=DocumentUpload.Format.values),
        "mode": serializers.ChoiceField(choices=DocumentUpload.Mode.values),
        "status": serializers.ChoiceField(choices=DocumentUpload.Status.values),
        "filename": serializers.CharField(),
        "sha256": serializers.CharField(),
        "rows_total": serializers.IntegerField(),
        "rows_accepted": serializers.IntegerField(),
        "rows_rejected": serializers.IntegerField(),
        "errors": serializers.ListField(
            child=serializers.DictField(),
            required=False,
            help_text="The first 1,000 refused rows, by row: row (the line of the file; a CSV "
            "header is row 1), code, param, message. Not shown in lists.",
        ),
        "metadata": MetadataField(),
        "created_at": TimestampField(),
    },
)


def _format_of(given: str | None, filename: str) -> str:
    if given is not None:
        return given
    lowered = filename.lower()
    if lowered.endswith(".csv"):
        return DocumentUpload.Format.CSV
    if lowered.endswith((".jsonl", ".ndjson")):
        return DocumentUpload.Format.JSONL
    raise errors.InvalidRequest(
        "format is required when the file name does not end in .csv, .jsonl or .ndjson.",
        code="parameter_missing",
        param="format",
    )


def _metadata(text: str) -> dict[str, str]:
    try:
        value = StrictJSONParser().parse(io.BytesIO(text.encode("utf-8")))
    except (errors.InvalidRequest, UnicodeError):
        value = None
    if not isinstance(value, dict) or not text.strip():
        raise errors.InvalidRequest(
            "metadata must be a JSON object of strings.", code="parameter_invalid", param="metadata"
        )
    result: dict[str, str] = MetadataField().to_internal_value(value)
    return result


class UploadListView(HubAPIView):
    access = {"GET": READ, "POST": WRITE}
    parser_classes = [MultiPartParser]

    @extend_schema(
        parameters=[
            *LIST_PARAMETERS,
            OpenApiParameter("kind", str, description=KIND_HELP),
            OpenApiParameter("status", str, enum=DocumentUpload.Status.values),
            OpenApiParameter("merchant", str, description="operator: one merchant's"),
        ],
        responses=UploadOut(many=True),
        operation_id="trade_uploads_list",
        description="Uploads newest first, without their row errors (retrieve one for them).",
    )
    def get(self, request: Request) -> Response:
        queryset = uploads_visible(actor=self.actor)
        kind = choice_param(request, "kind", DocumentUpload.Kind.values)
        if kind:
            queryset = queryset.filter(kind=kind)
        status = choice_param(request, "status", DocumentUpload.Status.values)
        if status:
            queryset = queryset.filter(status=status)
        merchant = request.query_params.get("merchant")
        if merchant:
            queryset = queryset.filter(merchant_id=merchant)
        rows, has_more = paginate(request, queryset.defer("errors"))
        return Response(
            list_body(
                [upload_payload(row, with_errors=False) for row in rows], has_more, request.path
            )
        )

    @extend_schema(
        request={"multipart/form-data": UploadForm},
        responses={201: UploadOut},
        operation_id="trade_uploads_create",
        description="File a CSV or JSON lines file of one kind of document (at most 100,000 "
        "rows). 201 with the outcome whenever the file could be read: status accepted, "
        "partially_accepted (mode partial) or rejected, with each refused row's error. A file "
        "that cannot be read as a whole is 400 (upload_invalid, upload_header_invalid, "
        "upload_empty, upload_too_many_rows) and nothing is stored; 413 above the size limit.",
    )
    def post(self, request: Request) -> Response:
        upload, values = multipart_upload(request, fields=FORM_FIELDS[1:], what="the documents")
        if "kind" not in values:
            raise errors.InvalidRequest(
                "kind is required: the kind of document the file holds.",
                code="parameter_missing",
                param="kind",
            )
        filename = upload.name or ""
        created = upload_create(
            actor=self.actor,
            kind=values["kind"],
            fmt=_format_of(values.get("format"), filename),
            mode=values.get("mode", DocumentUpload.Mode.PARTIAL),
            data=upload.read(),
            filename=filename,
            metadata=_metadata(values["metadata"]) if "metadata" in values else None,
            merchant_id=values.get("merchant"),
        )
        return Response(upload_payload(created), status=201)


class UploadDetailView(HubAPIView):
    access = {"GET": READ}

    @extend_schema(responses=UploadOut, operation_id="trade_uploads_retrieve")
    def get(self, request: Request, upload_id: str) -> Response:
        return Response(upload_payload(upload_get(actor=self.actor, upload_id=upload_id)))
