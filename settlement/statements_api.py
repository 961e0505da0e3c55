"""Bank statement endpoints: a bank (or the operator) uploads camt.053 or mapped CSV statements;
the operator reconciles them with the ledger and works the exceptions queue.

The upload is a multipart endpoint (as is the trade documents upload): a statement is a file,
sent as it came from the bank, within the hub's request body limit of ``BODY_LIMIT`` (1 MiB, 413
above it). Everything else takes and answers JSON.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from hub import errors
from hub.api.base import HubAPIView
from hub.api.multipart import multipart_upload
from hub.api.pagination import LIST_PARAMETERS, choice_param, limit_param, list_body, page, paginate
from hub.api.parsers import StrictJSONParser
from hub.api.permissions import Rule
from hub.api.serializers import (
    MetadataField,
    MoneyField,
    ObjectTypeField,
    StrictSerializer,
    TimestampField,
)
from hub.models import Role
from settlement.models_statements import (
    BankStatement,
    ReconciliationException,
    ReconciliationRun,
    StatementLine,
)
from settlement.reconcile import MAX_BPS, MAX_WINDOW_DAYS, MatchRules
from settlement.statements import format_minor
from settlement.statements_selectors import (
    bank_statement_get,
    bank_statements_visible,
    reconciliation_exception_get,
    reconciliation_exceptions_visible,
    reconciliation_run_get,
    statement_lines,
)
from settlement.statements_service import (
    StatementImport,
    bank_statement_import,
    reconciliation_exception_resolve,
    reconciliation_run,
)

STATEMENT_ROLES = frozenset({Role.BANK, Role.OPERATOR})
OPERATOR = frozenset({Role.OPERATOR})
FORM_FIELDS = ("file", "account", "bank", "csv_mapping", "metadata")


# --- output --------------------------------------------------------------------------------------


def _money(minor: int | None, currency: str | None) -> dict[str, str] | None:
    if minor is None or not currency:
        return None
    return {"amount": format_minor(minor, currency), "currency": currency}


def _timestamp(value: Any) -> str | None:
    return TimestampField().to_representation(value)


def _date(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def _without_minor(value: Any) -> Any:
    """The parser's JSON form less its ``amount_minor`` twins: the API shows amounts as decimal
    strings only."""
    if isinstance(value, dict):
        return {k: _without_minor(v) for k, v in value.items() if k != "amount_minor"}
    if isinstance(value, list):
        return [_without_minor(item) for item in value]
    return value


def _balance(minor: int | None, currency: str, day: Any) -> dict[str, Any] | None:
    if minor is None:
        return None
    return {"amount": format_minor(minor, currency), "currency": currency, "date": _date(day)}


class BankStatementOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("bank_statement")
    livemode = serializers.BooleanField()
    account = serializers.CharField(help_text="The bank_cash account that mirrors it.")
    bank = serializers.CharField(allow_null=True)
    uploaded_by = serializers.CharField()
    format = serializers.CharField(help_text="camt.053.001.02 to camt.053.001.08, or csv")
    statement_id = serializers.CharField(help_text="The bank's statement id.")
    message_id = serializers.CharField(allow_null=True)
    message_created_at = TimestampField(allow_null=True)
    issued_at = TimestampField(allow_null=True)
    electronic_sequence_number = serializers.IntegerField(allow_null=True)
    legal_sequence_number = serializers.IntegerField(allow_null=True)
    copy_duplicate = serializers.CharField(allow_null=True)
    page_number = serializers.IntegerField(allow_null=True)
    last_page = serializers.BooleanField(allow_null=True)
    account_identification = serializers.CharField(allow_null=True)
    account_details = serializers.DictField()
    currency = serializers.CharField()
    from_date_time = TimestampField(allow_null=True)
    to_date_time = TimestampField(allow_null=True)
    period_start = serializers.DateField(allow_null=True)
    period_end = serializers.DateField(allow_null=True)
    opening_balance = serializers.DictField(allow_null=True, help_text="Signed; with its date.")
    closing_balance = serializers.DictField(allow_null=True, help_text="Signed; with its date.")
    balances = serializers.ListField(child=serializers.DictField())
    additional_info = serializers.CharField(allow_null=True)
    entry_count = serializers.IntegerField()
    filename = serializers.CharField()
    file_size = serializers.IntegerField()
    file_sha256 = serializers.CharField()
    content_sha256 = serializers.CharField()
    reconciliation_run = serializers.CharField(allow_null=True, help_text="The current run.")
    metadata = MetadataField()
    created_at = TimestampField()

    def to_representation(self, s: BankStatement) -> dict[str, Any]:
        return {
            "id": s.pk,
            "object": "bank_statement",
            "livemode": s.livemode,
            "account": s.account_id,
            "bank": s.bank_id,
            "uploaded_by": s.uploaded_by_id,
            "format": s.format,
            "statement_id": s.statement_id,
            "message_id": s.message_id or None,
            "message_created_at": _timestamp(s.message_created_at),
            "issued_at": _timestamp(s.issued_at),
            "electronic_sequence_number": s.electronic_sequence_number,
            "legal_sequence_number": s.legal_sequence_number,
            "copy_duplicate": s.copy_duplicate or None,
            "page_number": s.page_number,
            "last_page": s.last_page,
            "account_identification": s.account_identification or None,
            "account_details": s.account_details,
            "currency": s.currency,
            "from_date_time": _timestamp(s.from_date_time),
            "to_date_time": _timestamp(s.to_date_time),
            "period_start": _date(s.period_start),
            "period_end": _date(s.period_end),
            "opening_balance": _balance(
                s.opening_balance_minor, s.opening_balance_currency, s.opening_balance_date
            ),
            "closing_balance": _balance(
                s.closing_balance_minor, s.closing_balance_currency, s.closing_balance_date
            ),
            "balances": _without_minor(s.balances),
            "additional_info": s.additional_info or None,
            "entry_count": s.entry_count,
            "filename": s.filename,
            "file_size": s.file_size,
            "file_sha256": s.file_sha256,
            "content_sha256": s.content_sha256,
            "reconciliation_run": getattr(s, "current_run_id", None),
            "metadata": s.metadata,
            "created_at": _timestamp(s.created_at),
        }


class StatementLineOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("bank_statement_line")
    bank_statement = serializers.CharField()
    index = serializers.IntegerField(help_text="Position in the statement, from 0.")
    amount = MoneyField()
    credit_debit = serializers.ChoiceField(
        choices=["CRDT", "DBIT"], help_text="As the bank sees its account: CRDT is money in."
    )
    stated_amount = serializers.CharField(help_text="The amount as the file wrote it.")
    rounded = serializers.BooleanField()
    entry_status = serializers.CharField(help_text="BOOK, PDNG, INFO or FUTR")
    reversal = serializers.BooleanField()
    booking_date = serializers.DateField(allow_null=True)
    booking_date_time = TimestampField(allow_null=True)
    value_date = serializers.DateField(allow_null=True)
    value_date_time = TimestampField(allow_null=True)
    reference = serializers.CharField(allow_null=True, help_text="What it is matched by.")
    account_servicer_reference = serializers.CharField(allow_null=True)
    entry_reference = serializers.CharField(allow_null=True)
    end_to_end_id = serializers.CharField(allow_null=True)
    instruction_id = serializers.CharField(allow_null=True)
    transaction_id = serializers.CharField(allow_null=True)
    bank_transaction_code = serializers.DictField(allow_null=True)
    remittance_information = serializers.DictField()
    counterparty = serializers.DictField(allow_null=True)
    additional_info = serializers.CharField(allow_null=True)
    transactions = serializers.ListField(child=serializers.DictField())
    reconciliation = serializers.DictField(
        help_text="status (unreconciled, matched, mismatched, unmatched, excluded), the rule "
        "that matched it or the reasons it did not, the transfers, the run."
    )

    def to_representation(self, line: StatementLine) -> dict[str, Any]:
        reason = line.status_reason
        return {
            "id": line.pk,
            "object": "bank_statement_line",
            "bank_statement": line.statement_id,
            "index": line.index,
            "amount": _money(line.amount_minor, line.currency),
            "credit_debit": line.credit_debit,
            "stated_amount": line.stated_amount,
            "rounded": line.rounded,
            "entry_status": line.entry_status,
            "reversal": line.reversal,
            "booking_date": _date(line.booking_date),
            "booking_date_time": _timestamp(line.booking_date_time),
            "value_date": _date(line.value_date),
            "value_date_time": _timestamp(line.value_date_time),
            "reference": line.reference or None,
            "account_servicer_reference": line.account_servicer_reference or None,
            "entry_reference": line.entry_reference or None,
            "end_to_end_id": line.end_to_end_id or None,
            "instruction_id": line.instruction_id or None,
            "transaction_id": line.transaction_id or None,
            "bank_transaction_code": line.bank_transaction_code,
            "remittance_information": line.remittance,
            "counterparty": line.counterparty,
            "additional_info": line.additional_info or None,
            "transactions": _without_minor(line.transactions),
            "reconciliation": {
                "status": line.status,
                "rule": reason if line.status == StatementLine.Status.MATCHED else None,
                "reasons": reason.split(",")
                if reason and line.status != StatementLine.Status.MATCHED
                else [],
                "transfers": line.transfer_ids,
                "run": line.run_id,
            },
        }


def _finding_out(item: Mapping[str, Any]) -> dict[str, Any]:
    """A mismatched group or an unmatched item, as a run lists it and as the queue holds it."""
    currency = item["currency"] or None
    details = item["details"]
    line_currency = details.get("line_currency") or currency
    transfer_currency = details.get("transfer_currency") or currency
    out = {
        "kind": item["kind"],
        "reasons": list(item["reasons"]),
        "reference": item["reference"] or None,
        "lines": list(item["line_ids"]),
        "transfers": list(item["transfer_ids"]),
        "line_amount": _money(item["line_amount_minor"], line_currency),
        "transfer_amount": _money(item["transfer_amount_minor"], transfer_currency),
        "amount_difference": _money(item["amount_difference_minor"], currency),
        "tolerance": _money(item["tolerance_minor"], currency),
        "date_distance_days": item["date_distance_days"],
        "details": details,
    }
    if "exception" in item:  # a run's item names the exception that covers it
        out["exception"] = item["exception"] or None
    return out


class ReconciliationExceptionOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("reconciliation_exception")
    livemode = serializers.BooleanField()
    bank_statement = serializers.CharField()
    account = serializers.CharField()
    run = serializers.CharField(help_text="The run that found it.")
    last_run = serializers.CharField(help_text="The latest run that still found it.")
    kind = serializers.CharField(help_text="unmatched_line, unmatched_transfer or mismatched")
    status = serializers.ChoiceField(choices=ReconciliationException.Status.choices)
    reasons = serializers.ListField(child=serializers.CharField())
    reference = serializers.CharField(allow_null=True)
    lines = serializers.ListField(child=serializers.CharField())
    transfers = serializers.ListField(child=serializers.CharField())
    line_amount = MoneyField(allow_null=True)
    transfer_amount = MoneyField(allow_null=True)
    amount_difference = MoneyField(allow_null=True, help_text="Lines minus transfers.")
    tolerance = MoneyField(allow_null=True)
    date_distance_days = serializers.IntegerField(allow_null=True)
    details = serializers.DictField()
    note = serializers.CharField()
    resolved_by = serializers.CharField()
    resolved_at = TimestampField(allow_null=True)
    superseded_by = serializers.CharField(allow_null=True)
    metadata = MetadataField()
    created_at = TimestampField()

    def to_representation(self, row: ReconciliationException) -> dict[str, Any]:
        finding = _finding_out(
            {
                "kind": row.kind,
                "reasons": row.reasons.split(","),
                "reference": row.reference,
                "line_ids": row.line_ids,
                "transfer_ids": row.transfer_ids,
                "currency": row.currency,
                "line_amount_minor": row.line_amount_minor,
                "transfer_amount_minor": row.transfer_amount_minor,
                "amount_difference_minor": row.amount_difference_minor,
                "tolerance_minor": row.tolerance_minor,
                "date_distance_days": row.date_distance_days,
                "details": row.details,
            }
        )
        return {
            "id": row.pk,
            "object": "reconciliation_exception",
            "livemode": row.livemode,
            "bank_statement": row.statement_id,
            "account": row.account_id,
            "run": row.run_id,
            "last_run": row.last_run_id,
            **finding,
            "status": row.status,
            "note": row.note,
            "resolved_by": row.resolved_by,
            "resolved_at": _timestamp(row.resolved_at),
            "superseded_by": row.superseded_by_id,
            "metadata": row.metadata,
            "created_at": _timestamp(row.created_at),
        }


def _matched_out(group: Mapping[str, Any]) -> dict[str, Any]:
    currency = group["currency"]
    return {
        "rule": group["rule"],
        "reference": group["reference"],
        "direction": group["direction"],
        "lines": group["line_ids"],
        "transfers": group["transfer_ids"],
        "line_amount": _money(group["line_amount_minor"], currency),
        "transfer_amount": _money(group["transfer_amount_minor"], currency),
        "amount_difference": _money(group["amount_difference_minor"], currency),
        "tolerance": _money(group["tolerance_minor"], currency),
        "date_distance_days": group["date_distance_days"],
    }


def _items(result: Mapping[str, Any], name: str, render: Any) -> dict[str, Any]:
    part = result.get(name) or {"data": [], "has_more": False}
    return {"data": [render(item) for item in part["data"]], "has_more": part["has_more"]}


class ReconciliationRunOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("reconciliation_run")
    livemode = serializers.BooleanField()
    bank_statement = serializers.CharField()
    account = serializers.CharField()
    status = serializers.ChoiceField(choices=ReconciliationRun.Status.choices)
    rules = serializers.DictField()
    transfer_window = serializers.DictField(
        allow_null=True, help_text="The UTC dates of the transfers considered: start, end."
    )
    counts = serializers.DictField()
    exceptions = serializers.DictField(
        help_text="opened, still_open (found again), superseded (no longer found), "
        "already_resolved."
    )
    matched = serializers.DictField(help_text="data (at most 1000 groups) and has_more")
    mismatched = serializers.DictField()
    unmatched_lines = serializers.DictField()
    unmatched_transfers = serializers.DictField()
    created_by = serializers.CharField()
    metadata = MetadataField()
    created_at = TimestampField()

    def to_representation(self, run: ReconciliationRun) -> dict[str, Any]:
        currency = run.statement.currency
        rules = dict(run.rules)
        tolerance = rules.pop("amount_tolerance_minor")
        result = run.result
        return {
            "id": run.pk,
            "object": "reconciliation_run",
            "livemode": run.livemode,
            "bank_statement": run.statement_id,
            "account": run.statement.account_id,
            "status": run.status,
            "rules": {"amount_tolerance": _money(tolerance, currency), **rules},
            "transfer_window": None
            if run.window_start is None
            else {"start": _date(run.window_start), "end": _date(run.window_end)},
            "counts": run.counts,
            "exceptions": run.exception_counts,
            "matched": _items(result, "matched", _matched_out),
            "mismatched": _items(result, "mismatched", _finding_out),
            "unmatched_lines": _items(result, "unmatched_lines", _finding_out),
            "unmatched_transfers": _items(result, "unmatched_transfers", _finding_out),
            "created_by": run.created_by_id,
            "metadata": run.metadata,
            "created_at": _timestamp(run.created_at),
        }


class BankStatementImportOut(serializers.Serializer):
    object = ObjectTypeField("bank_statement_import")
    filename = serializers.CharField()
    file_sha256 = serializers.CharField()
    created = serializers.IntegerField(help_text="Statements stored by this request.")
    existing = serializers.IntegerField(help_text="Statements found stored before.")
    statements = BankStatementOut(many=True)


# --- statements ----------------------------------------------------------------------------------


class BankStatementUpload(serializers.Serializer):
    """The multipart form of an upload (documentation only: the view reads the form itself)."""

    file = serializers.FileField(help_text="A camt.053 (001.02 to 001.08) or CSV file.")
    account = serializers.CharField(
        required=False,
        help_text="The bank_cash account it mirrors; by default the caller's bank_cash account "
        "whose reference is the statement's IBAN or account id.",
    )
    bank = serializers.CharField(
        required=False, help_text="operator: the bank that reported it (a participant id)"
    )
    csv_mapping = serializers.CharField(
        required=False, help_text="A CSV file's mapping: a JSON object (docs/statements.md)."
    )
    metadata = serializers.CharField(required=False, help_text="A JSON object of strings.")


def _json_object(text: str, name: str, code: str) -> dict[str, Any]:
    message = "it is empty"
    if text.strip():
        try:
            return dict(StrictJSONParser().parse(io.BytesIO(text.encode("utf-8"))))
        except errors.InvalidRequest as exc:
            message = exc.message
        except UnicodeError as exc:
            message = str(exc)
    raise errors.InvalidRequest(f"{name} must be a JSON object: {message}", code=code, param=name)


class BankStatementListView(HubAPIView):
    access = {
        "GET": Rule(STATEMENT_ROLES, "bank_statements:read"),
        "POST": Rule(STATEMENT_ROLES, "bank_statements:write"),
    }
    parser_classes = [MultiPartParser]

    @extend_schema(
        parameters=[
            *LIST_PARAMETERS,
            OpenApiParameter("account", str, description="the mirror account"),
            OpenApiParameter("bank", str, description="operator: the reporting bank"),
        ],
        responses=BankStatementOut(many=True),
        operation_id="bank_statements_list",
    )
    def get(self, request: Request) -> Response:
        queryset = bank_statements_visible(actor=self.actor)
        account = request.query_params.get("account")
        if account:
            queryset = queryset.filter(account_id=account)
        bank = request.query_params.get("bank")
        if bank:
            queryset = queryset.filter(bank_id=bank)
        rows, has_more = paginate(request, queryset)
        return Response(list_body(BankStatementOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request={"multipart/form-data": BankStatementUpload},
        responses={201: BankStatementImportOut, 200: BankStatementImportOut},
        operation_id="bank_statements_import",
        description="201 when a statement of the file is new; 200 when every statement was "
        "stored before (same account, same content): nothing changes. 400 statement_invalid "
        "for a file that cannot be read, with the reason and where; 413 above 1 MiB.",
    )
    def post(self, request: Request) -> Response:
        upload, values = multipart_upload(request, fields=FORM_FIELDS[1:], what="the statement")
        mapping = values.get("csv_mapping")
        metadata = values.get("metadata")
        result = bank_statement_import(
            actor=self.actor,
            data=upload.read(),
            filename=upload.name or "",
            account_id=values.get("account"),
            bank_id=values.get("bank"),
            csv_mapping=None
            if mapping is None
            else _json_object(mapping, "csv_mapping", "csv_mapping_invalid"),
            metadata=None
            if metadata is None
            else MetadataField().to_internal_value(
                _json_object(metadata, "metadata", "parameter_invalid")
            ),
        )
        return Response(self._out(result), status=201 if result.created else 200)

    def _out(self, result: StatementImport) -> dict[str, Any]:
        ids = [item.statement.pk for item in result.statements]
        found = bank_statements_visible(actor=self.actor).in_bulk(ids)
        return {
            "object": "bank_statement_import",
            "filename": result.filename,
            "file_sha256": result.file_sha256,
            "created": result.created,
            "existing": len(ids) - result.created,
            "statements": BankStatementOut([found[pk] for pk in ids], many=True).data,
        }


class BankStatementDetailView(HubAPIView):
    access = {"GET": Rule(STATEMENT_ROLES, "bank_statements:read")}

    @extend_schema(responses=BankStatementOut, operation_id="bank_statements_retrieve")
    def get(self, request: Request, bank_statement_id: str) -> Response:
        statement = bank_statement_get(actor=self.actor, statement_id=bank_statement_id)
        return Response(BankStatementOut(statement).data)


def _paginate_in_order(request: Request, queryset: Any) -> tuple[list[Any], bool]:
    """Pages in the statement's own order (line ids are made in entry order), with the same
    parameters as every list."""
    return page(
        queryset,
        limit=limit_param(request),
        after=_line_cursor(request, "starting_after"),
        before=_line_cursor(request, "ending_before"),
        newest_first=False,
    )


def _line_cursor(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if not value or len(value) > 40 or not value.replace("_", "").isalnum():
        raise errors.InvalidRequest(
            f"{name} must be a line id.", code="parameter_invalid", param=name
        )
    return value


class BankStatementLinesView(HubAPIView):
    access = {"GET": Rule(STATEMENT_ROLES, "bank_statements:read")}

    @extend_schema(
        parameters=[
            *LIST_PARAMETERS,
            OpenApiParameter("status", str, enum=StatementLine.Status.values),
        ],
        responses=StatementLineOut(many=True),
        operation_id="bank_statements_lines",
        description="The statement's entries in the statement's order.",
    )
    def get(self, request: Request, bank_statement_id: str) -> Response:
        statement = bank_statement_get(actor=self.actor, statement_id=bank_statement_id)
        queryset = statement_lines(statement=statement)
        status = choice_param(request, "status", StatementLine.Status.values)
        if status is not None:
            queryset = queryset.filter(status=status)
        rows, has_more = _paginate_in_order(request, queryset)
        return Response(list_body(StatementLineOut(rows, many=True).data, has_more, request.path))


# --- reconciliation ------------------------------------------------------------------------------


class BankStatementReconcileView(HubAPIView):
    access = {"POST": Rule(OPERATOR, "reconciliation:write")}

    class Input(StrictSerializer):
        amount_tolerance = MoneyField(
            required=False, allow_zero=True, help_text="In the statement's currency; default 0."
        )
        amount_tolerance_bps = serializers.IntegerField(
            min_value=0,
            max_value=MAX_BPS,
            required=False,
            default=0,
            help_text="Basis points of the larger side; the larger tolerance applies.",
        )
        date_window_days = serializers.IntegerField(
            min_value=0, max_value=MAX_WINDOW_DAYS, required=False, default=2
        )
        one_to_many = serializers.BooleanField(required=False, default=True)
        many_to_one = serializers.BooleanField(required=False, default=True)
        match_without_reference = serializers.BooleanField(required=False, default=True)
        metadata = MetadataField(required=False)

    @extend_schema(
        request=Input,
        responses={201: ReconciliationRunOut},
        operation_id="bank_statements_reconcile",
    )
    def post(self, request: Request, bank_statement_id: str) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        statement = bank_statement_get(actor=self.actor, statement_id=bank_statement_id)
        tolerance = values.get("amount_tolerance")
        if tolerance is not None and tolerance[1] != statement.currency:
            raise errors.InvalidRequest(
                f"The statement is in {statement.currency}.",
                code="currency_mismatch",
                param="amount_tolerance.currency",
            )
        rules = MatchRules(
            amount_tolerance_minor=0 if tolerance is None else tolerance[0],
            amount_tolerance_bps=values["amount_tolerance_bps"],
            date_window_days=values["date_window_days"],
            one_to_many=values["one_to_many"],
            many_to_one=values["many_to_one"],
            match_without_reference=values["match_without_reference"],
        )
        run = reconciliation_run(
            actor=self.actor,
            statement_id=statement.pk,
            rules=rules,
            metadata=values.get("metadata"),
        )
        return Response(ReconciliationRunOut(run).data, status=201)


class ReconciliationRunDetailView(HubAPIView):
    access = {"GET": Rule(OPERATOR, "reconciliation:read")}

    @extend_schema(responses=ReconciliationRunOut, operation_id="reconciliation_runs_retrieve")
    def get(self, request: Request, run_id: str) -> Response:
        return Response(
            ReconciliationRunOut(reconciliation_run_get(actor=self.actor, run_id=run_id)).data
        )


class ReconciliationExceptionListView(HubAPIView):
    access = {"GET": Rule(OPERATOR, "reconciliation:read")}

    @extend_schema(
        parameters=[
            *LIST_PARAMETERS,
            OpenApiParameter("status", str, enum=ReconciliationException.Status.values),
            OpenApiParameter("kind", str, enum=ReconciliationException.Kind.values),
            OpenApiParameter("bank_statement", str),
            OpenApiParameter("account", str),
        ],
        responses=ReconciliationExceptionOut(many=True),
        operation_id="reconciliation_exceptions_list",
    )
    def get(self, request: Request) -> Response:
        queryset = reconciliation_exceptions_visible(actor=self.actor)
        status = choice_param(request, "status", ReconciliationException.Status.values)
        if status is not None:
            queryset = queryset.filter(status=status)
        kind = choice_param(request, "kind", ReconciliationException.Kind.values)
        if kind is not None:
            queryset = queryset.filter(kind=kind)
        statement = request.query_params.get("bank_statement")
        if statement:
            queryset = queryset.filter(statement_id=statement)
        account = request.query_params.get("account")
        if account:
            queryset = queryset.filter(account_id=account)
        rows, has_more = paginate(request, queryset)
        return Response(
            list_body(ReconciliationExceptionOut(rows, many=True).data, has_more, request.path)
        )


class ReconciliationExceptionResolveView(HubAPIView):
    access = {"POST": Rule(OPERATOR, "reconciliation:write")}

    class Input(StrictSerializer):
        note = serializers.CharField(max_length=2000, help_text="What was found and done.")

    @extend_schema(
        request=Input,
        responses=ReconciliationExceptionOut,
        operation_id="reconciliation_exceptions_resolve",
    )
    def post(self, request: Request, exception_id: str) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        reconciliation_exception_get(actor=self.actor, exception_id=exception_id)
        row = reconciliation_exception_resolve(
            actor=self.actor, exception_id=exception_id, note=data.validated_data["note"]
        )
        return Response(ReconciliationExceptionOut(row).data)
