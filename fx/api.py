"""FX endpoints: reference rates and their history, quotes, conversions, merchants' margin tiers,
auto-conversion and the operator's daily report."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from fx.auto import auto_conversion_set
from fx.models import AutoConversion, FxConversion, FxQuote
from fx.quotes import conversion_create, quote_create, rounding_of, tier_set
from fx.rates import check_pair, latest_rate, rate_history, reference_rate
from fx.reports import fx_daily_report, report_lines_as_money
from hub import errors
from hub.api.base import HubAPIView
from hub.api.exports import ExportView, csv_response
from hub.api.pagination import LIST_PARAMETERS, list_body, paginate
from hub.api.permissions import Rule
from hub.api.serializers import (
    MetadataField,
    MoneyField,
    ObjectTypeField,
    StrictSerializer,
    TimestampField,
    timestamp,
)
from hub.models import Role
from hub.money import format_amount, money_payload, parse_amount
from hub.principal import Principal

MERCHANT = frozenset({Role.MERCHANT})
OPERATOR = frozenset({Role.OPERATOR})
TRADERS = frozenset({Role.MERCHANT, Role.OPERATOR})
EVERYONE = frozenset(Role.values)
REFERENCE = r"^[A-Za-z0-9_.:-]{1,64}$"


# Days a report can be asked for: the ECB's data begins on the first, and the day after the
# last must still be a date.
REPORT_DAYS = (date(1999, 1, 4), date(9998, 12, 31))


def date_param(
    request: Request,
    name: str,
    default: date | None = None,
    bounds: tuple[date, date] | None = None,
) -> date:
    raw = request.query_params.get(name)
    if raw is None and default is not None:
        return default
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw or ""):
            raise ValueError(raw)
        value = date.fromisoformat(raw or "")
    except ValueError:
        raise errors.InvalidRequest(
            f"{name} is a date, YYYY-MM-DD.", code="parameter_invalid", param=name
        ) from None
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise errors.InvalidRequest(
            f"{name} is from {bounds[0].isoformat()} to {bounds[1].isoformat()}.",
            code="parameter_invalid",
            param=name,
        )
    return value


# --- rates ---------------------------------------------------------------------------------------


class RateView(HubAPIView):
    access = {"GET": Rule(EVERYONE, "fx:read")}

    @extend_schema(
        parameters=[
            OpenApiParameter("base", str, required=True),
            OpenApiParameter("quote", str, required=True),
            OpenApiParameter(
                "date", str, description="YYYY-MM-DD; default: the latest rate at hand"
            ),
        ],
        operation_id="fx_rates_retrieve",
        description="Units of `quote` per one `base`: the ECB reference rate (a cross rate "
        "through EUR) of `date`, or of the last business day before it; `date` in the answer is "
        "the day whose rate was used.",
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        base, quote = check_pair(params.get("base"), params.get("quote"), params=("base", "quote"))
        if "date" in params:
            rate = reference_rate(base=base, quote=quote, on=date_param(request, "date"))
        else:  # the latest rate the data at hand has
            rate = latest_rate(base=base, quote=quote, on=timezone.now().date())
        return Response(
            {
                "object": "fx_rate",
                "base": base,
                "quote": quote,
                "rate": str(rate.rate),
                "date": rate.date.isoformat(),
                "source": rate.source,
            }
        )


class RateHistoryView(ExportView):
    access = {"GET": Rule(EVERYONE, "fx:read")}

    @extend_schema(
        parameters=[
            OpenApiParameter("base", str, required=True),
            OpenApiParameter("quote", str, required=True),
            OpenApiParameter("from", str, required=True),
            OpenApiParameter("to", str, required=True),
            OpenApiParameter("format", str, enum=["json", "csv"]),
        ],
        operation_id="fx_rates_history",
        description="One rate per calendar day from `from` to `to` (at most 366 days), each "
        "with the date whose rate it is.",
    )
    def get(self, request: Request) -> Any:
        params = request.query_params
        base, quote = check_pair(params.get("base"), params.get("quote"), params=("base", "quote"))
        fmt = self.file_format(request)
        start, end = date_param(request, "from"), date_param(request, "to")
        history = list(rate_history(base=base, quote=quote, start=start, end=end))
        rows = [
            (date.fromordinal(start.toordinal() + n).isoformat(), rate)
            for n, rate in enumerate(history)
        ]
        if fmt == "csv":
            return csv_response(
                ["day", "base", "quote", "rate", "rate_date", "source"],
                [[day, base, quote, str(r.rate), r.date.isoformat(), r.source] for day, r in rows],
                f"{base}{quote}-{start.isoformat()}-{end.isoformat()}.csv",
            )
        return Response(
            {
                "object": "list",
                "data": [
                    {
                        "object": "fx_rate",
                        "day": day,
                        "base": base,
                        "quote": quote,
                        "rate": str(r.rate),
                        "date": r.date.isoformat(),
                        "source": r.source,
                    }
                    for day, r in rows
                ],
                "has_more": False,
            }
        )


# --- quotes --------------------------------------------------------------------------------------


def quotes_visible(*, actor: Principal) -> Any:
    queryset = FxQuote.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.filter(merchant=actor.participant)


class QuoteOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("fx_quote")
    livemode = serializers.BooleanField()
    merchant = serializers.CharField()
    sell = MoneyField(help_text="What the merchant pays, margin included.")
    buy = MoneyField()
    fixed_side = serializers.ChoiceField(choices=FxQuote.Fixed.choices)
    reference_rate = serializers.DictField(help_text="rate, source, date")
    margin = serializers.DictField(help_text="bps, tier, amount (in the sell currency)")
    all_in_rate = serializers.CharField(
        help_text="buy / sell, in major units, to 24 significant digits"
    )
    rounding = serializers.DictField()
    orders = serializers.ListField(allow_null=True)
    status = serializers.ChoiceField(choices=FxQuote.Status.choices)
    expires_at = TimestampField()
    created_at = TimestampField()

    def to_representation(self, quote: FxQuote) -> dict[str, Any]:
        sell, buy = quote.sell_currency, quote.buy_currency
        return {
            "id": quote.pk,
            "object": "fx_quote",
            "livemode": quote.livemode,
            "merchant": quote.merchant_id,
            "sell": money_payload(quote.sell_amount, sell),
            "buy": money_payload(quote.buy_amount, buy),
            "fixed_side": quote.fixed_side,
            "reference_rate": {
                "rate": quote.reference_rate,
                "source": quote.rate_source,
                "date": quote.rate_date.isoformat(),
            },
            "margin": {
                "bps": quote.margin_bps,
                "tier": quote.tier,
                "amount": money_payload(quote.margin_amount, sell),
            },
            "all_in_rate": str(quote.all_in_rate),
            "rounding": rounding_of(quote),
            "orders": None
            if quote.orders is None
            else [
                {
                    "reference": order["reference"],
                    "sell": money_payload(order["sell"], sell),
                    "margin": money_payload(order["margin"], sell),
                    "buy": money_payload(order["buy"], buy),
                }
                for order in quote.orders
            ],
            "status": quote.status,
            "expires_at": timestamp(quote.expires_at),
            "created_at": timestamp(quote.created_at),
        }


class CurrencyAmountIn(StrictSerializer):
    """``{"currency": "CNY"}`` or ``{"currency": "CNY", "amount": "100.00"}``."""

    currency = serializers.CharField(max_length=3)
    amount = serializers.CharField(max_length=40, required=False)


class OrderIn(StrictSerializer):
    reference = serializers.RegexField(REFERENCE)
    amount = serializers.CharField(max_length=40)


class QuoteListView(HubAPIView):
    access = {"POST": Rule(MERCHANT, "fx:write")}

    class Input(StrictSerializer):
        sell = CurrencyAmountIn()
        buy = CurrencyAmountIn()
        orders = OrderIn(many=True, required=False)
        lock_seconds = serializers.IntegerField()

    @extend_schema(
        request=Input,
        responses={201: QuoteOut},
        operation_id="fx_quotes_create",
        description="`sell` and `buy` each name a currency; exactly one of them carries an "
        "`amount` (the fixed side), or `orders` lists the sell amounts of a batch. The rate "
        "is locked for `lock_seconds`.",
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        sell, buy = values["sell"], values["buy"]
        sell_currency, buy_currency = check_pair(
            sell["currency"], buy["currency"], params=("sell.currency", "buy.currency")
        )
        sell_amount = (
            parse_amount(sell["amount"], sell_currency, param="sell.amount")
            if "amount" in sell
            else None
        )
        buy_amount = (
            parse_amount(buy["amount"], buy_currency, param="buy.amount")
            if "amount" in buy
            else None
        )
        orders = (
            [
                (
                    order["reference"],
                    parse_amount(order["amount"], sell_currency, param=f"orders[{n}].amount"),
                )
                for n, order in enumerate(values["orders"])
            ]
            if "orders" in values
            else None
        )
        quote = quote_create(
            actor=self.actor,
            sell_currency=sell_currency,
            buy_currency=buy_currency,
            sell_amount=sell_amount,
            buy_amount=buy_amount,
            orders=orders,
            lock_seconds=values["lock_seconds"],
        )
        return Response(QuoteOut(quote).data, status=201)


class QuoteDetailView(HubAPIView):
    access = {"GET": Rule(TRADERS, "fx:read")}

    @extend_schema(responses=QuoteOut, operation_id="fx_quotes_retrieve")
    def get(self, request: Request, quote_id: str) -> Response:
        quote = quotes_visible(actor=self.actor).filter(pk=quote_id).first()
        if quote is None:
            raise errors.NotFound()
        return Response(QuoteOut(quote).data)


# --- conversions ---------------------------------------------------------------------------------


def conversions_visible(*, actor: Principal) -> Any:
    queryset = FxConversion.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.filter(merchant=actor.participant)


class ConversionOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("fx_conversion")
    livemode = serializers.BooleanField()
    merchant = serializers.CharField()
    quote = serializers.CharField()
    sell_account = serializers.CharField()
    buy_account = serializers.CharField()
    sell = MoneyField()
    margin = MoneyField()
    buy = MoneyField()
    transfers = serializers.ListField(child=serializers.CharField())
    reference = serializers.CharField()
    metadata = MetadataField()
    created_at = TimestampField()

    def to_representation(self, conversion: FxConversion) -> dict[str, Any]:
        transfers = [f"{conversion.pk}-sell", f"{conversion.pk}-buy"]
        if conversion.margin_amount:
            transfers.append(f"{conversion.pk}-margin")
        return {
            "id": conversion.pk,
            "object": "fx_conversion",
            "livemode": conversion.livemode,
            "merchant": conversion.merchant_id,
            "quote": conversion.quote_id,
            "sell_account": conversion.sell_account_id,
            "buy_account": conversion.buy_account_id,
            "sell": money_payload(conversion.sell_amount, conversion.sell_currency),
            "margin": money_payload(conversion.margin_amount, conversion.sell_currency),
            "buy": money_payload(conversion.buy_amount, conversion.buy_currency),
            "transfers": transfers,
            "reference": conversion.reference,
            "metadata": conversion.metadata,
            "created_at": timestamp(conversion.created_at),
        }


class ConversionListView(HubAPIView):
    access = {"GET": Rule(TRADERS, "fx:read"), "POST": Rule(MERCHANT, "fx:write")}

    class Input(StrictSerializer):
        quote = serializers.RegexField(r"^quo_[0-9a-z]{26}$")
        sell_account = serializers.CharField(max_length=40)
        buy_account = serializers.CharField(max_length=40)
        reference = serializers.RegexField(REFERENCE)
        metadata = MetadataField(required=False)

    @extend_schema(
        parameters=LIST_PARAMETERS,
        responses=ConversionOut(many=True),
        operation_id="fx_conversions_list",
    )
    def get(self, request: Request) -> Response:
        rows, has_more = paginate(request, conversions_visible(actor=self.actor))
        return Response(list_body(ConversionOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input,
        responses={201: ConversionOut, 200: ConversionOut},
        operation_id="fx_conversions_create",
        description="Executes a live quote of the caller's, once: 409 quote_used, "
        "quote_expired; 400 quote_missing for another merchant's. The same reference again "
        "answers 200 with the conversion it made.",
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        conversion, created = conversion_create(
            actor=self.actor,
            quote_id=values["quote"],
            sell_account_id=values["sell_account"],
            buy_account_id=values["buy_account"],
            reference=values["reference"],
            metadata=values.get("metadata"),
        )
        return Response(ConversionOut(conversion).data, status=201 if created else 200)


class ConversionDetailView(HubAPIView):
    access = {"GET": Rule(TRADERS, "fx:read")}

    @extend_schema(responses=ConversionOut, operation_id="fx_conversions_retrieve")
    def get(self, request: Request, conversion_id: str) -> Response:
        conversion = conversions_visible(actor=self.actor).filter(pk=conversion_id).first()
        if conversion is None:
            raise errors.NotFound()
        return Response(ConversionOut(conversion).data)


# --- tiers, auto-conversion, the report ----------------------------------------------------------


class TierView(HubAPIView):
    access = {"POST": Rule(OPERATOR, "fx:write")}

    class Input(StrictSerializer):
        merchant = serializers.CharField(max_length=40)
        tier = serializers.CharField(max_length=32)

    @extend_schema(request=Input, operation_id="fx_tiers_set")
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        found = tier_set(
            merchant_id=data.validated_data["merchant"], tier=data.validated_data["tier"]
        )
        return Response({"object": "fx_tier", "merchant": found.merchant_id, "tier": found.tier})


class AutoConversionOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("fx_auto_conversion")
    from_account = serializers.CharField()
    to_account = serializers.CharField()
    enabled = serializers.BooleanField()

    def to_representation(self, rule: AutoConversion) -> dict[str, Any]:
        return {
            "id": rule.pk,
            "object": "fx_auto_conversion",
            "livemode": rule.livemode,
            "merchant": rule.merchant_id,
            "from_account": rule.from_account_id,
            "to_account": rule.to_account_id,
            "enabled": rule.enabled,
            "created_at": timestamp(rule.created_at),
            "updated_at": timestamp(rule.updated_at),
        }


class AutoConversionListView(HubAPIView):
    access = {"GET": Rule(TRADERS, "fx:read"), "POST": Rule(MERCHANT, "fx:write")}

    class Input(StrictSerializer):
        from_account = serializers.CharField(max_length=40)
        to_account = serializers.CharField(max_length=40)
        enabled = serializers.BooleanField(required=False, default=True)

    @extend_schema(parameters=LIST_PARAMETERS, operation_id="fx_auto_conversions_list")
    def get(self, request: Request) -> Response:
        queryset = AutoConversion.objects.filter(livemode=self.actor.livemode)
        if not self.actor.is_operator:
            queryset = queryset.filter(merchant=self.actor.participant)
        rows, has_more = paginate(request, queryset)
        return Response(list_body(AutoConversionOut(rows, many=True).data, has_more, request.path))

    @extend_schema(request=Input, operation_id="fx_auto_conversions_set")
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        rule, created = auto_conversion_set(
            actor=self.actor,
            from_account_id=values["from_account"],
            to_account_id=values["to_account"],
            enabled=values["enabled"],
        )
        return Response(AutoConversionOut(rule).data, status=201 if created else 200)


class DailyReportView(ExportView):
    access = {"GET": Rule(OPERATOR, "fx:read")}

    @extend_schema(
        parameters=[
            OpenApiParameter("date", str, required=True, description="YYYY-MM-DD, Asia/Shanghai"),
            OpenApiParameter("format", str, enum=["json", "csv"]),
        ],
        operation_id="fx_reports_daily",
    )
    def get(self, request: Request) -> Any:
        fmt = self.file_format(request)
        report = fx_daily_report(
            day=date_param(request, "date", bounds=REPORT_DAYS), livemode=self.actor.livemode
        )
        if fmt == "csv":
            columns = list(report.lines[0]) if report.lines else ["currency"]
            return csv_response(
                columns,
                [
                    [
                        format_amount(line[c], line["currency"])
                        if isinstance(line[c], int) and c != "conversions_selling"
                        else line[c]
                        for c in columns
                    ]
                    for line in report.lines
                ],
                f"fx-{report.day.isoformat()}.csv",
            )
        return Response(
            {
                "object": "fx_daily_report",
                "date": report.day.isoformat(),
                "lines": report_lines_as_money(report),
                "totals": report.totals,
            }
        )
