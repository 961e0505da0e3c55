"""Settlement runs: the business day's cutoff in the institution's own time zone, posting of
payins less netted refunds, the hub's fees as transfers of their own, the net position and its
instruction, the report, re-runs that change nothing, and a real worker killed mid-run."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db.models import Sum
from django.utils import timezone

from hub import errors
from hub.models import AdapterConnection, Event
from settlement.models import Account, Transfer
from settlement.models_payins import FeeRule, Payin, Refund, SettlementRun
from settlement.payins import refund_create
from settlement.runs import (
    cutoff_of,
    fee_of,
    last_closed_day,
    settlement_run_execute,
    settlement_run_start,
    settlement_runs_start_due,
)
from settlement.tasks import settlement_runs_task
from tests.conftest import Api, Tenant, error_of, needs_postgres
from tests.factories.ledger import columns
from tests.factories.payins import paid_payins
from tests.settlement.test_ledger_concurrency import run_together
from tests.support.adapters import connect
from tests.support.worker import wait_until

UTC = ZoneInfo("UTC")


@pytest.fixture
def desk(api: Api, tenants: dict[str, Tenant]) -> dict[str, Any]:
    """The Korean institution's connection and two merchants' KRW accounts."""
    conn = connect(
        operator=tenants["operator"].participant,
        participant=tenants["payment_institution"].participant,
        adapter="stripe_like",
        base_url="http://127.0.0.1:9",
    )
    accounts = {
        name: Account.objects.get(
            pk=api.post(
                "/v1/accounts",
                {"currency": "KRW", "kind": "merchant_settlement"},
                key=tenants[name].key,
            ).json()["id"]
        )
        for name in ("merchant", "other_merchant")
    }
    return {"conn": conn, "accounts": accounts, "institution": tenants["payment_institution"]}


def yesterday() -> tuple[date, datetime]:
    """The institution's last closed business day, and a moment inside it."""
    day = last_closed_day("Asia/Seoul", timezone.now())
    return day, cutoff_of(day, "Asia/Seoul") - timedelta(hours=1)


def run_of(api: Api, operator: Tenant, institution: str, day: date) -> Any:
    return api.post(
        "/v1/settlement_runs",
        {"institution": institution, "currency": "KRW", "business_date": day.isoformat()},
        key=operator.key,
    )


def fees_account() -> Account:
    return Account.objects.get(kind=Account.Kind.FEES, currency="KRW")


# --- the calendar --------------------------------------------------------------------------------


def test_a_business_day_ends_at_the_cutoff_in_the_institutions_own_time_zone(settings: Any):
    settings.HUB = {**settings.HUB, "SETTLEMENT_CUTOFF": "23:00"}
    day = date(2026, 11, 27)
    assert cutoff_of(day, "Asia/Seoul") == datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    assert cutoff_of(day, "Asia/Shanghai") == datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    # 14:30 UTC is after Seoul's cutoff and before Shanghai's.
    now = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    assert last_closed_day("Asia/Seoul", now) == date(2026, 11, 27)
    assert last_closed_day("Asia/Shanghai", now) == date(2026, 11, 26)
    # Just after midnight in Seoul it is still the 27th in UTC; the 28th has not closed.
    now = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
    assert last_closed_day("Asia/Seoul", now) == date(2026, 11, 27)


@pytest.mark.parametrize(
    ("amount", "bps", "fixed", "fee"),
    [
        (250, 100, 0, 2),  # 2.5 -> 2 (half to even)
        (350, 100, 0, 4),  # 3.5 -> 4
        (349, 100, 0, 3),
        (351, 100, 0, 4),
        (1, 5000, 0, 0),  # 0.5 -> 0
        (3, 5000, 0, 2),  # 1.5 -> 2
        (150000, 250, 100, 3850),
        (50, 0, 100, 50),  # never more than the amount
        (1, 10000, 0, 1),
    ],
)
def test_fees_round_half_to_even_in_minor_units(amount, bps, fixed, fee):
    rule = FeeRule(livemode=False, currency="KRW", percent_bps=bps, fixed=fixed)
    assert fee_of(amount, rule) == fee
    exact = Decimal(amount) * bps / 10000
    assert abs(fee_of(amount, rule) - min(amount, exact + fixed)) <= Decimal("0.5")


