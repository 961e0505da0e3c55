"""Account statements: what a merchant's finance team downloads for a period, in JSON, CSV and
XLSX, with opening and closing balances that the period's transfers lead from one to the other."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from hub import errors
from settlement import account_statements
from settlement.account_statements import (
    AccountStatement,
    StatementPeriod,
    StatementUnbalanced,
    account_statement_build,
)
from settlement.ledger import (
    Balances,
    TransferSpec,
    account_balances_at,
    holds_expire_due,
    transfer_create,
    transfer_post,
    transfer_void,
)
from settlement.models import Account, Transfer
from tests.conftest import Api, Tenant, api_key_of, error_of
from tests.factories.ledger import columns, open_account

pytestmark = pytest.mark.django_db
Kind = Account.Kind
SHANGHAI = ZoneInfo("Asia/Shanghai")
SEOUL = ZoneInfo("Asia/Seoul")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def sh(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=SHANGHAI)


def seoul(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=SEOUL)


class Clock:
    """What ``timezone.now`` answers: the ledger stamps ``created_at`` with it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    found = Clock(sh(12, 15, 12))
    monkeypatch.setattr("settlement.ledger.timezone.now", found)
    return found


@dataclass
class Books:
    equity: Account
    payouts: Account
    fees: Account
    cny: Account  # the merchant's
    krw_equity: Account
    krw: Account  # the merchant's
    other: Account  # another merchant's


@pytest.fixture
def books(tenants: dict[str, Tenant]) -> Books:
    merchant = tenants["merchant"].participant
    return Books(
        equity=open_account(Kind.EQUITY),
        payouts=open_account(Kind.PAYOUT_CLEARING),
        fees=open_account(Kind.FEES),
        cny=open_account(owner=merchant),
        krw_equity=open_account(Kind.EQUITY, "KRW"),
        krw=open_account(currency="KRW", owner=merchant),
        other=open_account(owner=tenants["other_merchant"].participant),
    )


def move(
    clock: Clock, at: datetime, debit: Account, credit: Account, amount: int, **fields: Any
) -> Transfer:
    clock.now = at
    transfer, created = transfer_create(
        livemode=False,
        spec=TransferSpec(
            debit_account_id=debit.pk,
            credit_account_id=credit.pk,
            amount=amount,
            currency=debit.currency,
            **fields,
        ),
    )
    assert created
    return transfer


def resolve(clock: Clock, at: datetime, hold: Transfer, how: str, amount: int | None = None):
    clock.now = at
    if how == "post":
        return transfer_post(livemode=False, pending_id=hold.id, amount=amount)[0]
    if how == "void":
        return transfer_void(livemode=False, pending_id=hold.id)[0]
    assert holds_expire_due(now=at) == 1
    return Transfer.objects.get(pending=hold, type="expire")


def get(api: Api, tenant: Tenant, account: Account, **params: str) -> Any:
    return api.get(f"/v1/accounts/{account.pk}/statement", key=tenant.key, params=params)


def ok(api: Api, tenant: Tenant, account: Account, **params: str) -> Any:
    response = get(api, tenant, account, **params)
    assert response.status_code == 200, response.content[:500]
    return response


def balances(currency: str, posted: str, pending: str, available: str, **columns: str) -> dict:
    return {
        "currency": currency,
        "posted": posted,
        "pending": pending,
        "available": available,
        **columns,
    }


# --- one month of a merchant's CNY account -------------------------------------------------------

# Excel would run it as a formula if it were not kept as text.
FORMULA = '=HYPERLINK("http://x.example","pay")'


@pytest.fixture
def november(clock: Clock, books: Books) -> dict[str, Transfer]:
    """Funded in October; in November a payin at its very first moment, a payout held and then
    posted in part, a fee; a payin at the very first moment of December."""
    b = books
    made = {"fund": move(clock, sh(10, 31, 12), b.equity, b.cny, 100_00)}
    made["payin"] = move(clock, sh(11, 1), b.equity, b.cny, 50_00, reference=FORMULA, code="payin")
    made["hold"] = move(
        clock, sh(11, 2, 9), b.cny, b.payouts, 30_00, pending=True, reference="po_1"
    )
    made["post"] = resolve(clock, sh(11, 3, 9), made["hold"], "post", 20_00)
    made["fee"] = move(
        clock,
        sh(11, 4, 9, 30, 15),
        b.cny,
        b.fees,
        5_25,
        reference="服务费 수수료",
        code="fee",
        metadata={"invoice": "INV-1", "note": "-2"},
    )
    made["december"] = move(clock, sh(12, 1), b.equity, b.cny, 7_00)
    return made


