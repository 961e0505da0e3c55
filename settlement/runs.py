"""Settlement runs: a payment institution hands over what its buyers paid, once a day.

A run is made once per (institution, currency, business day) and takes every payin of that
institution that succeeded before the day's cutoff (a local time in the institution's time zone)
and is not settled yet, and every refund adjustment made before it:

- each payin's pending credit is posted, less the refunds made before it settled (all of it
  refunded: the credit is voided), and the hub's fee on what was posted is a transfer of its own
  from the merchant to the hub's fees account;
- the net is what the institution owes the hub for the day: what was posted, less what it paid
  buyers back for settled payins, plus refunds it netted and then did not make. The run states it
  as a settlement instruction, and its report breaks it down by merchant.

A worker executes a run in chunks, each one transaction that settles its payins and marks them
with the run (so a payin is settled once whatever happens). A worker that dies leaves the run
``running`` with its lease; after the lease another worker takes it over and goes on from where
the first stopped. Starting a run that exists returns it and changes nothing.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from time import sleep
from typing import Any
from zoneinfo import ZoneInfo

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from adapters.manifest import Capability
from adapters.registry import get_adapter
from hub import errors
from hub.conf import hub_settings
from hub.jobs import enqueue_after_commit
from hub.models import AdapterConnection, Participant, Role
from hub.money import check_currency, money_payload
from hub.services.events import event_emit, register_event_types
from settlement.ledger import (
    DEADLOCK_TRIES,
    TransferSpec,
    deadlocked,
    savepoints_off,
    transfer_create,
    transfer_post,
    transfer_void,
)
from settlement.models import Account
from settlement.models_payins import FeeRule, Payin, Refund, SettlementRun
from settlement.payouts import hub_account, hub_own_account_ids

logger = logging.getLogger(__name__)
Kind = Account.Kind

RUN_COMPLETED = "settlement_run.completed"
register_event_types(RUN_COMPLETED)

# How far back a run may be started: a run takes everything unsettled before its cutoff, so an
# old day is never needed to settle what it left.
MAX_RUN_AGE_DAYS = 400
TIME_ZONES = {Participant.Country.CN: "Asia/Shanghai", Participant.Country.KR: "Asia/Seoul"}


def institution_time_zone(institution: Participant) -> str:
    return TIME_ZONES[Participant.Country(institution.country)]


def cutoff_time() -> time:
    hours, minutes = str(hub_settings.SETTLEMENT_CUTOFF).split(":")
    return time(int(hours), int(minutes))


def cutoff_of(business_date: date, time_zone: str) -> datetime:
    """The instant a business day ends for an institution in ``time_zone``."""
    return datetime.combine(business_date, cutoff_time(), tzinfo=ZoneInfo(time_zone))


def last_closed_day(time_zone: str, now: datetime) -> date:
    """The latest business day whose cutoff has passed at ``now``."""
    local = now.astimezone(ZoneInfo(time_zone))
    day = local.date()
    return day if cutoff_of(day, time_zone) <= now else day - timedelta(days=1)


# --- fees ----------------------------------------------------------------------------------------


def fee_rule_for(*, merchant_id: str, currency: str, livemode: bool) -> FeeRule | None:
    """The merchant's own rule, else the default one for the currency."""
    rules = {
        rule.merchant_id: rule
        for rule in FeeRule.objects.filter(livemode=livemode, currency=currency).filter(
            Q(merchant_id=merchant_id) | Q(merchant__isnull=True)
        )
    }
    return rules.get(merchant_id) or rules.get(None)


def fee_of(amount: int, rule: FeeRule | None) -> int:
    """``percent_bps`` of ``amount`` rounded half to even to the currency's unit, plus ``fixed``;
    never more than the amount."""
    if rule is None:
        return 0
    share = (Decimal(amount) * rule.percent_bps / 10_000).quantize(
        Decimal(1), rounding=ROUND_HALF_EVEN
    )
    return min(amount, int(share) + rule.fixed)


