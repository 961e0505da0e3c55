"""Settlement runs and fee rules: the operator runs an institution's settlement (beat does it
every day after the cutoff) and sets the hub's fees; an institution reads its own runs."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hub import errors
from hub.api.base import HubAPIView
from hub.api.exports import ExportView, csv_response
from hub.api.pagination import LIST_PARAMETERS, choice_param, list_body, paginate
from hub.api.permissions import Rule
from hub.api.serializers import MoneyField, ObjectTypeField, StrictSerializer, TimestampField
from hub.models import Role
from hub.money import format_amount, money_payload
from hub.principal import Principal
from settlement.models_payins import FeeRule, SettlementRun
from settlement.runs import (
    fee_rule_payload,
    fee_rule_set,
    instruction_of,
    run_payload,
    run_report,
    settlement_run_start,
)

OPERATOR = frozenset({Role.OPERATOR})
RUN_READERS = frozenset({Role.PAYMENT_INSTITUTION, Role.OPERATOR})


def runs_visible(*, actor: Principal) -> QuerySet[SettlementRun]:
    queryset = SettlementRun.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.filter(institution=actor.participant)


class InstructionOut(serializers.Serializer):
    payer = serializers.CharField(help_text="A participant id, or `hub`.")
    payee = serializers.CharField()
    amount = MoneyField()
    value_date = serializers.DateField()
    reference = serializers.CharField(help_text="The run's id: quote it on the transfer.")


class RunOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("settlement_run")
    livemode = serializers.BooleanField()
    institution = serializers.CharField()
    currency = serializers.CharField()
    business_date = serializers.DateField()
    time_zone = serializers.CharField()
    cutoff_at = TimestampField()
    status = serializers.ChoiceField(choices=SettlementRun.Status.choices)
    payins_count = serializers.IntegerField()
    gross = MoneyField()
    refunds_netted = MoneyField()
    adjustments_count = serializers.IntegerField()
    adjustments = MoneyField(help_text="Signed: refunds of settled payins count negative.")
    fees = MoneyField()
    net = MoneyField(help_text="What the institution owes the hub (negative: the hub owes it).")
    direction = serializers.ChoiceField(choices=SettlementRun.Direction.choices)
    instruction = InstructionOut(allow_null=True)
    created_at = TimestampField()
    completed_at = TimestampField(allow_null=True)

    def to_representation(self, run: SettlementRun) -> dict[str, Any]:
        stamp = TimestampField().to_representation
        return {
            **run_payload(run),
            "object": "settlement_run",
            "livemode": run.livemode,
            "time_zone": run.time_zone,
            "cutoff_at": stamp(run.cutoff_at),
            "adjustments_count": run.adjustments_count,
            "instruction": instruction_of(run),
            "created_at": stamp(run.created_at),
            "completed_at": None if run.completed_at is None else stamp(run.completed_at),
        }


class RunListView(HubAPIView):
    access = {
        "GET": Rule(RUN_READERS, "settlement_runs:read"),
        "POST": Rule(OPERATOR, "settlement_runs:write"),
    }

    class Input(StrictSerializer):
        institution = serializers.CharField(max_length=40)
        currency = serializers.CharField(max_length=3)
        business_date = serializers.DateField()
        close_early = serializers.BooleanField(required=False, default=False)

    @extend_schema(
        parameters=[*LIST_PARAMETERS, OpenApiParameter("status", str)],
        responses=RunOut(many=True),
        operation_id="settlement_runs_list",
    )
    def get(self, request: Request) -> Response:
        queryset = runs_visible(actor=self.actor)
        status = choice_param(request, "status", SettlementRun.Status.values)
        if status:
            queryset = queryset.filter(status=status)
        rows, has_more = paginate(request, queryset)
        return Response(list_body(RunOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input,
        responses={202: RunOut, 200: RunOut},
        operation_id="settlement_runs_create",
        description="Starts the run of an institution, currency and business day once its "
        "cutoff has passed (409 cutoff_not_passed before); a worker executes it. 202 for a new "
        "run; 200 with the run as it stands when it was started before (nothing changes). In "
        "test mode, `close_early` ends a day that is still open at this moment (its run takes "
        "what succeeded before now; 400 close_early_live with a live key).",
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        run, created = settlement_run_start(
            institution_id=values["institution"],
            currency=values["currency"],
            business_date=values["business_date"],
            livemode=self.actor.livemode,
            close_early=values["close_early"],
        )
        return Response(RunOut(run).data, status=202 if created else 200)


class RunDetailView(HubAPIView):
    access = {"GET": Rule(RUN_READERS, "settlement_runs:read")}

    @extend_schema(responses=RunOut, operation_id="settlement_runs_retrieve")
    def get(self, request: Request, run_id: str) -> Response:
        run = runs_visible(actor=self.actor).filter(pk=run_id).first()
        if run is None:
            raise errors.NotFound()
        return Response(RunOut(run).data)


REPORT_COLUMNS = (
    "merchant",
    "payins_count",
    "gross",
    "refunds_netted",
    "fees",
    "credited",
    "adjustments_count",
    "adjustments",
)
AMOUNT_COLUMNS = frozenset({"gross", "refunds_netted", "fees", "credited", "adjustments"})


class RunReportView(ExportView):
    access = {"GET": Rule(RUN_READERS, "settlement_runs:read")}

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["json", "csv"])],
        operation_id="settlement_runs_report",
        description="The completed run by merchant (409 run_not_completed before).",
    )
    def get(self, request: Request, run_id: str) -> Any:
        run = runs_visible(actor=self.actor).filter(pk=run_id).first()
        if run is None:
            raise errors.NotFound()
        fmt = self.file_format(request)
        if run.status != SettlementRun.Status.COMPLETED:
            raise errors.Conflict("The run is still running.", code="run_not_completed")
        lines = run_report(run)
        if fmt == "json":
            return Response(
                {
                    "object": "settlement_report",
                    "run": RunOut(run).data,
                    "lines": [
                        {
                            key: money_payload(value, run.currency)
                            if key in AMOUNT_COLUMNS
                            else value
                            for key, value in line.items()
                        }
                        for line in lines
                    ],
                }
            )
        return csv_response(
            [*REPORT_COLUMNS, "currency"],
            (
                [
                    format_amount(line[key], run.currency) if key in AMOUNT_COLUMNS else line[key]
                    for key in REPORT_COLUMNS
                ]
                + [run.currency]
                for line in lines
            ),
            f"{run.pk}.csv",
        )


class FeeRuleOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("fee_rule")
    livemode = serializers.BooleanField()
    merchant = serializers.CharField(allow_null=True, help_text="null: the default rule.")
    currency = serializers.CharField()
    percent_bps = serializers.IntegerField()
    fixed = MoneyField()
    rounding = serializers.CharField()
    created_at = TimestampField()
    updated_at = TimestampField()

    def to_representation(self, rule: FeeRule) -> dict[str, Any]:
        return fee_rule_payload(rule)


class FeeRuleListView(HubAPIView):
    access = {
        "GET": Rule(OPERATOR, "settlement_runs:read"),
        "POST": Rule(OPERATOR, "settlement_runs:write"),
    }

    class Input(StrictSerializer):
        merchant = serializers.CharField(max_length=40, required=False, allow_null=True)
        percent_bps = serializers.IntegerField(min_value=0, max_value=10_000)
        fixed = MoneyField(allow_zero=True)

    @extend_schema(
        parameters=LIST_PARAMETERS,
        responses=FeeRuleOut(many=True),
        operation_id="fee_rules_list",
    )
    def get(self, request: Request) -> Response:
        queryset = FeeRule.objects.filter(livemode=self.actor.livemode)
        rows, has_more = paginate(request, queryset)
        return Response(list_body(FeeRuleOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=Input,
        responses={201: FeeRuleOut, 200: FeeRuleOut},
        operation_id="fee_rules_set",
        description="Sets the fee on payins in the currency of `fixed`: `percent_bps` of the "
        "settled amount, rounded half to even, plus `fixed`. 201 for a new rule, 200 when it "
        "replaced the rule of that merchant (or the default) and currency.",
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        fixed, currency = values["fixed"]
        rule, created = fee_rule_set(
            livemode=self.actor.livemode,
            merchant_id=values.get("merchant"),
            currency=currency,
            percent_bps=values["percent_bps"],
            fixed=fixed,
        )
        return Response(FeeRuleOut(rule).data, status=201 if created else 200)