NOVEMBER = {"from": "2026-11-01", "to": "2026-12-01"}


def november_json(b: Books, t: dict[str, Transfer]) -> dict[str, Any]:
    zero = {"currency": "CNY"}
    return {
        "object": "account_statement",
        "account": b.cny.pk,
        "livemode": False,
        "currency": "CNY",
        "normal_balance": "credit",
        "tz": "Asia/Shanghai",
        "from": "2026-10-31T16:00:00Z",
        "to": "2026-11-30T16:00:00Z",
        "opening": {
            **zero,
            "posted": "100.00",
            "pending": "0.00",
            "available": "100.00",
            "debits_posted": "0.00",
            "credits_posted": "100.00",
            "debits_pending": "0.00",
            "credits_pending": "0.00",
        },
        "closing": {
            **zero,
            "posted": "124.75",
            "pending": "0.00",
            "available": "124.75",
            "debits_posted": "25.25",
            "credits_posted": "150.00",
            "debits_pending": "0.00",
            "credits_pending": "0.00",
        },
        "totals": {
            "debits_posted": "25.25",
            "credits_posted": "50.00",
            "net_posted": "24.75",
            "pending_change": "0.00",
            "count": 4,
        },
        "rows": [
            {
                "transfer": t["payin"].id,
                "created_at": "2026-10-31T16:00:00Z",
                "type": "single",
                "side": "credit",
                "counterparty": b.equity.pk,
                "amount": "50.00",
                "posted_change": "50.00",
                "pending_change": "0.00",
                "posted_balance": "150.00",
                "pending_balance": "0.00",
                "available_balance": "150.00",
                "reference": FORMULA,
                "code": "payin",
                "pending_transfer": None,
                "corrects": None,
                "metadata": {},
            },
            {
                "transfer": t["hold"].id,
                "created_at": "2026-11-02T01:00:00Z",
                "type": "pending",
                "side": "debit",
                "counterparty": b.payouts.pk,
                "amount": "30.00",
                "posted_change": "0.00",
                "pending_change": "-30.00",
                "posted_balance": "150.00",
                "pending_balance": "-30.00",
                "available_balance": "120.00",
                "reference": "po_1",
                "code": "",
                "pending_transfer": None,
                "corrects": None,
                "metadata": {},
            },
            {
                "transfer": t["post"].id,
                "created_at": "2026-11-03T01:00:00Z",
                "type": "post",
                "side": "debit",
                "counterparty": b.payouts.pk,
                "amount": "20.00",
                "posted_change": "-20.00",
                "pending_change": "30.00",
                "posted_balance": "130.00",
                "pending_balance": "0.00",
                "available_balance": "130.00",
                "reference": "po_1",
                "code": "",
                "pending_transfer": t["hold"].id,
                "corrects": None,
                "metadata": {},
            },
            {
                "transfer": t["fee"].id,
                "created_at": "2026-11-04T01:30:15Z",
                "type": "single",
                "side": "debit",
                "counterparty": b.fees.pk,
                "amount": "5.25",
                "posted_change": "-5.25",
                "pending_change": "0.00",
                "posted_balance": "124.75",
                "pending_balance": "0.00",
                "available_balance": "124.75",
                "reference": "服务费 수수료",
                "code": "fee",
                "pending_transfer": None,
                "corrects": None,
                "metadata": {"invoice": "INV-1", "note": "-2"},
            },
        ],
    }


def test_the_json_statement_of_a_month(api, tenants, books, november):
    response = ok(api, tenants["merchant"], books.cny, **NOVEMBER)

    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == (
        f'attachment; filename="{books.cny.pk}_2026-11-01_2026-12-01.json"'
    )
    assert response["Cache-Control"] == "private, no-store"
    assert response.json() == november_json(books, november)


def test_format_json_is_the_default(api, tenants, books, november):
    explicit = ok(api, tenants["merchant"], books.cny, format="json", **NOVEMBER)
    implicit = ok(api, tenants["merchant"], books.cny, **NOVEMBER)
    assert explicit.content == implicit.content


def test_the_operator_sees_the_merchants_statement(api, tenants, books, november):
    response = ok(api, tenants["operator"], books.cny, **NOVEMBER)
    assert response.json() == november_json(books, november)


