"""Races for one quote on PostgreSQL, auto-conversion after a settlement run, margin tiers, and
the operator's daily FX report."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from fx.auto import auto_convert_run
from fx.models import FxConversion, FxQuote
from fx.quotes import conversion_create, quote_create
from fx.reports import fx_daily_report
from settlement.models import Account, Transfer
from settlement.runs import settlement_run_execute, settlement_run_start
from tests.conftest import Api, Tenant, error_of, needs_postgres
from tests.factories.core import principal_for
from tests.factories.ledger import columns
from tests.factories.payins import paid_payins
from tests.fx.conftest import Desk
from tests.settlement.test_ledger_concurrency import run_together
from tests.settlement.test_settlement_runs import yesterday
from tests.support.adapters import connect


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_16_threads_converting_one_quote_convert_it_once(desk: Desk):
    actor = principal_for(desk.merchant.participant)
    quote = quote_create(
        actor=actor,
        sell_currency="CNY",
        buy_currency="KRW",
        sell_amount=1000_00,
        lock_seconds=300,
    )

    def convert(index: int) -> str:
        conversion_create(
            actor=actor,
            quote_id=quote.pk,
            sell_account_id=desk.cny.pk,
            buy_account_id=desk.krw.pk,
            reference=f"race-{index}",
        )
        return "converted"

    results = run_together(16, convert)

    assert sorted(results) == ["converted"] + ["quote_used"] * 15
    assert FxConversion.objects.count() == 1
    assert Transfer.objects.filter(code__in=["fx", "fx_margin"]).count() == 3
    assert columns(desk.cny) == (1000_00, 1_000_000_00, 0, 0)


def test_the_merchants_tier_sets_its_margin(desk: Desk, tenants: dict[str, Tenant], api: Api):
    response = api.post(
        "/v1/fx/tiers",
        {"merchant": desk.merchant.id, "tier": "premier"},
        key=tenants["operator"].key,
    )
    assert response.json() == {"object": "fx_tier", "merchant": desk.merchant.id, "tier": "premier"}
    quote = desk.quote(sell={"currency": "CNY", "amount": "1000.00"}, buy={"currency": "KRW"})
    assert quote.json()["margin"]["bps"] == 15
    assert quote.json()["margin"]["amount"] == {"amount": "1.50", "currency": "CNY"}
    for body, code in (
        ({"merchant": desk.merchant.id, "tier": "gold"}, "parameter_invalid"),
        ({"merchant": tenants["bank"].id, "tier": "premier"}, "merchant_missing"),
    ):
        refused = api.post("/v1/fx/tiers", body, key=tenants["operator"].key)
        assert (refused.status_code, error_of(refused)["code"]) == (400, code)
    assert api.post("/v1/fx/tiers", {}, key=desk.merchant.key).status_code == 403


def test_a_settlement_runs_krw_is_converted_to_cny_by_the_standing_order(
    desk: Desk, tenants: dict[str, Tenant], api: Api
):
    rule = api.post(
        "/v1/fx/auto_conversions",
        {"from_account": desk.krw.pk, "to_account": desk.cny.pk},
        key=desk.merchant.key,
    )
    assert rule.status_code == 201, rule.json()
    conn = connect(
        operator=tenants["operator"].participant,
        participant=tenants["payment_institution"].participant,
        adapter="stripe_like",
        base_url="http://127.0.0.1:9",
    )
    day, inside = yesterday()
    paid_payins(connection=conn, account=desk.krw, amounts=[150000, 50000], succeeded_at=inside)
    run, _ = settlement_run_start(
        institution_id=tenants["payment_institution"].id,
        currency="KRW",
        business_date=day,
        livemode=False,
    )
    settlement_run_execute(run_id=run.pk)
    before_cny = columns(desk.cny)

    made = auto_convert_run(run_id=run.pk)

    [conversion] = FxConversion.objects.all()
    assert made == [conversion.pk]
    assert (conversion.sell_currency, conversion.sell_amount) == ("KRW", 200000)
    assert conversion.metadata == {"settlement_run": run.pk}
    assert columns(desk.cny)[1] == before_cny[1] + conversion.buy_amount
    assert auto_convert_run(run_id=run.pk) == []  # once per run
    assert FxConversion.objects.count() == 1


def test_a_standing_order_needs_two_currencies_of_the_merchants_own(
    desk: Desk, tenants: dict[str, Tenant], api: Api
):
    other = Account.objects.create(
        livemode=False,
        owner=tenants["other_merchant"].participant,
        currency="CNY",
        kind="merchant_settlement",
    )
    for body, code, param in (
        (
            {"from_account": desk.krw.pk, "to_account": desk.krw.pk},
            "currency_pair_invalid",
            "to_account",
        ),
        ({"from_account": desk.krw.pk, "to_account": other.pk}, "account_missing", "to_account"),
    ):
        response = api.post("/v1/fx/auto_conversions", body, key=desk.merchant.key)
        assert (response.status_code, error_of(response)["code"], error_of(response)["param"]) == (
            400,
            code,
            param,
        )


def test_the_daily_report_shows_volumes_margin_positions_and_pnl(
    desk: Desk, tenants: dict[str, Tenant], api: Api
):
    actor = principal_for(desk.merchant.participant)
    made: list[FxConversion] = []
    for sell, buy, amount in (
        ("CNY", "KRW", 1000_00),
        ("KRW", "CNY", 300000),
        ("CNY", "KRW", 50_00),
    ):
        quote = quote_create(
            actor=actor, sell_currency=sell, buy_currency=buy, sell_amount=amount, lock_seconds=60
        )
        made.append(
            conversion_create(
                actor=actor,
                quote_id=quote.pk,
                sell_account_id=desk.cny.pk if sell == "CNY" else desk.krw.pk,
                buy_account_id=desk.krw.pk if sell == "CNY" else desk.cny.pk,
                reference=f"r-{len(made)}",
            )[0]
        )
    today = timezone.localtime(timezone.now(), timezone.get_fixed_timezone(480)).date()

    report = fx_daily_report(day=today, livemode=False)

    lines = {line["currency"]: line for line in report.lines}
    cny_sells = [c for c in made if c.sell_currency == "CNY"]
    krw_sells = [c for c in made if c.sell_currency == "KRW"]
    assert lines["CNY"]["bought"] == sum(c.sell_amount - c.margin_amount for c in cny_sells)
    assert lines["CNY"]["sold"] == sum(c.buy_amount for c in krw_sells)
    assert lines["CNY"]["margin_income"] == sum(c.margin_amount for c in cny_sells)
    assert lines["KRW"]["margin_income"] == sum(c.margin_amount for c in krw_sells)
    assert lines["CNY"]["conversions_selling"] == 2
    for currency, line in lines.items():
        assert line["opening_position"] == 0
        assert line["closing_position"] == line["bought"] - line["sold"], currency
    # At one rate all day, the P&L is the margin income valued in CNY (the conversions traded at
    # that rate, up to their rounding).
    pnl, income = Decimal(report.totals["pnl"]), Decimal(report.totals["margin_income"])
    assert abs(pnl - income) <= Decimal("0.05")
    response = api.get(
        f"/v1/fx/reports/daily?date={today.isoformat()}&format=csv", key=tenants["operator"].key
    )
    assert response.status_code == 200
    assert response.content.decode().splitlines()[0] == (
        "currency,conversions_selling,bought,sold,margin_income,opening_position,closing_position"
    )
    assert (
        api.get(f"/v1/fx/reports/daily?date={today.isoformat()}", key=desk.merchant.key).status_code
        == 403
    )
    bad = api.get("/v1/fx/reports/daily?date=yesterday", key=tenants["operator"].key)
    assert (bad.status_code, error_of(bad)["code"]) == (400, "parameter_invalid")


def test_quotes_and_conversions_are_their_merchants(
    desk: Desk, tenants: dict[str, Tenant], api: Api
):
    quote = desk.quote(sell={"currency": "CNY", "amount": "10.00"}, buy={"currency": "KRW"}).json()
    conversion = desk.convert(quote["id"], sell_account=desk.cny.pk, buy_account=desk.krw.pk).json()
    for path in (f"/v1/fx/quotes/{quote['id']}", f"/v1/fx/conversions/{conversion['id']}"):
        assert api.get(path, key=desk.merchant.key).status_code == 200
        assert api.get(path, key=tenants["operator"].key).status_code == 200
        assert api.get(path, key=tenants["other_merchant"].key).status_code == 404
    listed = api.get("/v1/fx/conversions", key=tenants["other_merchant"].key).json()
    assert listed["data"] == []
    assert FxQuote.objects.get().status == "used"


def test_a_lost_auto_conversion_task_is_made_up_by_the_sweep(
    desk: Desk, tenants: dict[str, Tenant], api: Api, monkeypatch: pytest.MonkeyPatch
):
    from fx.auto import auto_convert_recent

    monkeypatch.setattr("fx.auto.enqueue_after_commit", lambda *a, **kw: None)  # the task is lost
    api.post(
        "/v1/fx/auto_conversions",
        {"from_account": desk.krw.pk, "to_account": desk.cny.pk},
        key=desk.merchant.key,
    )
    conn = connect(
        operator=tenants["operator"].participant,
        participant=tenants["payment_institution"].participant,
        adapter="stripe_like",
        base_url="http://127.0.0.1:9",
    )
    day, inside = yesterday()
    paid_payins(connection=conn, account=desk.krw, amounts=[90000], succeeded_at=inside)
    run, _ = settlement_run_start(
        institution_id=tenants["payment_institution"].id,
        currency="KRW",
        business_date=day,
        livemode=False,
    )
    settlement_run_execute(run_id=run.pk)
    assert FxConversion.objects.count() == 0

    assert auto_convert_recent() == 1
    assert auto_convert_recent() == 0
    [conversion] = FxConversion.objects.all()
    assert (conversion.sell_amount, conversion.metadata) == (90000, {"settlement_run": run.pk})


@pytest.mark.parametrize("day", ["0001-01-01", "1999-01-03", "9999-12-31", "20261101"])
def test_a_report_day_out_of_range_is_refused(tenants: dict[str, Tenant], api: Api, day: str):
    response = api.get(f"/v1/fx/reports/daily?date={day}", key=tenants["operator"].key)
    assert (response.status_code, error_of(response)["code"], error_of(response)["param"]) == (
        400,
        "parameter_invalid",
        "date",
    )


def test_the_hubs_own_references_are_reserved(tenants: dict[str, Tenant], api: Api):
    response = api.post(
        "/v1/accounts",
        {"currency": "CNY", "kind": "fees", "reference": "hub:fees"},
        key=tenants["operator"].key,
    )
    assert (response.status_code, error_of(response)["code"]) == (400, "reference_reserved")
    assert not Account.objects.filter(reference="hub:fees").exists()