# --- starting a run ------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def settlement_run_start(
    *,
    institution_id: str,
    currency: str,
    business_date: date,
    livemode: bool,
    close_early: bool = False,
) -> tuple[SettlementRun, bool]:
    """The run of that institution, currency and day, made and queued if it is new.

    ``close_early`` (test mode only) ends a business day that is still open now, so that a
    sandbox can settle what it made today: the run takes what succeeded before this moment, and
    the next day's run what came after."""
    currency = check_currency(currency)
    institution = Participant.objects.filter(
        pk=institution_id, role=Role.PAYMENT_INSTITUTION
    ).first()
    if institution is None:
        raise errors.InvalidRequest(
            "No such payment institution.", code="institution_missing", param="institution"
        )
    found = SettlementRun.objects.filter(
        livemode=livemode, institution=institution, currency=currency, business_date=business_date
    ).first()
    if found is not None:
        return found, False
    if business_date < timezone.now().date() - timedelta(days=MAX_RUN_AGE_DAYS):
        raise errors.InvalidRequest(
            f"A run is for one of the last {MAX_RUN_AGE_DAYS} days (a later run takes what "
            "an earlier day left unsettled).",
            code="business_date_too_old",
            param="business_date",
        )
    time_zone = institution_time_zone(institution)
    cutoff = cutoff_of(business_date, time_zone)
    if close_early:
        if livemode:
            raise errors.InvalidRequest(
                "Only test-mode business days can be closed early.",
                code="close_early_live",
                param="close_early",
            )
        now = timezone.now()
        if cutoff > now:
            if cutoff_of(business_date - timedelta(days=1), time_zone) > now:
                raise errors.Conflict(
                    f"The business day {business_date.isoformat()} has not begun.",
                    code="business_day_not_begun",
                    param="business_date",
                )
            cutoff = now
    if cutoff > timezone.now():
        raise errors.Conflict(
            f"The business day {business_date.isoformat()} ends at {cutoff.isoformat()} "
            f"({time_zone}); its run starts after that.",
            code="cutoff_not_passed",
            param="business_date",
        )
    try:
        with transaction.atomic():
            run = SettlementRun.objects.create(
                livemode=livemode,
                institution=institution,
                currency=currency,
                business_date=business_date,
                time_zone=time_zone,
                cutoff_at=cutoff,
            )
    except IntegrityError:
        # Started by a concurrent caller that committed first.
        return SettlementRun.objects.get(
            livemode=livemode,
            institution=institution,
            currency=currency,
            business_date=business_date,
        ), False
    from settlement.tasks import settlement_run_execute_task

    enqueue_after_commit(settlement_run_execute_task, run_id=run.pk)
    return run, True


def settlement_runs_start_due(*, now: datetime | None = None) -> list[str]:
    """Start the run of the last closed business day of every institution and currency it
    collects through the hub (the ones already made are left as they are)."""
    now = now or timezone.now()
    wanted: set[tuple[str, bool, str]] = set()
    connections = AdapterConnection.objects.filter(
        status=AdapterConnection.Status.ENABLED,
        participant__role=Role.PAYMENT_INSTITUTION,
        participant__status=Participant.Status.ACTIVE,
    ).select_related("participant")
    institutions: dict[str, Participant] = {}
    for conn in connections:
        manifest = get_adapter(conn.adapter).adapter_class.manifest
        if Capability.PAYMENT_INSTITUTION not in manifest.capabilities:
            continue
        institutions[conn.participant_id] = conn.participant
        for currency in manifest.currencies:
            wanted.add((conn.participant_id, conn.livemode, currency))
    started = []
    for institution_id, livemode, currency in sorted(wanted):
        day = last_closed_day(institution_time_zone(institutions[institution_id]), now)
        run, created = settlement_run_start(
            institution_id=institution_id, currency=currency, business_date=day, livemode=livemode
        )
        if created:
            started.append(run.pk)
    return started


def settlement_runs_stalled() -> list[str]:
    """Running runs that no worker holds (never taken, or their worker died)."""
    return list(
        SettlementRun.objects.filter(status=SettlementRun.Status.RUNNING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now()))
        .order_by("created_at")
        .values_list("pk", flat=True)
    )


# --- executing a run -----------------------------------------------------------------------------


def settlement_run_execute(*, run_id: str) -> str:
    """Settle everything the run takes, a chunk per transaction, then write its totals.
    Returns ``completed``, ``busy`` (another worker holds it), ``skipped`` (done already) or
    ``lost`` (its lease ran out and another worker took it over meanwhile)."""
    token = _claim(run_id)
    if token in ("skipped", "busy"):
        return token
    for step in (_settle_payins, _settle_refunds):
        while True:
            done = _chunk(step, run_id, token)
            if done is None:
                return "lost"
            if not done:
                break
    return "completed" if _complete(run_id, token) else "lost"