def test_the_csv_statement_of_a_month(api, tenants, books, november):
    response = ok(api, tenants["merchant"], books.cny, format="csv", **NOVEMBER)

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="{books.cny.pk}_2026-11-01_2026-12-01.csv"'
    )
    body = response.content
    assert body.startswith(codecs.BOM_UTF8)
    text = body.decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(text, newline="")))
    assert text.count("\r\n") == len(lines)
    assert dict(lines[:19]) == {
        "statement": "account_statement",
        "account": books.cny.pk,
        "livemode": "false",
        "currency": "CNY",
        "normal_balance": "credit",
        "tz": "Asia/Shanghai",
        "from": "2026-11-01T00:00:00+08:00",
        "to": "2026-12-01T00:00:00+08:00",
        "opening_posted": "100.00",
        "opening_pending": "0.00",
        "opening_available": "100.00",
        "closing_posted": "124.75",
        "closing_pending": "0.00",
        "closing_available": "124.75",
        "debits_posted": "25.25",
        "credits_posted": "50.00",
        "net_posted": "24.75",
        "pending_change": "0.00",
        "count": "4",
    }
    assert lines[19] == []
    header, rows = lines[20], lines[21:]
    assert header == [
        "transfer",
        "created_at",
        "type",
        "side",
        "counterparty",
        "amount",
        "posted_change",
        "pending_change",
        "posted_balance",
        "pending_balance",
        "available_balance",
        "reference",
        "code",
        "pending_transfer",
        "corrects",
        "metadata",
    ]
    t, b = november, books
    # A text that Excel would read as a formula starts with an apostrophe.
    # fmt: off
    assert rows == [
        [t["payin"].id, "2026-11-01T00:00:00+08:00", "single", "credit", b.equity.pk,
         "50.00", "50.00", "0.00", "150.00", "0.00", "150.00", "'" + FORMULA, "payin",
         "", "", "{}"],
        [t["hold"].id, "2026-11-02T09:00:00+08:00", "pending", "debit", b.payouts.pk,
         "30.00", "0.00", "-30.00", "150.00", "-30.00", "120.00", "po_1", "",
         "", "", "{}"],
        [t["post"].id, "2026-11-03T09:00:00+08:00", "post", "debit", b.payouts.pk,
         "20.00", "-20.00", "30.00", "130.00", "0.00", "130.00", "po_1", "",
         t["hold"].id, "", "{}"],
        [t["fee"].id, "2026-11-04T09:30:15+08:00", "single", "debit", b.fees.pk,
         "5.25", "-5.25", "0.00", "124.75", "0.00", "124.75", "服务费 수수료", "fee",
         "", "", '{"invoice":"INV-1","note":"-2"}'],
    ]
    # fmt: on


def _sheet(response: Any) -> Any:
    assert response["Content-Type"] == XLSX
    workbook = load_workbook(io.BytesIO(response.content))
    assert workbook.sheetnames == ["Statement"]
    return workbook["Statement"]


def decimals(*values: str) -> list[Decimal]:
    return [Decimal(value) for value in values]


def _number(cell: Any) -> Decimal:
    assert cell.data_type == "n", cell
    assert isinstance(cell.value, int | float), cell.value
    return Decimal(str(cell.value))


def test_the_xlsx_statement_of_a_month(api, tenants, books, november):
    response = ok(api, tenants["merchant"], books.cny, format="xlsx", **NOVEMBER)

    assert response["Content-Disposition"] == (
        f'attachment; filename="{books.cny.pk}_2026-11-01_2026-12-01.xlsx"'
    )
    ws = _sheet(response)
    summary = {row[0].value: row[1] for row in ws.iter_rows(min_row=1, max_row=19)}
    assert [summary[k].value for k in ("statement", "account", "currency", "tz")] == [
        "account_statement",
        books.cny.pk,
        "CNY",
        "Asia/Shanghai",
    ]
    # Excel has no time zones: local times, in the zone the summary names.
    assert summary["from"].value == datetime(2026, 11, 1)  # noqa: DTZ001
    assert summary["to"].value == datetime(2026, 12, 1)  # noqa: DTZ001
    assert summary["from"].number_format == "yyyy-mm-dd hh:mm:ss"
    money = {
        "opening_posted": "100.00",
        "opening_pending": "0.00",
        "opening_available": "100.00",
        "closing_posted": "124.75",
        "closing_pending": "0.00",
        "closing_available": "124.75",
        "debits_posted": "25.25",
        "credits_posted": "50.00",
        "net_posted": "24.75",
        "pending_change": "0.00",
    }
    for name, amount in money.items():
        assert _number(summary[name]) == Decimal(amount), name
        assert summary[name].number_format == "#,##0.00", name
    assert summary["count"].value == 4
    assert all(cell.value is None for cell in ws[20])
    assert [cell.value for cell in ws[21]][:6] == [
        "transfer",
        "created_at",
        "type",
        "side",
        "counterparty",
        "amount",
    ]
    rows = list(ws.iter_rows(min_row=22))
    assert len(rows) == 4
    payin, hold, post, fee = rows
    assert [c.value for c in payin[:5]] == [
        november["payin"].id,
        datetime(2026, 11, 1),  # noqa: DTZ001
        "single",
        "credit",
        books.equity.pk,
    ]
    assert payin[1].number_format == "yyyy-mm-dd hh:mm:ss"
    # Kept as text, not turned into a formula.
    assert (payin[11].value, payin[11].data_type) == (FORMULA, "s")
    assert [_number(c) for c in hold[5:11]] == decimals("30", "0", "-30", "150", "-30", "120")
    assert [_number(c) for c in post[5:11]] == decimals("20", "-20", "30", "130", "0", "130")
    assert post[13].value == november["hold"].id
    assert [_number(c) for c in fee[5:11]] == decimals(
        "5.25", "-5.25", "0", "124.75", "0", "124.75"
    )
    assert all(c.number_format == "#,##0.00" for c in fee[5:11])
    assert fee[1].value == datetime(2026, 11, 4, 9, 30, 15)  # noqa: DTZ001
    assert [c.value for c in fee[11:16]] == [
        "服务费 수수료",
        "fee",
        None,
        None,
        '{"invoice":"INV-1","note":"-2"}',
    ]


