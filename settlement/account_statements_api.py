"""``GET /v1/accounts/{id}/statement``: an account's statement for a period, as JSON, CSV or
XLSX (docs/account_statements.md)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request

from hub.api.exports import ExportView, file_response
from hub.api.permissions import Rule
from settlement.account_statements import (
    DEFAULT_TIME_ZONES,
    FORMATS,
    MAX_PERIOD,
    MAX_ROWS,
    MAX_XLSX_ROWS,
    account_statement_build,
    statement_format,
    statement_period,
    statement_render,
    statement_row_limit,
)
from settlement.api import LEDGER_ROLES
from settlement.selectors import account_get

_ZONES = ", ".join(f"{zone} for {currency}" for currency, zone in DEFAULT_TIME_ZONES.items())


class AccountStatementView(ExportView):
    access = {"GET": Rule(LEDGER_ROLES, "accounts:read")}

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "from",
                str,
                description="Inclusive: a date (YYYY-MM-DD, its first moment in tz) or an ISO 8601 "
                "time with its offset. Default: the start of the calendar month that `to` closes.",
            ),
            OpenApiParameter(
                "to",
                str,
                description="Exclusive, as `from`. Default: now. "
                f"At most {MAX_PERIOD.days} days after `from`.",
            ),
            OpenApiParameter(
                "tz",
                str,
                description=f"IANA time zone for dates and the spreadsheets' times; default: "
                f"{_ZONES}, UTC otherwise.",
            ),
            OpenApiParameter("format", str, enum=list(FORMATS), description="Default: json."),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="object: account_statement"
            ),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY),
            (
                200,
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ): OpenApiResponse(OpenApiTypes.BINARY),
        },
        description=f"Opening and closing balances and one row per transfer, at most "
        f"{MAX_ROWS:,} rows ({MAX_XLSX_ROWS:,} in XLSX).",
        operation_id="accounts_statement",
    )
    def get(self, request: Request, account_id: str) -> Any:
        # The account first: another participant's is 404 whatever the parameters say.
        account = account_get(actor=self.actor, account_id=account_id)
        params = request.query_params
        fmt = statement_format(params.get("format"))
        period = statement_period(
            currency=account.currency,
            raw_from=params.get("from"),
            raw_to=params.get("to"),
            raw_tz=params.get("tz"),
            now=timezone.now(),
        )
        statement = account_statement_build(
            account=account, period=period, max_rows=statement_row_limit(fmt)
        )
        body, content_type, filename = statement_render(statement, fmt)
        # A statement is the merchant's books: no shared cache keeps a copy.
        return file_response(body, content_type, filename)