# --- a run ---------------------------------------------------------------------------------------


def test_a_run_posts_the_days_payins_charges_fees_and_states_the_net(
    api: Api, tenants: dict[str, Tenant], desk: dict[str, Any]
):
    operator = tenants["operator"]
    fee = api.post(
        "/v1/fee_rules",
        {"percent_bps": 250, "fixed": {"amount": "100", "currency": "KRW"}},
        key=operator.key,
    )
    assert fee.status_code == 201
    own = api.post(
        "/v1/fee_rules",
        {
            "merchant": tenants["other_merchant"].id,
            "percent_bps": 0,
            "fixed": {"amount": "0", "currency": "KRW"},
        },
        key=operator.key,
    )
    assert (own.status_code, own.json()["merchant"]) == (201, tenants["other_merchant"].id)
    day, inside = yesterday()
    accounts = desk["accounts"]
    paid_payins(
        connection=desk["conn"],
        account=accounts["merchant"],
        amounts=[150000, 20000],
        succeeded_at=inside,
    )
    paid_payins(
        connection=desk["conn"],
        account=accounts["other_merchant"],
        amounts=[9999],
        succeeded_at=inside,
    )
    # Paid after the cutoff: tomorrow's run takes it.
    [late] = paid_payins(
        connection=desk["conn"],
        account=accounts["merchant"],
        amounts=[7000],
        succeeded_at=cutoff_of(day, "Asia/Seoul") + timedelta(seconds=1),
        prefix="late",
    )

    response = run_of(api, operator, desk["institution"].id, day)

    assert response.status_code == 202
    run_id = response.json()["id"]
    assert response.json()["status"] == "running"
    assert settlement_run_execute(run_id=run_id) == "completed"
    run = api.get(f"/v1/settlement_runs/{run_id}", key=operator.key).json()
    assert {k: run[k] for k in ("status", "payins_count", "time_zone", "direction")} == {
        "status": "completed",
        "payins_count": 3,
        "time_zone": "Asia/Seoul",
        "direction": "institution_pays_hub",
    }
    # 150000 * 2.5% + 100 = 3850; 20000 * 2.5% + 100 = 600; the other merchant pays none.
    assert (run["gross"], run["refunds_netted"], run["fees"], run["net"]) == (
        {"amount": "179999", "currency": "KRW"},
        {"amount": "0", "currency": "KRW"},
        {"amount": "4450", "currency": "KRW"},
        {"amount": "179999", "currency": "KRW"},
    )
    assert run["instruction"] == {
        "payer": desk["institution"].id,
        "payee": "hub",
        "amount": {"amount": "179999", "currency": "KRW"},
        "value_date": (day + timedelta(days=1)).isoformat(),
        "reference": run_id,
    }
    assert run["cutoff_at"] == cutoff_of(day, "Asia/Seoul").astimezone(UTC).isoformat().replace(
        "+00:00", "Z"
    )
    assert columns(accounts["merchant"]) == (4450, 170000, 0, 7000)
    assert columns(accounts["other_merchant"]) == (0, 9999, 0, 0)
    assert columns(fees_account()) == (0, 4450, 0, 0)
    receivable = Account.objects.get(kind=Account.Kind.INSTITUTION_RECEIVABLE)
    assert columns(receivable) == (179999, 0, 7000, 0)
    late.refresh_from_db()
    assert (late.status, late.run_id) == ("succeeded", None)
    fee_transfers = Transfer.objects.filter(code="fee").order_by("amount")
    assert [(t.amount, t.reference) for t in fee_transfers] == [
        (600, Payin.objects.get(reference="order-1", amount=20000).pk),
        (3850, Payin.objects.get(amount=150000).pk),
    ]
    assert Event.objects.filter(type="settlement_run.completed").count() == 1

    report = api.get(f"/v1/settlement_runs/{run_id}/report", key=operator.key)
    assert report.status_code == 200
    merchant, other = tenants["merchant"].id, tenants["other_merchant"].id
    lines = {line["merchant"]: line for line in report.json()["lines"]}
    assert lines[merchant] == {
        "merchant": merchant,
        "payins_count": 2,
        "gross": {"amount": "170000", "currency": "KRW"},
        "refunds_netted": {"amount": "0", "currency": "KRW"},
        "fees": {"amount": "4450", "currency": "KRW"},
        "credited": {"amount": "165550", "currency": "KRW"},
        "adjustments_count": 0,
        "adjustments": {"amount": "0", "currency": "KRW"},
    }
    assert lines[other]["credited"] == {"amount": "9999", "currency": "KRW"}
    csv_report = api.get(f"/v1/settlement_runs/{run_id}/report?format=csv", key=operator.key)
    assert csv_report["Content-Type"] == "text/csv; charset=utf-8"
    rows = csv_report.content.decode().splitlines()
    assert rows[0] == (
        "merchant,payins_count,gross,refunds_netted,fees,credited,adjustments_count,adjustments,"
        "currency"
    )
    assert sorted(rows[1:]) == sorted(
        [f"{merchant},2,170000,0,4450,165550,0,0,KRW", f"{other},1,9999,0,0,9999,0,0,KRW"]
    )