# --- periods and their boundaries ----------------------------------------------------------------


def test_an_empty_period_opens_and_closes_alike(api, tenants, books, november):
    body = ok(api, tenants["merchant"], books.cny, **{"from": "2026-11-10", "to": "2026-11-20"})
    body = body.json()
    held = balances(
        "CNY",
        "124.75",
        "0.00",
        "124.75",
        debits_posted="25.25",
        credits_posted="150.00",
        debits_pending="0.00",
        credits_pending="0.00",
    )
    assert (body["opening"], body["closing"], body["rows"]) == (held, held, [])
    assert body["totals"] == {
        "debits_posted": "0.00",
        "credits_posted": "0.00",
        "net_posted": "0.00",
        "pending_change": "0.00",
        "count": 0,
    }


def test_a_period_of_no_length_is_empty(api, tenants, books, november):
    # The payin was made at exactly this moment: it belongs to periods that start there.
    body = ok(api, tenants["merchant"], books.cny, **{"from": "2026-11-01", "to": "2026-11-01"})
    body = body.json()
    assert body["rows"] == []
    assert body["opening"] == body["closing"]
    assert body["closing"]["posted"] == "100.00"


def test_a_transfer_on_a_boundary_belongs_to_the_period_it_starts(api, tenants, books, november):
    merchant = tenants["merchant"]
    months = [
        ("2026-10-01", "2026-11-01"),
        ("2026-11-01", "2026-12-01"),
        ("2026-12-01", "2027-01-01"),
    ]
    bodies = [
        ok(api, merchant, books.cny, **{"from": start, "to": end}).json() for start, end in months
    ]
    listed = [[row["transfer"] for row in body["rows"]] for body in bodies]
    t = november
    assert listed == [
        [t["fund"].id],
        [t["payin"].id, t["hold"].id, t["post"].id, t["fee"].id],
        [t["december"].id],
    ]
    for earlier, later in itertools.pairwise(bodies):
        assert earlier["closing"] == later["opening"]
    # The balance "at" an instant counts what was made at it; a statement closing there does not.
    at_december = account_balances_at(account=books.cny, at=sh(12, 1))
    assert at_december.credits_posted == 157_00
    assert bodies[1]["closing"]["credits_posted"] == "150.00"


def test_times_with_offsets_bound_the_period_to_the_microsecond(api, tenants, books, november):
    merchant = tenants["merchant"]
    just_before = ok(
        api,
        merchant,
        books.cny,
        **{"from": "2026-10-31T15:59:59.999999Z", "to": "2026-10-31T16:00:00Z"},
    ).json()
    assert just_before["rows"] == []
    at_it = ok(
        api,
        merchant,
        books.cny,
        **{"from": "2026-11-01T00:00:00+08:00", "to": "2026-10-31T16:00:00.000001Z"},
    ).json()
    assert [row["transfer"] for row in at_it["rows"]] == [november["payin"].id]