def _lease() -> timedelta:
    return timedelta(seconds=hub_settings.SETTLEMENT_RUN_LEASE_SECONDS)


@transaction.atomic(durable=True)
def _claim(run_id: str) -> str:
    """Take the run for this worker: a new token, which each chunk checks."""
    run = SettlementRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.status == SettlementRun.Status.COMPLETED:
        return "skipped"
    now = timezone.now()
    if run.lease_until is not None and run.lease_until > now:
        return "busy"
    run.lease_until = now + _lease()
    run.lease_token = secrets.token_hex(16)
    run.save(update_fields=["lease_until", "lease_token"])
    return run.lease_token


def _held(run_id: str, token: str) -> SettlementRun | None:
    """The run, locked, if this worker still holds it (its lease renewed); else None. A chunk
    starts with it, so that a worker whose run was taken over stops before writing, and chunks
    and the run's completion follow one another."""
    run = (
        # The run's row only: a lock on its institution's would hold up every foreign-key check
        # on it (a ledger write re-checks its account's owner), and so every writer to that
        # institution's accounts, while the run waits for those accounts.
        SettlementRun.objects.select_for_update(of=("self",))
        .select_related("institution")
        .filter(pk=run_id, status=SettlementRun.Status.RUNNING, lease_token=token)
        .first()
    )
    if run is not None:
        run.lease_until = timezone.now() + _lease()
        run.save(update_fields=["lease_until"])
    return run


def _chunk(
    step: Callable[[SettlementRun], int], run_id: str, token: str, tries: int = DEADLOCK_TRIES
) -> int | None:
    """One chunk in its own transaction, tried again if PostgreSQL broke a deadlock with a
    writer outside the run. None: the run is no longer this worker's."""
    for attempt in range(tries):
        try:
            with transaction.atomic(durable=True), savepoints_off():
                run = _held(run_id, token)
                return None if run is None else step(run)
        except (DatabaseError, errors.Conflict) as exc:
            retry = isinstance(exc, errors.Conflict) and exc.code == "transfer_id_race"
            if not (retry or deadlocked(exc)) or attempt == tries - 1:
                raise
            logger.warning("settlement run %s: a chunk deadlocked; trying again", run_id)
            sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")


def _settle_payins(run: SettlementRun) -> int:
    """Settle the next chunk of the run's payins (locked in id order, as refunds lock them),
    then every account the chunk moves, in id order, before the first transfer (one transfer
    at a time would lock them in the chunk's order, against other writers' sorted order).
    Returns how many; 0 when none is left."""
    payins = list(
        Payin.objects.select_for_update(of=("self",))
        .filter(
            livemode=run.livemode,
            connection__participant_id=run.institution_id,
            currency=run.currency,
            status=Payin.Status.SUCCEEDED,
            succeeded_at__lt=run.cutoff_at,
        )
        .order_by("pk")[: hub_settings.SETTLEMENT_RUN_CHUNK]
    )
    if not payins:
        return 0
    fees = (Kind.FEES, run.currency)
    fees_account = hub_own_account_ids(wanted=[fees], livemode=run.livemode)[fees]
    receivable = hub_account(
        kind=Kind.INSTITUTION_RECEIVABLE,
        currency=run.currency,
        livemode=run.livemode,
        owner=run.institution,
    )
    touched = {payin.account_id for payin in payins} | {fees_account, receivable.pk}
    list(
        Account.objects.select_for_update(no_key=True)
        .filter(pk__in=touched)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    rules: dict[str, FeeRule | None] = {}
    marks: list[tuple[str, int, int, str | None]] = []
    for payin in payins:
        settled = payin.amount - payin.refunded - payin.refunds_pending
        if payin.merchant_id not in rules:
            rules[payin.merchant_id] = fee_rule_for(
                merchant_id=payin.merchant_id, currency=payin.currency, livemode=payin.livemode
            )
        rule = rules[payin.merchant_id]
        fee = fee_of(settled, rule)
        if settled > 0:
            transfer_post(
                livemode=run.livemode,
                pending_id=payin.credit_id,
                amount=settled,
                id=f"{payin.pk}-settle",
                reference=run.pk,
            )
        else:
            transfer_void(
                livemode=run.livemode,
                pending_id=payin.credit_id,
                id=f"{payin.pk}-settle",
                reference=run.pk,
            )
        if fee > 0:
            transfer_create(
                livemode=run.livemode,
                spec=TransferSpec(
                    id=f"{payin.pk}-fee",
                    debit_account_id=payin.account_id,
                    credit_account_id=fees_account,
                    amount=fee,
                    currency=payin.currency,
                    reference=payin.pk,
                    code="fee",
                ),
            )
        marks.append((payin.pk, settled, fee, rule.pk if rule is not None else None))
    _mark_settled(run, marks)
    return len(payins)


def _mark_settled(run: SettlementRun, marks: list[tuple[str, int, int, str | None]]) -> None:
    """One UPDATE for the chunk (Django's ``bulk_update`` builds a CASE per column and row,
    which cost more than the chunk's transfers)."""
    values = ", ".join(["(%s, CAST(%s AS BIGINT), CAST(%s AS BIGINT), %s)"] * len(marks))
    table = Payin._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH v(id, settled, fee, rule) AS (VALUES {values}) "  # noqa: S608 (no input)
            f"UPDATE {table} SET status = %s, run_id = %s, updated_at = %s,"
            " settled_amount = v.settled, fee = v.fee, fee_rule_id = v.rule"
            f" FROM v WHERE {table}.id = v.id",
            [*(x for mark in marks for x in mark), Payin.Status.SETTLED, run.pk, timezone.now()],
        )
        # SQLite reports no count for a statement that starts WITH.
        if cursor.rowcount not in (-1, len(marks)):
            raise AssertionError(f"settled {cursor.rowcount} payins of {len(marks)}")