def test_running_a_run_again_changes_nothing(
    api: Api, tenants: dict[str, Tenant], desk: dict[str, Any]
):
    day, inside = yesterday()
    paid_payins(
        connection=desk["conn"],
        account=desk["accounts"]["merchant"],
        amounts=[1000, 2000],
        succeeded_at=inside,
    )
    first = run_of(api, tenants["operator"], desk["institution"].id, day).json()
    settlement_run_execute(run_id=first["id"])
    before = (
        Transfer.objects.count(),
        columns(desk["accounts"]["merchant"]),
        list(SettlementRun.objects.values()),
        Event.objects.count(),
    )

    again = run_of(api, tenants["operator"], desk["institution"].id, day)

    assert (again.status_code, again.json()["id"], again.json()["status"]) == (
        200,
        first["id"],
        "completed",
    )
    assert settlement_run_execute(run_id=first["id"]) == "skipped"
    after = (
        Transfer.objects.count(),
        columns(desk["accounts"]["merchant"]),
        list(SettlementRun.objects.values()),
        Event.objects.count(),
    )
    assert after == before


def test_a_run_before_its_cutoff_and_bad_runs_are_refused(
    api: Api, tenants: dict[str, Tenant], desk: dict[str, Any]
):
    operator = tenants["operator"]
    today = last_closed_day("Asia/Seoul", timezone.now()) + timedelta(days=1)
    institution = desk["institution"].id
    cases = [
        (run_of(api, operator, institution, today), 409, "cutoff_not_passed"),
        (run_of(api, operator, tenants["merchant"].id, today), 400, "institution_missing"),
        (
            api.post(
                "/v1/settlement_runs",
                {"institution": institution, "currency": "KRW", "business_date": "2026-02-30"},
                key=operator.key,
            ),
            400,
            "parameter_invalid",
        ),
        (
            api.post(
                "/v1/settlement_runs",
                {"institution": institution, "currency": "XYZ", "business_date": "2026-01-01"},
                key=operator.key,
            ),
            400,
            "currency_unknown",
        ),
        (
            api.post(
                "/v1/settlement_runs",
                {"institution": institution, "currency": "KRW", "business_date": "2026-01-01"},
                key=tenants["payment_institution"].key,
            ),
            403,
            None,
        ),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.json()
        if code is not None:
            assert error_of(response)["code"] == code
    assert SettlementRun.objects.count() == 0


def test_who_may_read_runs(api: Api, tenants: dict[str, Tenant], desk: dict[str, Any]):
    day, _ = yesterday()
    run = run_of(api, tenants["operator"], desk["institution"].id, day).json()
    path = f"/v1/settlement_runs/{run['id']}"
    assert api.get(path, key=tenants["payment_institution"].key).status_code == 200
    assert api.get(path, key=tenants["merchant"].key).status_code == 403
    assert api.get(path, key=tenants["regulator"].key).status_code == 403
    report = api.get(path + "/report", key=tenants["operator"].key)
    assert (report.status_code, error_of(report)["code"]) == (409, "run_not_completed")
    bad = api.get(path + "/report?format=xml", key=tenants["operator"].key)
    assert (bad.status_code, error_of(bad)["code"]) == (400, "parameter_invalid")
    assert api.post("/v1/fee_rules", {}, key=tenants["merchant"].key).status_code == 403
    listed = api.get("/v1/settlement_runs", key=tenants["payment_institution"].key).json()
    assert [r["id"] for r in listed["data"]] == [run["id"]]


def test_beat_starts_the_last_closed_day_of_each_institution_once(
    desk: dict[str, Any], tenants: dict[str, Tenant]
):
    from settlement.tasks import settlement_run_execute_task

    started = settlement_runs_start_due()

    # The sandbox institution collects CNY and KRW.
    runs = SettlementRun.objects.order_by("currency")
    assert [(r.currency, r.business_date) for r in runs] == [
        ("CNY", last_closed_day("Asia/Seoul", timezone.now())),
        ("KRW", last_closed_day("Asia/Seoul", timezone.now())),
    ]
    assert sorted(started) == sorted(r.pk for r in runs)
    assert settlement_runs_start_due() == []
    for run in runs:
        settlement_run_execute_task(run_id=run.pk)
    assert set(SettlementRun.objects.values_list("status", "net")) == {("completed", 0)}
    AdapterConnection.objects.update(status="disabled")
    assert settlement_runs_start_due(now=timezone.now() + timedelta(days=1)) == []


# --- a real worker, killed in the middle of a run ------------------------------------------------


def _kill_tree(pid: int) -> None:
    """SIGKILL a worker and its pool processes (children first found through /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    for child in [pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_run_settles_every_payin_once(
    api: Api, tenants: dict[str, Tenant], desk: dict[str, Any], celery_worker_factory: Any
):
    day, inside = yesterday()
    accounts = desk["accounts"]
    amounts = [1000 + n for n in range(600)]
    paid_payins(
        connection=desk["conn"], account=accounts["merchant"], amounts=amounts, succeeded_at=inside
    )
    paid_payins(
        connection=desk["conn"],
        account=accounts["other_merchant"],
        amounts=[500] * 200,
        succeeded_at=inside,
    )
    api.post(
        "/v1/fee_rules",
        {"percent_bps": 100, "fixed": {"amount": "0", "currency": "KRW"}},
        key=tenants["operator"].key,
    )
    knobs = {"HUB_SETTLEMENT_RUN_CHUNK": "5", "HUB_SETTLEMENT_RUN_LEASE": "2"}
    worker = celery_worker_factory(**knobs)

    run_id = run_of(api, tenants["operator"], desk["institution"].id, day).json()["id"]

    def settled() -> int:
        return Payin.objects.filter(status="settled").count()

    wait_until(lambda: settled() >= 100, timeout=60, what="a part of the run", log=worker.log)
    assert worker.proc is not None
    _kill_tree(worker.proc.pid)
    worker.proc.wait(timeout=10)
    time.sleep(0.5)
    part = settled()
    assert part < 800
    assert SettlementRun.objects.get(pk=run_id).status == "running"
    # Every chunk that committed is whole: its payins posted and charged, nothing else.
    assert Transfer.objects.filter(type="post").count() == part

    # Beat, on a fresh worker once the dead one's lease has run out, takes the run over.
    restarted = celery_worker_factory(**knobs)
    wait_until(
        lambda: SettlementRun.objects.filter(pk=run_id, lease_until__lt=timezone.now()).exists(),
        timeout=10,
        what="lease",
    )
    settlement_runs_task.delay()
    wait_until(
        lambda: SettlementRun.objects.get(pk=run_id).status == "completed",
        timeout=120,
        what="the run completed",
        log=restarted.log,
    )

    run = SettlementRun.objects.get(pk=run_id)
    assert settled() == 800
    assert Transfer.objects.filter(type="post").count() == 800
    assert Transfer.objects.filter(code="fee").count() == 800  # 1% of 500 is 5, of 1000+ 10+
    fees = sum(round(Decimal(a) / 100) for a in amounts) + 200 * 5
    assert (run.payins_count, run.gross, run.fees, run.net) == (
        800,
        sum(amounts) + 100000,
        fees,
        sum(amounts) + 100000,
    )
    assert Transfer.objects.filter(code="fee").aggregate(total=Sum("amount"))["total"] == fees
    assert columns(accounts["merchant"])[1] == sum(amounts)
    assert columns(accounts["other_merchant"]) == (200 * 5, 100000, 0, 0)
    assert columns(fees_account()) == (0, fees, 0, 0)


# --- refunds racing a run, on PostgreSQL ---------------------------------------------------------


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_refunds_and_credits_made_while_the_run_settles_lose_nothing_and_never_deadlock(
    tenants: dict[str, Tenant], desk: dict[str, Any], settings: Any, monkeypatch: Any
):
    """Each refund lands either before its payin's chunk (netted: the run posts less) or after
    it (held on the merchant's account); never both, never neither. New payins' credits to the
    same merchants (locking their accounts in id order, as every ledger writer does) go on
    meanwhile; nothing fails."""
    from settlement.ledger import TransferSpec, transfer_create
    from settlement.payouts import hub_account
    from tests.factories.core import principal_for

    settings.HUB = {**settings.HUB, "SETTLEMENT_RUN_CHUNK": 10}
    monkeypatch.setattr("settlement.payins.enqueue_after_commit", lambda *a, **kw: None)
    day, inside = yesterday()
    accounts = [desk["accounts"]["merchant"], desk["accounts"]["other_merchant"]]
    # The merchants' payins alternate, so that each chunk moves both merchants' accounts.
    payins = [
        payin
        for n in range(120)
        for payin in paid_payins(
            connection=desk["conn"],
            account=accounts[n % 2],
            amounts=[10000],
            succeeded_at=inside,
            prefix=f"p{n}",
        )
    ]
    receivable = hub_account(
        kind=Account.Kind.INSTITUTION_RECEIVABLE,
        currency="KRW",
        livemode=False,
        owner=desk["institution"].participant,
    )
    run, _ = settlement_run_start(
        institution_id=desk["institution"].id, currency="KRW", business_date=day, livemode=False
    )
    principals = {account.owner_id: principal_for(account.owner) for account in accounts}
    # Refund the payins from the last one backwards while the run settles them from the first.
    order = sorted(payins, key=lambda p: p.pk, reverse=True)

    def work(index: int) -> str:
        if index == 0:
            return settlement_run_execute(run_id=run.pk)
        if index >= 6:
            for n in range(30):
                transfer_create(
                    livemode=False,
                    spec=TransferSpec(
                        id=f"credit-{index}-{n}",
                        debit_account_id=receivable.pk,
                        credit_account_id=accounts[n % 2].pk,
                        amount=700,
                        currency="KRW",
                        pending=True,
                    ),
                )
            return "credited"
        for n, payin in enumerate(order[index - 1 :: 5]):
            refund_create(
                actor=principals[payin.merchant_id],
                payin_id=payin.pk,
                amount=1000 + index,
                currency="KRW",
                reference=f"rf-{index}-{n}",
            )
        return "refunded"

    results = run_together(8, work)

    assert results == ["completed"] + ["refunded"] * 5 + ["credited"] * 2
    refunds = list(Refund.objects.select_related("payin"))
    assert len(refunds) == 120
    netted = [r for r in refunds if r.netted]
    held = [r for r in refunds if not r.netted]
    for refund in netted:
        assert refund.payin.settled_amount == 10000 - refund.amount
    for refund in held:
        assert refund.payin.settled_amount == 10000
        assert Transfer.objects.get(id=refund.hold_id).type == "pending"
    run.refresh_from_db()
    assert (run.payins_count, run.status) == (120, "completed")
    assert run.refunds_netted == sum(r.amount for r in netted)
    for account in accounts:
        mine = [r for r in refunds if r.payin.account_id == account.pk]
        assert columns(account) == (
            0,
            60 * 10000 - sum(r.amount for r in mine if r.netted),
            sum(r.amount for r in mine if not r.netted),
            30 * 700,
        )
    assert sum(Payin.objects.values_list("refunds_pending", flat=True)) == sum(
        r.amount for r in refunds
    )


def test_a_worker_whose_run_was_taken_over_stops_before_writing(
    desk: dict[str, Any], settings: Any
):
    from settlement import runs

    settings.HUB = {**settings.HUB, "SETTLEMENT_RUN_CHUNK": 2}
    day, inside = yesterday()
    paid_payins(
        connection=desk["conn"],
        account=desk["accounts"]["merchant"],
        amounts=[100, 200, 300, 400, 500],
        succeeded_at=inside,
    )
    run, _ = settlement_run_start(
        institution_id=desk["institution"].id, currency="KRW", business_date=day, livemode=False
    )
    first = runs._claim(run.pk)
    assert runs._chunk(runs._settle_payins, run.pk, first) == 2
    assert runs._claim(run.pk) == "busy"
    # Its lease runs out (the worker hangs); another worker takes the run over.
    SettlementRun.objects.filter(pk=run.pk).update(lease_until=timezone.now())
    second = runs._claim(run.pk)
    assert second not in (first, "busy", "skipped")

    assert runs._chunk(runs._settle_payins, run.pk, first) is None
    assert Payin.objects.filter(status="settled").count() == 2
    SettlementRun.objects.filter(pk=run.pk).update(lease_until=timezone.now())
    assert settlement_run_execute(run_id=run.pk) == "completed"
    assert runs._complete(run.pk, second) is False
    run.refresh_from_db()
    assert (run.payins_count, run.gross, run.status) == (5, 1500, "completed")


def test_a_run_for_a_day_long_past_is_refused(
    api: Api, tenants: dict[str, Tenant], desk: dict[str, Any]
):
    for day in ("0001-01-01", "1900-01-01"):
        response = run_of(api, tenants["operator"], desk["institution"].id, date.fromisoformat(day))
        assert (response.status_code, error_of(response)["code"]) == (400, "business_date_too_old")
    assert SettlementRun.objects.count() == 0


def test_a_test_mode_day_closed_early_settles_what_came_before_and_leaves_the_rest(
    api: Api, tenants: dict[str, Tenant], desk: dict[str, Any]
):
    """A sandbox settles today's payins at once: the run's cutoff is the moment it was asked
    for; what succeeds after waits for the next day's run."""
    operator = tenants["operator"]
    today = last_closed_day("Asia/Seoul", timezone.now()) + timedelta(days=1)
    account = desk["accounts"]["merchant"]
    [early] = paid_payins(
        connection=desk["conn"],
        account=account,
        amounts=[150000],
        succeeded_at=timezone.now() - timedelta(seconds=5),
    )
    [later] = paid_payins(
        connection=desk["conn"],
        account=account,
        amounts=[7000],
        succeeded_at=timezone.now() + timedelta(seconds=60),
        prefix="later",
    )
    body = {
        "institution": desk["institution"].id,
        "currency": "KRW",
        "business_date": today.isoformat(),
        "close_early": True,
    }

    started = api.post("/v1/settlement_runs", body, key=operator.key)

    assert started.status_code == 202, started.json()
    run = SettlementRun.objects.get(pk=started.json()["id"])
    assert run.business_date == today
    assert run.cutoff_at <= timezone.now()
    assert settlement_run_execute(run_id=run.pk) == "completed"
    early.refresh_from_db()
    later.refresh_from_db()
    assert (early.status, early.run_id, later.status, later.run_id) == (
        "settled",
        run.pk,
        "succeeded",
        None,
    )
    assert columns(account) == (0, 150000, 0, 7000)


def test_closing_early_is_for_test_mode_and_for_a_day_that_has_begun(
    api: Api, tenants: dict[str, Tenant], desk: dict[str, Any]
):
    today = last_closed_day("Asia/Seoul", timezone.now()) + timedelta(days=1)
    institution = desk["institution"].id
    before = (SettlementRun.objects.count(), Event.objects.count())

    with pytest.raises(errors.InvalidRequest) as live:
        settlement_run_start(
            institution_id=institution,
            currency="KRW",
            business_date=today,
            livemode=True,
            close_early=True,
        )
    tomorrow = api.post(
        "/v1/settlement_runs",
        {
            "institution": institution,
            "currency": "KRW",
            "business_date": (today + timedelta(days=1)).isoformat(),
            "close_early": True,
        },
        key=tenants["operator"].key,
    )

    assert live.value.code == "close_early_live"
    assert (tomorrow.status_code, error_of(tomorrow)["code"]) == (409, "business_day_not_begun")
    assert (SettlementRun.objects.count(), Event.objects.count()) == before