@pytest.mark.parametrize("how", ["post", "void", "expire"])
def test_a_hold_resolved_in_the_next_period(api, tenants, books, clock, how):
    b = books
    move(clock, sh(11, 1, 10), b.equity, b.cny, 100_00)
    # Two hours to live: it expires at 01:00 on the 1st of December.
    hold = move(clock, sh(11, 30, 23), b.cny, b.payouts, 30_00, pending=True, timeout_seconds=7200)
    # Posted or voided before it expires; the expiry written after.
    resolution = resolve(clock, sh(12, 1, 2) if how == "expire" else sh(12, 1, 0, 30), hold, how)
    merchant = tenants["merchant"]

    nov = ok(api, merchant, b.cny, **NOVEMBER).json()
    dec = ok(api, merchant, b.cny, **{"from": "2026-12-01", "to": "2027-01-01"}).json()

    assert (nov["closing"]["posted"], nov["closing"]["pending"]) == ("100.00", "-30.00")
    assert nov["closing"]["available"] == "70.00"
    assert nov["closing"] == dec["opening"]
    [row] = dec["rows"]
    posted = "-30.00" if how == "post" else "0.00"
    assert {k: row[k] for k in ("transfer", "type", "side", "amount", "pending_transfer")} == {
        "transfer": resolution.id,
        "type": how,
        "side": "debit",
        "amount": "30.00",
        "pending_transfer": hold.id,
    }
    assert (row["posted_change"], row["pending_change"]) == (posted, "30.00")
    closing = "70.00" if how == "post" else "100.00"
    assert (dec["closing"]["posted"], dec["closing"]["pending"]) == (closing, "0.00")
    assert dec["closing"]["available"] == closing
    assert dec["totals"]["pending_change"] == "30.00"
    assert dec["totals"]["debits_posted"] == ("30.00" if how == "post" else "0.00")


def test_a_krw_statement_has_no_decimals_and_reads_in_seoul(api, tenants, books, clock):
    b = books
    move(clock, seoul(10, 31, 23), b.krw_equity, b.krw, 150_000)
    payin = move(clock, seoul(11, 1), b.krw_equity, b.krw, 2_500, reference="KR-1")
    merchant = tenants["merchant"]

    body = ok(api, merchant, b.krw, **NOVEMBER).json()
    assert (body["tz"], body["from"], body["to"]) == (
        "Asia/Seoul",
        "2026-10-31T15:00:00Z",
        "2026-11-30T15:00:00Z",
    )
    assert (body["opening"]["posted"], body["closing"]["posted"]) == ("150000", "152500")
    assert body["totals"]["credits_posted"] == "2500"
    [row] = body["rows"]
    assert (row["transfer"], row["amount"], row["posted_balance"]) == (payin.id, "2500", "152500")

    # Read in Shanghai, November starts an hour later: the payin was still October's.
    shanghai = ok(api, merchant, b.krw, tz="Asia/Shanghai", **NOVEMBER).json()
    assert (shanghai["tz"], shanghai["rows"]) == ("Asia/Shanghai", [])
    assert shanghai["opening"]["posted"] == "152500"

    ws = _sheet(ok(api, merchant, b.krw, format="xlsx", **NOVEMBER))
    summary = {row[0].value: row[1] for row in ws.iter_rows(min_row=1, max_row=19)}
    assert (summary["closing_posted"].value, summary["closing_posted"].number_format) == (
        152_500,
        "#,##0",
    )
    [table_row] = list(ws.iter_rows(min_row=22))
    assert [c.value for c in table_row[5:11]] == [2500, 2500, 0, 152500, 0, 152500]
    assert all(c.number_format == "#,##0" for c in table_row[5:11])
    assert table_row[1].value == datetime(2026, 11, 1)  # noqa: DTZ001

    text = ok(api, merchant, b.krw, format="csv").content.decode("utf-8")
    csv_rows = list(csv.reader(io.StringIO(text, newline="")))
    assert csv_rows[0][0] == "\ufeffstatement"