def _settle_refunds(run: SettlementRun) -> int:
    """Count the refund adjustments made before the cutoff in the run (no ledger move: each
    was made when the institution answered)."""
    refunds = list(
        Refund.objects.select_for_update(of=("self",))
        .filter(
            livemode=run.livemode,
            payin__connection__participant_id=run.institution_id,
            currency=run.currency,
            run__isnull=True,
            adjusted_at__lt=run.cutoff_at,
        )
        .exclude(adjustment=0)
        .order_by("pk")[: hub_settings.SETTLEMENT_RUN_CHUNK]
    )
    if refunds:
        Refund.objects.filter(pk__in=[r.pk for r in refunds]).update(run=run)
    return len(refunds)


@transaction.atomic(durable=True)
def _complete(run_id: str, token: str) -> bool:
    run = _held(run_id, token)
    if run is None:
        return False
    payins = Payin.objects.filter(run=run).aggregate(
        count=Count("pk"), gross=Sum("amount"), settled=Sum("settled_amount"), fees=Sum("fee")
    )
    refunds = Refund.objects.filter(run=run).aggregate(count=Count("pk"), total=Sum("adjustment"))
    gross, settled = payins["gross"] or 0, payins["settled"] or 0
    run.payins_count = payins["count"]
    run.gross = gross
    run.refunds_netted = gross - settled
    run.fees = payins["fees"] or 0
    run.adjustments_count = refunds["count"]
    run.adjustments = refunds["total"] or 0
    run.net = settled + run.adjustments
    run.direction = (
        SettlementRun.Direction.INSTITUTION_PAYS
        if run.net > 0
        else SettlementRun.Direction.HUB_PAYS
        if run.net < 0
        else SettlementRun.Direction.NONE
    )
    run.status = SettlementRun.Status.COMPLETED
    run.completed_at = timezone.now()
    run.lease_until = None
    run.save()
    event_emit(
        type=RUN_COMPLETED,
        owner=run.institution,
        livemode=run.livemode,
        data=run_payload(run),
    )
    return True


# --- what a run says -----------------------------------------------------------------------------


def instruction_of(run: SettlementRun) -> dict[str, Any] | None:
    """Who pays whom, how much and when, for a completed run with something to pay."""
    if run.status != SettlementRun.Status.COMPLETED or run.net == 0:
        return None
    institution_pays = run.net > 0
    return {
        "payer": run.institution_id if institution_pays else "hub",
        "payee": "hub" if institution_pays else run.institution_id,
        "amount": money_payload(abs(run.net), run.currency),
        "value_date": (run.business_date + timedelta(days=1)).isoformat(),
        "reference": run.pk,
    }


