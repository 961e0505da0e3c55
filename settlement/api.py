"""Ledger endpoints: accounts, their balances (now and at a past time), transfers one by one or
in batches of up to 8,000, and the posting and voiding of pending transfers."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hub import errors
from hub.api.base import HubAPIView
from hub.api.pagination import (
    LIST_PARAMETERS,
    choice_param,
    limit_param,
    list_body,
    page,
    paginate,
)
from hub.api.permissions import Rule
from hub.api.serializers import (
    MetadataField,
    MoneyField,
    ObjectTypeField,
    StrictSerializer,
    TimestampField,
)
from hub.models import Role
from hub.money import format_amount
from settlement.ledger import (
    MAX_BATCH,
    MAX_TIMEOUT_SECONDS,
    ItemResult,
    TransferSpec,
    account_balances_at,
    account_create,
    check_transfer_id,
    transfer_create,
    transfer_post,
    transfer_void,
    transfers_create_batch,
)
from settlement.models import Account, Transfer, on_normal_side
from settlement.selectors import account_get, accounts_visible, transfer_get, transfers_visible

# Every role but the regulator, which audits receipts, not the hub's books.
LEDGER_ROLES = frozenset(set(Role.values) - {Role.REGULATOR})
ACCOUNT_WRITERS = frozenset({Role.OPERATOR, Role.MERCHANT})
OPERATOR = frozenset({Role.OPERATOR})


# --- output --------------------------------------------------------------------------------------


class BalancesOut(serializers.Serializer):
    currency = serializers.CharField()
    posted = serializers.CharField(help_text="On the account's normal side, in major units.")
    pending = serializers.CharField(help_text="What pending transfers would add if posted.")
    available = serializers.CharField(help_text="Posted, less what pending transfers hold.")
    debits_posted = serializers.CharField()
    credits_posted = serializers.CharField()
    debits_pending = serializers.CharField()
    credits_pending = serializers.CharField()


def balances(account: Account, columns: tuple[int, int, int, int] | None = None) -> dict[str, str]:
    dp, cp, dpe, cpe = columns or account.balance_columns
    posted, pending, available = on_normal_side(account.normal_balance, dp, cp, dpe, cpe)
    currency = account.currency
    return {
        "currency": currency,
        "posted": format_amount(posted, currency),
        "pending": format_amount(pending, currency),
        "available": format_amount(available, currency),
        "debits_posted": format_amount(dp, currency),
        "credits_posted": format_amount(cp, currency),
        "debits_pending": format_amount(dpe, currency),
        "credits_pending": format_amount(cpe, currency),
    }


class AccountOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("account")
    livemode = serializers.BooleanField()
    owner = serializers.CharField()
    currency = serializers.CharField()
    kind = serializers.ChoiceField(choices=Account.Kind.choices)
    normal_balance = serializers.ChoiceField(choices=["debit", "credit"])
    debits_must_not_exceed_credits = serializers.BooleanField()
    credits_must_not_exceed_debits = serializers.BooleanField()
    hot = serializers.BooleanField()
    balances = BalancesOut()
    version = serializers.IntegerField()
    reference = serializers.CharField()
    metadata = MetadataField()
    created_at = TimestampField()

    def to_representation(self, account: Account) -> dict[str, Any]:
        return {
            "id": account.pk,
            "object": "account",
            "livemode": account.livemode,
            "owner": account.owner_id,
            "currency": account.currency,
            "kind": account.kind,
            "normal_balance": account.normal_balance,
            "debits_must_not_exceed_credits": account.debits_must_not_exceed_credits,
            "credits_must_not_exceed_debits": account.credits_must_not_exceed_debits,
            "hot": account.hot,
            "balances": balances(account),
            "version": account.current_version,
            "reference": account.reference,
            "metadata": account.metadata,
            "created_at": _timestamp(account.created_at),
        }


def _timestamp(value: datetime | None) -> str | None:
    return TimestampField().to_representation(value)


STATUSES = {"post": "posted", "void": "voided", "expire": "expired"}


class TransferOut(serializers.Serializer):
    id = serializers.CharField()
    object = ObjectTypeField("transfer")
    livemode = serializers.BooleanField()
    type = serializers.ChoiceField(choices=Transfer.Type.choices)
    status = serializers.ChoiceField(
        choices=["posted", "pending", "voided", "expired"],
        help_text="A pending transfer's state; the others are posted, or resolve a hold.",
    )
    debit_account = serializers.CharField()
    credit_account = serializers.CharField()
    amount = MoneyField()
    pending_transfer = serializers.CharField(allow_null=True)
    pending_amount = MoneyField(allow_null=True)
    posted_amount = MoneyField(allow_null=True, help_text="What posting a hold posted.")
    expires_at = TimestampField(allow_null=True)
    reference = serializers.CharField()
    code = serializers.CharField()
    corrects = serializers.CharField(allow_null=True)
    metadata = MetadataField()
    created_at = TimestampField()

    def to_representation(self, t: Transfer) -> dict[str, Any]:
        currency = t.currency
        resolved_as = getattr(t, "resolved_as", None)
        resolved_amount = getattr(t, "resolved_amount", None)
        if t.type == Transfer.Type.PENDING:
            status = STATUSES.get(resolved_as or "", "pending")
        else:
            status = "posted"
        return {
            "id": t.id,
            "object": "transfer",
            "livemode": t.livemode,
            "type": t.type,
            "status": status,
            "debit_account": t.debit_account_id,
            "credit_account": t.credit_account_id,
            "amount": _money(t.amount, currency),
            "pending_transfer": t.pending.id if t.pending_id and t.pending else None,
            "pending_amount": _money(t.pending_amount, currency),
            "posted_amount": _money(resolved_amount if resolved_as == "post" else None, currency),
            "expires_at": _timestamp(t.expires_at),
            "reference": t.reference,
            "code": t.code,
            "corrects": t.corrects.id if t.corrects_id and t.corrects else None,
            "metadata": t.metadata,
            "created_at": _timestamp(t.created_at),
        }


def _money(minor: int | None, currency: str) -> dict[str, str] | None:
    if minor is None:
        return None
    return {"amount": format_amount(minor, currency), "currency": currency}


def _transfer_out(transfer: Transfer) -> dict[str, Any]:
    return dict(TransferOut(transfer).data)


# --- accounts ------------------------------------------------------------------------------------


class AccountListView(HubAPIView):
    access = {
        "GET": Rule(LEDGER_ROLES, "accounts:read"),
        "POST": Rule(ACCOUNT_WRITERS, "accounts:write"),
    }

    class Input(StrictSerializer):
        owner = serializers.CharField(max_length=40, required=False)
        currency = serializers.CharField(max_length=3)
        kind = serializers.ChoiceField(choices=Account.Kind.choices)
        debits_must_not_exceed_credits = serializers.BooleanField(required=False)
        credits_must_not_exceed_debits = serializers.BooleanField(required=False)
        hot = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Many transfers touch it at once: moves no flag could refuse do not wait "
            "for the account.",
        )
        reference = serializers.CharField(max_length=128, required=False, default="")
        metadata = MetadataField(required=False)

    @extend_schema(
        parameters=[
            *LIST_PARAMETERS,
            OpenApiParameter("currency", str),
            OpenApiParameter("kind", str),
            OpenApiParameter("owner", str, description="operator only"),
        ],
        responses=AccountOut(many=True),
        operation_id="accounts_list",
    )
    def get(self, request: Request) -> Response:
        queryset = accounts_visible(actor=self.actor).with_balances()
        kind = choice_param(request, "kind", Account.Kind.values)
        if kind:
            queryset = queryset.filter(kind=kind)
        currency = request.query_params.get("currency")
        if currency:
            queryset = queryset.filter(currency=currency)
        owner = request.query_params.get("owner")
        if owner:
            queryset = queryset.filter(owner_id=owner)
        rows, has_more = paginate(request, queryset)
        return Response(list_body(AccountOut(rows, many=True).data, has_more, request.path))

    @extend_schema(request=Input, responses={201: AccountOut}, operation_id="accounts_create")
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        account = account_create(actor=self.actor, owner_id=values.pop("owner", None), **values)
        return Response(AccountOut(account).data, status=201)


class AccountDetailView(HubAPIView):
    access = {"GET": Rule(LEDGER_ROLES, "accounts:read")}

    @extend_schema(responses=AccountOut, operation_id="accounts_retrieve")
    def get(self, request: Request, account_id: str) -> Response:
        account = account_get(actor=self.actor, account_id=account_id, balances=True)
        return Response(AccountOut(account).data)


class AccountBalanceView(HubAPIView):
    access = {"GET": Rule(LEDGER_ROLES, "accounts:read")}

    @extend_schema(
        parameters=[
            OpenApiParameter("at", str, description="ISO 8601 time with its offset (default: now)")
        ],
        responses=inline_serializer(
            "AccountBalance",
            {
                "object": serializers.CharField(),
                "account": serializers.CharField(),
                "at": serializers.CharField(),
                "balances": BalancesOut(),
            },
        ),
        operation_id="accounts_balance",
    )
    def get(self, request: Request, account_id: str) -> Response:
        account = account_get(actor=self.actor, account_id=account_id, balances=True)
        at = _time_param(request, "at")
        if at is None:
            columns = None
            moment = datetime.now(tz=account.created_at.tzinfo)
        else:
            moment = at
            b = account_balances_at(account=account, at=at)
            columns = (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)
        return Response(
            {
                "object": "balance",
                "account": account.pk,
                "at": _timestamp(moment),
                "balances": balances(account, columns),
            }
        )


def _time_param(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        value = None
    if value is None or value.tzinfo is None or not 1970 <= value.year <= 9998:
        raise errors.InvalidRequest(
            f"{name} must be an ISO 8601 time with its offset, such as 2026-11-28T09:00:00Z, "
            "from 1970 to 9998.",
            code="parameter_invalid",
            param=name,
        )
    return value


# --- transfers -----------------------------------------------------------------------------------


class TransferIn(StrictSerializer):
    id = serializers.CharField(max_length=64, required=False)
    debit_account = serializers.CharField(max_length=40)
    credit_account = serializers.CharField(max_length=40)
    amount = MoneyField()
    pending = serializers.BooleanField(required=False, default=False)
    timeout = serializers.IntegerField(
        min_value=1, max_value=MAX_TIMEOUT_SECONDS, required=False, help_text="seconds"
    )
    reference = serializers.CharField(max_length=128, required=False, default="")
    code = serializers.CharField(max_length=32, required=False, default="")
    corrects = serializers.CharField(max_length=64, required=False)
    metadata = MetadataField(required=False)


# Transfers the hub makes for its own objects: their holds are settled by those objects only.
RESERVED_CODES = frozenset({"payout", "payin", "refund"})


def _refuse_managed(pending: Transfer) -> None:
    if pending.code in RESERVED_CODES:
        raise errors.Conflict(
            f"This hold belongs to {pending.reference}; the institution's answer or its "
            "settlement run settles it.",
            code="transfer_managed",
        )


_validators = threading.local()


def transfer_input(data: Any) -> dict[str, Any]:
    """``TransferIn`` validation without a new serializer per call: DRF deep-copies every
    declared field for each instance, a third of the ledger's request time. Each thread keeps
    one instance; ``run_validation`` keeps no state on it, and raises what ``is_valid`` would."""
    serializer: TransferIn | None = getattr(_validators, "transfer_in", None)
    if serializer is None:
        serializer = _validators.transfer_in = TransferIn()
    return dict(serializer.run_validation(data))


def _spec(values: dict[str, Any], prefix: str = "") -> TransferSpec:
    minor, currency = values["amount"]
    if values["code"] in RESERVED_CODES:
        raise errors.InvalidRequest(
            f"The code {values['code']!r} is kept for the hub's own transfers.",
            code="parameter_invalid",
            param=f"{prefix}code",
        )
    transfer_id = values.get("id")
    if transfer_id is not None:
        check_transfer_id(transfer_id, param=f"{prefix}id")
    return TransferSpec(
        id=transfer_id,
        debit_account_id=values["debit_account"],
        credit_account_id=values["credit_account"],
        amount=minor,
        currency=currency,
        pending=values["pending"],
        timeout_seconds=values.get("timeout"),
        reference=values["reference"],
        code=values["code"],
        corrects=values.get("corrects"),
        metadata=values.get("metadata") or {},
    )


class TransferListView(HubAPIView):
    access = {
        "GET": Rule(LEDGER_ROLES, "transfers:read"),
        "POST": Rule(OPERATOR, "transfers:write"),
    }

    @extend_schema(
        parameters=[
            *LIST_PARAMETERS,
            OpenApiParameter("account", str, description="either side"),
            OpenApiParameter("reference", str),
            OpenApiParameter("type", str),
            OpenApiParameter("created[gte]", str, description="ISO 8601 time"),
            OpenApiParameter("created[lt]", str, description="ISO 8601 time"),
            OpenApiParameter("metadata[KEY]", str, description="a metadata value"),
        ],
        responses=TransferOut(many=True),
        operation_id="transfers_list",
    )
    def get(self, request: Request) -> Response:
        queryset = transfers_visible(actor=self.actor)
        account = request.query_params.get("account")
        if account:
            queryset = queryset.filter(
                pk__in=Transfer.objects.filter(debit_account_id=account).values("pk")
            ) | queryset.filter(
                pk__in=Transfer.objects.filter(credit_account_id=account).values("pk")
            )
        reference = request.query_params.get("reference")
        if reference:
            queryset = queryset.filter(reference=reference)
        kind = choice_param(request, "type", Transfer.Type.values)
        if kind:
            queryset = queryset.filter(type=kind)
        since = _time_param(request, "created[gte]")
        if since is not None:
            queryset = queryset.filter(created_at__gte=since)
        until = _time_param(request, "created[lt]")
        if until is not None:
            queryset = queryset.filter(created_at__lt=until)
        for name, value in request.query_params.items():
            if name.startswith("metadata[") and name.endswith("]"):
                key = name[len("metadata[") : -1]
                # "__" would make the key a lookup path (contains, regex, ...), not a key.
                if not key or len(key) > 40 or "__" in key:
                    raise errors.InvalidRequest(
                        "metadata[KEY] names a key of 1 to 40 characters, without '__'.",
                        code="parameter_invalid",
                        param=name,
                    )
                queryset = queryset.filter(**{f"metadata__{key}": value})
        rows, has_more = _paginate_transfers(request, queryset)
        return Response(list_body(TransferOut(rows, many=True).data, has_more, request.path))

    @extend_schema(
        request=TransferIn,
        responses={201: TransferOut, 200: TransferOut},
        operation_id="transfers_create",
        description="201 for a new transfer; 200 when the id was used before for the same "
        "transfer (it is returned unchanged); 409 transfer_exists when it was used for another.",
    )
    def post(self, request: Request) -> Response:
        transfer, created = transfer_create(
            livemode=self.actor.livemode, spec=_spec(transfer_input(request.data))
        )
        return Response(_transfer_out(transfer), status=201 if created else 200)


def _paginate_transfers(request: Request, queryset: Any) -> tuple[list[Transfer], bool]:
    """Newest first in the order transfers were made; the cursors are transfer ids (the
    caller's own, which do not sort), so they are turned into positions first."""
    limit = limit_param(request)

    def position(name: str) -> int | None:
        value = request.query_params.get(name)
        if value is None:
            return None
        check_transfer_id(value, param=name)
        # Within what the caller may see: another tenant's id is as unknown as a made-up one.
        seq = queryset.filter(id=value).values_list("seq", flat=True).first()
        if seq is None:
            raise errors.InvalidRequest(
                f"{name} names no transfer.", code="parameter_invalid", param=name
            )
        return seq

    return page(
        queryset,
        limit=limit,
        after=position("starting_after"),
        before=position("ending_before"),
        field="seq",
    )


class TransferDetailView(HubAPIView):
    access = {"GET": Rule(LEDGER_ROLES, "transfers:read")}

    @extend_schema(responses=TransferOut, operation_id="transfers_retrieve")
    def get(self, request: Request, transfer_id: str) -> Response:
        return Response(_transfer_out(transfer_get(actor=self.actor, transfer_id=transfer_id)))


class ResolutionIn(StrictSerializer):
    id = serializers.CharField(max_length=64, required=False)
    reference = serializers.CharField(max_length=128, required=False, default="")
    metadata = MetadataField(required=False)


class TransferPostView(HubAPIView):
    access = {"POST": Rule(OPERATOR, "transfers:write")}

    class Input(ResolutionIn):
        amount = MoneyField(required=False, help_text="Default: all that the hold holds.")

    @extend_schema(
        request=Input, responses={201: TransferOut, 200: TransferOut}, operation_id="transfers_post"
    )
    def post(self, request: Request, transfer_id: str) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        pending = transfer_get(actor=self.actor, transfer_id=transfer_id)
        _refuse_managed(pending)
        amount = values.get("amount")
        if amount is not None and amount[1] != pending.currency:
            raise errors.InvalidRequest(
                f"The pending transfer is in {pending.currency}.",
                code="currency_mismatch",
                param="amount.currency",
            )
        transfer, created = transfer_post(
            livemode=self.actor.livemode,
            pending_id=pending.id,
            amount=None if amount is None else amount[0],
            id=values.get("id"),
            reference=values["reference"],
            metadata=values.get("metadata"),
        )
        out = transfer_get(actor=self.actor, transfer_id=transfer.id)
        return Response(_transfer_out(out), status=201 if created else 200)


class TransferVoidView(HubAPIView):
    access = {"POST": Rule(OPERATOR, "transfers:write")}

    class Input(ResolutionIn):
        pass

    @extend_schema(
        request=Input, responses={201: TransferOut, 200: TransferOut}, operation_id="transfers_void"
    )
    def post(self, request: Request, transfer_id: str) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        pending = transfer_get(actor=self.actor, transfer_id=transfer_id)
        _refuse_managed(pending)
        transfer, created = transfer_void(
            livemode=self.actor.livemode,
            pending_id=pending.id,
            id=values.get("id"),
            reference=values["reference"],
            metadata=values.get("metadata"),
        )
        out = transfer_get(actor=self.actor, transfer_id=transfer.id)
        return Response(_transfer_out(out), status=201 if created else 200)


def _item_out(result: ItemResult) -> dict[str, Any]:
    error = result.error
    return {
        "index": result.index,
        "id": result.id,
        "status": result.status,
        "error": None
        if error is None
        else {
            "type": error.type,
            "code": error.code,
            "message": error.message,
            "param": error.param,
        },
    }


class TransferBatchView(HubAPIView):
    access = {"POST": Rule(OPERATOR, "transfers:write")}

    class Input(StrictSerializer):
        transfers = serializers.ListField(
            child=serializers.DictField(), min_length=1, max_length=MAX_BATCH
        )
        atomic = serializers.BooleanField(
            required=False,
            default=True,
            help_text="true: all or none (linked transfers); false: each item on its own.",
        )

    @extend_schema(
        request=Input,
        responses=inline_serializer(
            "TransferBatch",
            {
                "object": serializers.CharField(),
                "atomic": serializers.BooleanField(),
                "created": serializers.IntegerField(),
                "exists": serializers.IntegerField(),
                "failed": serializers.IntegerField(),
                "results": serializers.ListField(child=serializers.DictField()),
            },
        ),
        operation_id="transfers_batch",
    )
    def post(self, request: Request) -> Response:
        items = request.data.get("transfers") if isinstance(request.data, dict) else None
        if isinstance(items, list) and len(items) > MAX_BATCH:
            raise errors.InvalidRequest(
                f"A batch holds 1 to {MAX_BATCH} transfers.",
                code="parameter_invalid",
                param="transfers",
            )
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        specs = []
        for index, item in enumerate(data.validated_data["transfers"]):
            try:
                specs.append(_spec(transfer_input(item), prefix=f"transfers[{index}]."))
            except errors.HubError as exc:
                exc.param = f"transfers[{index}]." + (exc.param or "").removeprefix(
                    f"transfers[{index}]."
                )
                raise
        atomic = data.validated_data["atomic"]
        results = transfers_create_batch(livemode=self.actor.livemode, specs=specs, atomic=atomic)
        counts = {status: 0 for status in ("created", "exists", "failed")}
        for result in results:
            counts[result.status] += 1
        return Response(
            {
                "object": "transfer_batch",
                "atomic": atomic,
                **counts,
                "results": [_item_out(r) for r in results],
            },
            status=201 if counts["created"] else 200,
        )