def test_awkward_text_survives_every_format(api, tenants, books, clock):
    move(clock, sh(11, 1, 10), books.equity, books.cny, 1_00)
    move(
        clock,
        sh(11, 2, 10),
        books.cny,
        books.fees,
        1,
        id="-fix-1",
        reference="a\x01b",
        code="#N/A",
        metadata={"k": "x\x02" + "y" * 400},
    )
    merchant, nov = tenants["merchant"], {**NOVEMBER, "tz": "UTC"}

    body = ok(api, merchant, books.cny, **nov).json()
    row = body["rows"][1]
    assert (row["transfer"], row["reference"], row["code"]) == ("-fix-1", "a\x01b", "#N/A")

    text = ok(api, merchant, books.cny, format="csv", **nov).content.decode("utf-8-sig")
    [*_, line] = list(csv.reader(io.StringIO(text, newline="")))
    assert line[:3] == ["'-fix-1", "2026-11-02T02:00:00+00:00", "single"]
    assert line[11:13] == ["a\x01b", "#N/A"]
    assert line[15] == '{"k":"x\\u0002' + "y" * 400 + '"}'

    ws = _sheet(ok(api, merchant, books.cny, format="xlsx", **nov))
    [_, cells] = list(ws.iter_rows(min_row=22))
    assert cells[0].value == "-fix-1"
    assert cells[1].value == datetime(2026, 11, 2, 2)  # noqa: DTZ001
    assert [(c.value, c.data_type) for c in cells[11:13]] == [("a\ufffdb", "s"), ("#N/A", "s")]
    assert cells[15].value == '{"k":"x\\u0002' + "y" * 400 + '"}'


def test_a_debit_normal_account_counts_debits_up(api, tenants, books, clock):
    cash = open_account(Kind.BANK_CASH)
    move(clock, sh(11, 2), cash, books.equity, 80_00)
    move(clock, sh(11, 3), books.fees, cash, 30_00)
    body = ok(api, tenants["operator"], cash, **NOVEMBER).json()
    assert body["normal_balance"] == "debit"
    assert [(r["side"], r["posted_change"], r["posted_balance"]) for r in body["rows"]] == [
        ("debit", "80.00", "80.00"),
        ("credit", "-30.00", "50.00"),
    ]
    assert body["totals"] == {
        "debits_posted": "80.00",
        "credits_posted": "30.00",
        "net_posted": "50.00",
        "pending_change": "0.00",
        "count": 2,
    }


def test_without_a_period_it_is_the_month_to_date(api, tenants, books, november, clock):
    clock.now = sh(11, 15, 10)
    merchant = tenants["merchant"]
    response = ok(api, merchant, books.cny)
    body = response.json()
    assert (body["from"], body["to"]) == ("2026-10-31T16:00:00Z", "2026-11-15T02:00:00Z")
    assert response["Content-Disposition"] == (
        f'attachment; filename="{books.cny.pk}_2026-11-01_2026-11-15T100000.json"'
    )
    assert len(body["rows"]) == 4
    # "to" alone: the month it closes.
    body = ok(api, merchant, books.cny, to="2026-12-01").json()
    assert (body["from"], body["to"]) == ("2026-10-31T16:00:00Z", "2026-11-30T16:00:00Z")
    # "from" alone: up to now.
    body = ok(api, merchant, books.cny, **{"from": "2026-11-03"}).json()
    assert (body["from"], body["to"]) == ("2026-11-02T16:00:00Z", "2026-11-15T02:00:00Z")
    assert [row["type"] for row in body["rows"]] == ["post", "single"]


def test_with_to_now_it_closes_on_the_accounts_balances(api, tenants, books, november, clock):
    clock.now = sh(12, 2)
    body = ok(api, tenants["merchant"], books.cny, **{"from": "2026-10-01"}).json()
    account = books.cny
    account.refresh_from_db()
    assert {k: body["closing"][k] for k in ("posted", "pending", "available")} == {
        "posted": "131.75",
        "pending": "0.00",
        "available": "131.75",
    }
    assert (account.posted, account.pending, account.available) == (131_75, 0, 131_75)
    assert len(body["rows"]) == 6


def test_a_year_is_the_longest_period(api, tenants, books, clock):
    merchant = tenants["merchant"]
    leap = {"from": "2024-01-01", "to": "2025-01-01"}
    assert ok(api, merchant, books.cny, **leap).json()["rows"] == []
    response = get(
        api,
        merchant,
        books.cny,
        **{"from": "2024-01-01T00:00:00+08:00", "to": "2025-01-01T00:00:00.000001+08:00"},
    )
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["param"]) == ("period_too_long", "to")


