"""The operator's daily FX report (pandas): per currency, what the hub bought and sold through
conversions that day, its margin income, and its position at the day's end; and the day's P&L in
CNY: margin income plus the change in the positions' value at the day's reference rates.

A conversion trades at the reference rate, so it leaves the positions' value unchanged at that
day's rate; what the positions earn or lose comes from the rates moving afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from fx.models import FxConversion
from fx.rates import latest_rate
from hub.money import currency_exponent, money_payload
from settlement.ledger import account_balances_at
from settlement.models import Account

REPORT_TIME_ZONE = "Asia/Shanghai"
REPORT_CURRENCY = "CNY"


@dataclass(frozen=True)
class DailyReport:
    day: date
    lines: list[dict[str, Any]]
    totals: dict[str, Any]


def _bounds(day: date) -> tuple[datetime, datetime]:
    zone = ZoneInfo(REPORT_TIME_ZONE)
    start = datetime.combine(day, time(), tzinfo=zone)
    return start, start + timedelta(days=1)


def _positions(at: datetime, livemode: bool) -> dict[str, int]:
    """The hub's position per currency at ``at`` (its FX position accounts' posted balances)."""
    held: dict[str, int] = {}
    for account in Account.objects.filter(kind=Account.Kind.FX_POSITION, livemode=livemode):
        balances = account_balances_at(account=account, at=at)
        # Credit-normal: what the hub bought in the currency less what it sold.
        posted = balances.credits_posted - balances.debits_posted
        held[account.currency] = held.get(account.currency, 0) + posted
    return held


def _value(positions: dict[str, int], on: date) -> Decimal:
    """The positions' value in CNY major units at the reference rates of ``on``."""
    total = Decimal(0)
    for currency, minor in positions.items():
        major = Decimal(minor).scaleb(-currency_exponent(currency))
        rate = (
            Decimal(1)
            if currency == REPORT_CURRENCY
            else latest_rate(base=currency, quote=REPORT_CURRENCY, on=on).rate
        )
        total += major * rate
    return total


def fx_daily_report(*, day: date, livemode: bool) -> DailyReport:
    start, end = _bounds(day)
    rows = list(
        FxConversion.objects.filter(
            livemode=livemode, created_at__gte=start, created_at__lt=end
        ).values_list("sell_currency", "buy_currency", "sell_amount", "margin_amount", "buy_amount")
    )
    frame = pd.DataFrame(rows, columns=["sell_currency", "buy_currency", "sell", "margin", "buy"])
    # Python integers (object columns): int64 sums would wrap silently at large volumes.
    frame = frame.astype({"sell": object, "margin": object, "buy": object})
    frame["bought"] = frame["sell"] - frame["margin"]  # what the hub's position took in
    bought = frame.groupby("sell_currency")["bought"].sum()
    margin = frame.groupby("sell_currency")["margin"].sum()
    sold = frame.groupby("buy_currency")["buy"].sum()
    conversions = frame.groupby("sell_currency").size()
    opening, closing = _positions(start, livemode), _positions(end, livemode)
    currencies = sorted(set(bought.index) | set(sold.index) | set(opening) | set(closing))
    lines = []
    for currency in currencies:
        line = {
            "currency": currency,
            "conversions_selling": int(conversions.get(currency, 0)),
            "bought": int(bought.get(currency, 0)),
            "sold": int(sold.get(currency, 0)),
            "margin_income": int(margin.get(currency, 0)),
            "opening_position": opening.get(currency, 0),
            "closing_position": closing.get(currency, 0),
        }
        lines.append(line)
    previous = day - timedelta(days=1)
    revaluation = _value(closing, day) - _value(opening, previous)
    income = _value({c: int(margin.get(c, 0)) for c in currencies}, day)
    unit = Decimal(1).scaleb(-currency_exponent(REPORT_CURRENCY))
    income_shown = income.quantize(unit, rounding=ROUND_HALF_EVEN)
    revaluation_shown = revaluation.quantize(unit, rounding=ROUND_HALF_EVEN)
    totals = {
        "currency": REPORT_CURRENCY,
        "margin_income": str(income_shown),
        "revaluation": str(revaluation_shown),
        "pnl": str(income_shown + revaluation_shown),  # the two as shown add up
    }
    return DailyReport(day=day, lines=lines, totals=totals)


def report_lines_as_money(report: DailyReport) -> list[dict[str, Any]]:
    amounts = ("bought", "sold", "margin_income", "opening_position", "closing_position")
    return [
        {
            key: (money_payload(value, line["currency"]) if key in amounts else value)
            for key, value in line.items()
        }
        for line in report.lines
    ]
