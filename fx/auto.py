"""Auto-conversion: what a settlement run credits a merchant in one currency is converted into
another of its accounts, at the rate of the moment, after the run completes (a task per run;
one conversion per run and account, whose reference makes a repeat harmless)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from fx.models import AutoConversion, FxConversion
from fx.quotes import conversion_create, quote_create
from hub import errors
from hub.conf import hub_settings
from hub.jobs import enqueue_after_commit
from hub.models import Event
from hub.principal import Principal
from hub.services.events import register_event_handler
from settlement.models import Account
from settlement.models_payins import Payin, SettlementRun
from settlement.runs import RUN_COMPLETED

logger = logging.getLogger(__name__)


def auto_conversion_set(
    *, actor: Principal, from_account_id: str, to_account_id: str, enabled: bool
) -> tuple[AutoConversion, bool]:
    """The merchant's standing order for ``from_account`` (made, or changed)."""
    accounts = {
        account.pk: account
        for account in Account.objects.filter(
            pk__in=(from_account_id, to_account_id),
            owner=actor.participant,
            livemode=actor.livemode,
            kind=Account.Kind.MERCHANT_SETTLEMENT,
        )
    }
    for param, account_id in (("from_account", from_account_id), ("to_account", to_account_id)):
        if account_id not in accounts:
            raise errors.InvalidRequest(
                "No such settlement account.", code="account_missing", param=param
            )
    if accounts[from_account_id].currency == accounts[to_account_id].currency:
        raise errors.InvalidRequest(
            "The two accounts are in the same currency.",
            code="currency_pair_invalid",
            param="to_account",
        )
    now = timezone.now()
    with transaction.atomic():
        rule = (
            AutoConversion.objects.select_for_update()
            .filter(livemode=actor.livemode, from_account_id=from_account_id)
            .first()
        )
        if rule is not None:
            rule.to_account_id, rule.enabled, rule.updated_at = to_account_id, enabled, now
            rule.save(update_fields=["to_account", "enabled", "updated_at"])
            return rule, False
        try:
            with transaction.atomic():
                rule = AutoConversion.objects.create(
                    livemode=actor.livemode,
                    merchant=actor.participant,
                    from_account_id=from_account_id,
                    to_account_id=to_account_id,
                    enabled=enabled,
                )
        except IntegrityError:
            raise errors.Conflict(
                "This account's auto-conversion is being set by another request.",
                code="auto_conversion_in_progress",
            ) from None
    return rule, True


def auto_convert_run(*, run_id: str) -> list[str]:
    """Convert what the run credited to each account that has a standing order. Returns the
    conversions made now (none for a run done before)."""
    run = SettlementRun.objects.filter(pk=run_id, status=SettlementRun.Status.COMPLETED).first()
    if run is None:
        return []
    credited = dict(
        Payin.objects.filter(run=run)
        .values("account_id")
        .annotate(net=Sum(F("settled_amount") - F("fee")))
        .values_list("account_id", "net")
    )
    rules = AutoConversion.objects.filter(
        livemode=run.livemode, enabled=True, from_account_id__in=list(credited)
    ).select_related("merchant", "from_account", "to_account")
    made = []
    for rule in rules:
        amount = credited[rule.from_account_id]
        reference = f"auto-{run.pk}-{rule.from_account_id[-12:]}"
        if (
            amount <= 0
            or FxConversion.objects.filter(
                merchant=rule.merchant, livemode=run.livemode, reference=reference
            ).exists()
        ):
            continue
        actor = Principal(
            participant=rule.merchant, api_key=None, livemode=run.livemode, scopes=frozenset()
        )
        try:
            quote = quote_create(
                actor=actor,
                sell_currency=rule.from_account.currency,
                buy_currency=rule.to_account.currency,
                sell_amount=amount,
                lock_seconds=hub_settings.FX_LOCK_MIN_SECONDS,
            )
            conversion, _ = conversion_create(
                actor=actor,
                quote_id=quote.pk,
                sell_account_id=rule.from_account_id,
                buy_account_id=rule.to_account_id,
                reference=reference,
                metadata={"settlement_run": run.pk},
            )
        except errors.HubError as exc:
            # The merchant moved the money meanwhile, or no fresh rate: the run stays as it is,
            # and the merchant converts by hand.
            logger.warning("auto-conversion %s after %s failed: %s", rule.pk, run.pk, exc.code)
            continue
        made.append(conversion.pk)
    return made


def auto_convert_recent(*, days: int = 2) -> int:
    """What a lost task left: every run completed in the last ``days`` days, again (each run
    and account is converted once whatever happens)."""
    since = timezone.now() - timedelta(days=days)
    runs = SettlementRun.objects.filter(
        status=SettlementRun.Status.COMPLETED, completed_at__gte=since
    ).values_list("pk", flat=True)
    if not AutoConversion.objects.filter(enabled=True).exists():
        return 0
    return sum(len(auto_convert_run(run_id=run_id)) for run_id in runs)


def _on_run_completed(event: Event) -> None:
    from fx.tasks import auto_convert_run_task

    enqueue_after_commit(auto_convert_run_task, run_id=str(event.data["id"]))


def register_handlers() -> None:
    register_event_handler(RUN_COMPLETED, _on_run_completed)