@pytest.mark.parametrize(
    ("fmt", "limit"), [("json", "MAX_ROWS"), ("csv", "MAX_ROWS"), ("xlsx", "MAX_XLSX_ROWS")]
)
def test_too_many_rows_is_a_400(api, tenants, books, november, monkeypatch, fmt, limit):
    monkeypatch.setattr(account_statements, limit, 3)
    response = get(api, tenants["merchant"], books.cny, format=fmt, **NOVEMBER)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("statement_too_large", "to")
    assert "more than 3 transfers" in error["message"]
    monkeypatch.setattr(account_statements, limit, 4)
    ok(api, tenants["merchant"], books.cny, format=fmt, **NOVEMBER)


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"format": "pdf"}, "parameter_invalid", "format"),
        ({"format": "CSV"}, "parameter_invalid", "format"),
        ({"format": ""}, "parameter_invalid", "format"),
        ({"from": "yesterday"}, "parameter_invalid", "from"),
        ({"from": ""}, "parameter_invalid", "from"),
        ({"from": "2026-11-01T00:00:00"}, "parameter_invalid", "from"),  # no offset
        ({"to": "2026-02-30"}, "parameter_invalid", "to"),
        ({"to": "2026-11-01T24:00:00+08:00"}, "parameter_invalid", "to"),
        ({"from": "\uff12\uff10\uff12\uff16-11-01"}, "parameter_invalid", "from"),
        ({"from": "0001-01-01T00:00:00+14:00"}, "parameter_invalid", "from"),
        ({"to": "9999-12-31T23:59:59-12:00"}, "parameter_invalid", "to"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "period_invalid", "from"),
        (
            {"from": "2026-11-01T00:00:00+08:00", "to": "2026-11-01T00:00:00+09:00"},
            "period_invalid",
            "from",
        ),
        ({"from": "2030-01-01"}, "period_invalid", "from"),  # after now
        ({"from": "2025-01-01", "to": "2026-11-01"}, "period_too_long", "to"),
        ({"tz": "Mars/Olympus_Mons"}, "parameter_invalid", "tz"),
        ({"tz": "../../etc/passwd"}, "parameter_invalid", "tz"),
        ({"tz": "asia/shanghai"}, "parameter_invalid", "tz"),
        ({"tz": ""}, "parameter_invalid", "tz"),
    ],
)
def test_bad_parameters_are_400(api, tenants, books, clock, params, code, param):
    response = get(api, tenants["merchant"], books.cny, **params)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param)


# --- who may read it -----------------------------------------------------------------------------


def test_another_merchants_account_is_404_whatever_the_parameters(api, tenants, books):
    for params in ({}, {"format": "pdf"}, {"from": "bad"}):
        response = get(api, tenants["merchant"], books.other, **params)
        assert response.status_code == 404
        assert error_of(response)["code"] == "resource_missing"


def test_the_regulator_is_403(api, tenants, books):
    response = get(api, tenants["regulator"], books.cny, format="csv")
    assert response.status_code == 403
    assert error_of(response)["code"] == "role_forbidden"


def test_a_key_without_accounts_read_is_403(api, tenants, books):
    merchant = tenants["merchant"]
    key = api_key_of(merchant.key)
    key.scopes = [scope for scope in key.scopes if scope != "accounts:read"]
    key.save(update_fields=["scopes"])
    response = get(api, merchant, books.cny)
    assert response.status_code == 403
    assert error_of(response)["code"] == "scope_missing"


# --- the statement checks itself -----------------------------------------------------------------


def test_a_statement_that_does_not_balance_is_never_returned(books, november, monkeypatch):
    real = account_statements.account_balances_at

    def off_by_one(*, account: Account, at: datetime) -> Balances:
        found = real(account=account, at=at)
        if at > sh(11, 30):  # the closing balances
            return Balances(
                found.debits_posted,
                found.credits_posted + 1,
                found.debits_pending,
                found.credits_pending,
            )
        return found

    monkeypatch.setattr(account_statements, "account_balances_at", off_by_one)
    period = StatementPeriod(start=sh(11, 1), end=sh(12, 1), tz=SHANGHAI)
    with pytest.raises(StatementUnbalanced, match="does not balance: credits_posted, "):
        account_statement_build(account=books.cny, period=period)


def _assert_balanced(s: AccountStatement) -> None:
    sign = 1 if s.normal_balance == "credit" else -1
    t = s.totals
    assert s.opening.posted + sign * (t.credits_posted - t.debits_posted) == s.closing.posted
    assert t.count == len(s.rows)
    assert (s.rows[-1].after if s.rows else s.opening) == s.closing


# A plan: (what, amount, seconds to wait before it). "in"/"out" move money into and out of the
# merchant's account (out may be held: pending), "post"/"void" resolve the oldest open hold.
steps = st.lists(
    st.tuples(
        st.sampled_from(["in", "out", "hold", "post", "void"]),
        st.integers(1, 5_000),
        st.sampled_from([0, 0, 1, 7, 600]),
    ),
    min_size=0,
    max_size=20,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps, cut=st.integers(0, 40))