def run_payload(run: SettlementRun) -> dict[str, Any]:
    currency = run.currency
    return {
        "id": run.pk,
        "institution": run.institution_id,
        "currency": currency,
        "business_date": run.business_date.isoformat(),
        "status": run.status,
        "payins_count": run.payins_count,
        "gross": money_payload(run.gross, currency),
        "refunds_netted": money_payload(run.refunds_netted, currency),
        "adjustments": money_payload(run.adjustments, currency),
        "fees": money_payload(run.fees, currency),
        "net": money_payload(run.net, currency),
        "direction": run.direction,
    }


def fee_rule_payload(rule: FeeRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "object": "fee_rule",
        "livemode": rule.livemode,
        "merchant": rule.merchant_id,
        "currency": rule.currency,
        "percent_bps": rule.percent_bps,
        "fixed": money_payload(rule.fixed, rule.currency),
        "rounding": "half_even",
        "created_at": rule.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": rule.updated_at.isoformat().replace("+00:00", "Z"),
    }


@transaction.atomic(durable=True)
def fee_rule_set(
    *, livemode: bool, merchant_id: str | None, currency: str, percent_bps: int, fixed: int
) -> tuple[FeeRule, bool]:
    """Set the fee on a merchant's payins in ``currency`` (every merchant's without one, when
    ``merchant_id`` is None). Payins settled from now on pay it; settled ones keep theirs."""
    currency = check_currency(currency)
    if not 0 <= percent_bps <= 10_000:
        raise errors.InvalidRequest(
            "percent_bps is 0 to 10000.", code="parameter_invalid", param="percent_bps"
        )
    if fixed < 0:
        raise errors.InvalidRequest(
            "fixed is zero or more.", code="parameter_invalid", param="fixed"
        )
    merchant = None
    if merchant_id is not None:
        merchant = Participant.objects.filter(pk=merchant_id, role=Role.MERCHANT).first()
        if merchant is None:
            raise errors.InvalidRequest(
                "No such merchant.", code="merchant_missing", param="merchant"
            )
    rule = (
        FeeRule.objects.select_for_update()
        .filter(livemode=livemode, currency=currency, merchant=merchant)
        .first()
    )
    now = timezone.now()
    if rule is not None:
        rule.percent_bps, rule.fixed, rule.updated_at = percent_bps, fixed, now
        rule.save(update_fields=["percent_bps", "fixed", "updated_at"])
        return rule, False
    try:
        with transaction.atomic():
            rule = FeeRule.objects.create(
                livemode=livemode,
                merchant=merchant,
                currency=currency,
                percent_bps=percent_bps,
                fixed=fixed,
            )
    except IntegrityError:
        raise errors.Conflict(
            "This fee rule is being set by another request.", code="fee_rule_in_progress"
        ) from None
    return rule, True


def run_report(run: SettlementRun) -> list[dict[str, Any]]:
    """A run by merchant: its payins, what was refunded before they settled, the hub's fees,
    what it was credited, and the refund adjustments counted in the run."""
    lines: dict[str, dict[str, int]] = {}
    for row in (
        Payin.objects.filter(run=run)
        .values("merchant_id")
        .annotate(
            count=Count("pk"), gross=Sum("amount"), settled=Sum("settled_amount"), fees=Sum("fee")
        )
    ):
        lines[row["merchant_id"]] = {
            "payins_count": row["count"],
            "gross": row["gross"],
            "refunds_netted": row["gross"] - row["settled"],
            "fees": row["fees"],
            "credited": row["settled"] - row["fees"],
            "adjustments_count": 0,
            "adjustments": 0,
        }
    for adjusted in (
        Refund.objects.filter(run=run)
        .values("merchant_id")
        .annotate(count=Count("pk"), total=Sum("adjustment"))
    ):
        line = lines.setdefault(
            adjusted["merchant_id"],
            dict.fromkeys(("payins_count", "gross", "refunds_netted", "fees", "credited"), 0),
        )
        line["adjustments_count"] = adjusted["count"]
        line["adjustments"] = adjusted["total"]
    return [{"merchant": merchant, **lines[merchant]} for merchant in sorted(lines)]