def test_any_history_gives_statements_that_balance_and_chain(plan, cut, monkeypatch, tenants):
    clock = Clock(sh(11, 1))
    monkeypatch.setattr("settlement.ledger.timezone.now", clock)
    with transaction.atomic():
        equity, payouts = open_account(Kind.EQUITY), open_account(Kind.PAYOUT_CLEARING)
        merchant = open_account(owner=tenants["merchant"].participant)
        start = clock.now
        holds: list[Transfer] = []
        moments = [start]
        for what, amount, wait in plan:
            clock.now += timedelta(seconds=wait)
            refused = None
            try:
                if what == "in":
                    move(clock, clock.now, equity, merchant, amount)
                elif what in ("out", "hold"):
                    made = move(clock, clock.now, merchant, payouts, amount, pending=what == "hold")
                    if what == "hold":
                        holds.append(made)
                elif holds:
                    hold = holds.pop(0)
                    resolve(clock, clock.now, hold, what, min(amount, hold.amount))
            except errors.HubError as exc:
                refused = exc.code
            assert refused in (None, "insufficient_funds")
            moments.append(clock.now)
        clock.now += timedelta(seconds=1)
        now = clock.now

        whole = account_statement_build(
            account=merchant, period=StatementPeriod(start=start, end=now, tz=SHANGHAI)
        )
        _assert_balanced(whole)
        dp, cp, dpe, cpe = columns(merchant)
        closing = whole.closing
        assert (
            closing.debits_posted,
            closing.credits_posted,
            closing.debits_pending,
            closing.credits_pending,
        ) == (dp, cp, dpe, cpe)
        assert (closing.posted, closing.pending, closing.available) == (
            merchant.posted,
            merchant.pending,
            merchant.available,
        )
        assert (
            whole.totals.count
            == Transfer.objects.filter(debit_account=merchant).count()
            + Transfer.objects.filter(credit_account=merchant).count()
        )

        # Cut anywhere (also where several transfers share a moment): the two halves chain.
        middle = moments[cut % len(moments)]
        first, second = (
            account_statement_build(
                account=merchant, period=StatementPeriod(start=a, end=b, tz=SHANGHAI)
            )
            for a, b in ((start, middle), (middle, now))
        )
        for half in (first, second):
            _assert_balanced(half)
        assert first.closing == second.opening
        assert first.opening == whole.opening
        assert second.closing == whole.closing
        assert [r.transfer for r in first.rows + second.rows] == [r.transfer for r in whole.rows]
        transaction.set_rollback(True)


# --- outside a transaction, and under concurrent writes ------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_statement_outside_any_transaction(api, tenants):
    merchant = tenants["merchant"]
    equity, account = open_account(Kind.EQUITY), open_account(owner=merchant.participant)
    transfer_create(
        livemode=False,
        spec=TransferSpec(
            debit_account_id=equity.pk, credit_account_id=account.pk, amount=12_34, currency="CNY"
        ),
    )
    assert not connection.in_atomic_block
    response = ok(api, merchant, account, format="csv")
    assert "closing_posted,12.34\r\n" in response.content.decode("utf-8-sig")


@pytest.mark.django_db(transaction=True)
def test_statements_balance_while_transfers_are_being_made(tenants):
    """Its reads see one state of the ledger: a transfer committed between them would otherwise
    make the closing balance disagree with the rows."""
    equity = open_account(Kind.EQUITY)
    merchant = open_account(owner=tenants["merchant"].participant)
    start = datetime.now(tz=UTC) - timedelta(minutes=1)
    period = StatementPeriod(start=start, end=start + timedelta(days=1), tz=SHANGHAI)
    stop = threading.Event()
    made = []

    def write() -> None:
        try:
            while not stop.is_set():
                transfer_create(
                    livemode=False,
                    spec=TransferSpec(
                        debit_account_id=equity.pk,
                        credit_account_id=merchant.pk,
                        amount=1,
                        currency="CNY",
                    ),
                )
                made.append(1)
        finally:
            connection.close()

    writer = threading.Thread(target=write)
    writer.start()
    counts: set[int] = set()
    deadline = time.monotonic() + 30
    try:
        # Until the statements have seen the ledger grow many times over.
        while len(counts) < 10 and time.monotonic() < deadline:
            statement = account_statement_build(account=merchant, period=period)
            _assert_balanced(statement)
            counts.add(statement.totals.count)
            # Let the writer in: on SQLite the reads hold the database's write lock.
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join()
    assert len(counts) >= 10
    final = account_statement_build(account=merchant, period=period)
    assert final.closing.credits_posted == columns(merchant)[1] == final.totals.count == len(made)
