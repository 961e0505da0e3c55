"""Reference rates through the API: the ECB's cross rate CNY/KRW of the day asked, or of the last
business day before it (and which day that was), checked against the ``currencyconverter``
package's own reading of the same data; the history in JSON and CSV; and every refusal."""

from __future__ import annotations

import csv
import functools
import io
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

import pytest
from currency_converter import CurrencyConverter  # type: ignore[import-untyped]

from tests.conftest import Api, Tenant, error_of

DIGITS = 20


@functools.cache
def converter() -> CurrencyConverter:
    return CurrencyConverter(decimal=True)


def per_eur(currency: str, day: date) -> Decimal | None:
    rate: Decimal | None = converter()._rates[currency].get(day)
    return rate


def published(day: date) -> bool:
    return per_eur("CNY", day) is not None and per_eur("KRW", day) is not None


def last_published(day: date) -> date:
    while not published(day):
        day -= timedelta(days=1)
    return day


def significant(value: Decimal, digits: int = DIGITS) -> Decimal:
    with localcontext(prec=80):
        return value.quantize(
            Decimal(1).scaleb(value.adjusted() - digits + 1), rounding=ROUND_HALF_EVEN
        )


def cross(base: str, quote: str, day: date) -> Decimal:
    """Units of ``quote`` per ``base`` on ``day``, at far more precision than compared."""
    numerator, denominator = per_eur(quote, day), per_eur(base, day)
    assert numerator is not None
    assert denominator is not None
    with localcontext(prec=60):
        return numerator / denominator


def rate(api: Api, key: str, **params: str) -> Any:
    return api.get("/v1/fx/rates", key=key, params=params)


@pytest.fixture
def key(tenants: dict[str, Tenant]) -> str:
    return tenants["merchant"].key


def assert_rate_of(body: dict[str, Any], base: str, quote: str, day: date) -> None:
    assert {k: v for k, v in body.items() if k != "rate"} == {
        "object": "fx_rate",
        "base": base,
        "quote": quote,
        "date": day.isoformat(),
        "source": "ECB",
    }
    answered = Decimal(body["rate"])
    # The full cross rate, not the five or six digits the ECB publishes per currency.
    assert len(answered.as_tuple().digits) >= DIGITS, body["rate"]
    assert significant(answered) == significant(cross(base, quote, day))


# --- one day -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "day",
    ["2005-04-01", "2010-06-15", "2016-02-29", "2020-03-16", "2024-07-01", "2026-10-30"],
)
@pytest.mark.parametrize(("base", "quote"), [("CNY", "KRW"), ("KRW", "CNY")])
def test_a_business_day_has_its_own_cross_rate(api: Api, key: str, day: str, base, quote):
    asked = date.fromisoformat(day)
    assert published(asked)

    response = rate(api, key, base=base, quote=quote, date=day)

    assert response.status_code == 200, response.json()
    assert_rate_of(response.json(), base, quote, asked)


def test_the_two_directions_are_reciprocal(api: Api, key: str):
    there = Decimal(rate(api, key, base="CNY", quote="KRW", date="2020-03-16").json()["rate"])
    back = Decimal(rate(api, key, base="KRW", quote="CNY", date="2020-03-16").json()["rate"])
    with localcontext(prec=60):
        assert significant(there * back) == Decimal(1)
    # 1373.34 / 7.8351 KRW per CNY that day.
    assert significant(there, 12) == Decimal("175.280468660")


@pytest.mark.parametrize(
    ("asked", "used"),
    [
        ("2024-06-29", "2024-06-28"),  # Saturday
        ("2024-06-30", "2024-06-28"),  # Sunday
        ("2024-12-25", "2024-12-24"),  # Christmas Day
        ("2024-12-26", "2024-12-24"),  # St Stephen's Day
        ("2024-03-29", "2024-03-28"),  # Good Friday
        ("2024-03-30", "2024-03-28"),
        ("2024-03-31", "2024-03-28"),  # Easter Sunday
        ("2024-04-01", "2024-03-28"),  # Easter Monday
        ("2024-05-01", "2024-04-30"),  # Labour Day
        ("2025-05-01", "2025-04-30"),
        ("2026-01-01", "2025-12-31"),  # New Year's Day
        ("2005-04-03", "2005-04-01"),  # the Sunday after the first CNY fixing
    ],
)
def test_a_day_without_a_fixing_takes_the_last_business_day_and_says_so(
    api: Api, key: str, asked: str, used: str
):
    day, fixing = date.fromisoformat(asked), date.fromisoformat(used)
    # The data itself: nothing on the day asked or between, a fixing on the day used.
    assert last_published(day) == fixing
    assert published(fixing)

    response = rate(api, key, base="CNY", quote="KRW", date=asked)

    assert response.status_code == 200, response.json()
    assert_rate_of(response.json(), "CNY", "KRW", fixing)
    same = rate(api, key, base="CNY", quote="KRW", date=used).json()
    assert response.json() == same


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        # before the ECB series begins
        ({"base": "CNY", "quote": "KRW", "date": "1998-12-31"}, "rate_unavailable", "date"),
        # KRW is published from 1999, CNY only from 2005-04-01
        ({"base": "CNY", "quote": "KRW", "date": "2003-06-02"}, "rate_unavailable", "date"),
        ({"base": "KRW", "quote": "CNY", "date": "2005-03-31"}, "rate_unavailable", "date"),
        # after the bundled data ends (2026-10-30)
        ({"base": "CNY", "quote": "KRW", "date": "2026-11-02"}, "rate_unavailable", "date"),
        ({"base": "CNY", "quote": "KRW", "date": "2031-01-06"}, "rate_unavailable", "date"),
        ({"base": "CNY", "quote": "CNY", "date": "2024-07-01"}, "currency_pair_invalid", "quote"),
        ({"base": "ABC", "quote": "KRW", "date": "2024-07-01"}, "currency_unknown", "base"),
        ({"base": "CNY", "quote": "XYZ", "date": "2024-07-01"}, "currency_unknown", "quote"),
        ({"base": "EUR", "quote": "KRW", "date": "2024-07-01"}, "currency_unsupported", "base"),
        ({"base": "CNY", "quote": "JPY", "date": "2024-07-01"}, "currency_unsupported", "quote"),
        ({"base": "cny", "quote": "KRW", "date": "2024-07-01"}, "currency_invalid", "base"),
        ({"quote": "KRW", "date": "2024-07-01"}, "currency_invalid", "base"),
        ({"base": "CNY", "date": "2024-07-01"}, "currency_invalid", "quote"),
        ({"base": "CNY", "quote": "KRW", "date": "2024-02-30"}, "parameter_invalid", "date"),
        ({"base": "CNY", "quote": "KRW", "date": "2024-13-01"}, "parameter_invalid", "date"),
        ({"base": "CNY", "quote": "KRW", "date": "2024-1-5"}, "parameter_invalid", "date"),
        ({"base": "CNY", "quote": "KRW", "date": "yesterday"}, "parameter_invalid", "date"),
        ({"base": "CNY", "quote": "KRW", "date": ""}, "parameter_invalid", "date"),
    ],
)
def test_a_bad_rate_request_is_refused_with_its_code(api: Api, key: str, params, code, param):
    response = rate(api, key, **params)

    assert response.status_code == 400, response.json()
    error = error_of(response)
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        code,
        param,
    )


def test_the_data_bounds_are_the_packages(api: Api, key: str):
    bounds = converter().bounds["CNY"]
    assert (bounds.first_date, bounds.last_date) == (date(2005, 4, 1), date(2026, 10, 30))
    last = rate(api, key, base="CNY", quote="KRW", date=bounds.last_date.isoformat())
    after = rate(
        api, key, base="CNY", quote="KRW", date=(bounds.last_date + timedelta(3)).isoformat()
    )
    assert (last.status_code, after.status_code) == (200, 400)
    assert "2026-10-30" in error_of(after)["message"]


def test_rates_need_a_key(api: Api, tenants):
    response = api.get("/v1/fx/rates", params={"base": "CNY", "quote": "KRW", "date": "2024-07-01"})
    assert (response.status_code, error_of(response)["code"]) == (401, "api_key_missing")


# --- history -------------------------------------------------------------------------------------

# Thursday to Monday: the weekend takes Friday's fixing.
WEEK = [
    ("2024-06-27", "2024-06-27"),
    ("2024-06-28", "2024-06-28"),
    ("2024-06-29", "2024-06-28"),
    ("2024-06-30", "2024-06-28"),
    ("2024-07-01", "2024-07-01"),
]


def history(api: Api, key: str, **params: str) -> Any:
    return api.get("/v1/fx/rates/history", key=key, params=params)


def test_a_history_has_one_rate_per_calendar_day(api: Api, key: str):
    response = history(
        api, key, base="CNY", quote="KRW", **{"from": "2024-06-27", "to": "2024-07-01"}
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["object"], body["has_more"]) == ("list", False)
    rows = body["data"]
    assert [(row["day"], row["date"]) for row in rows] == WEEK
    for row, (_, used) in zip(rows, WEEK, strict=True):
        assert {k: v for k, v in row.items() if k not in ("rate", "day", "date")} == {
            "object": "fx_rate",
            "base": "CNY",
            "quote": "KRW",
            "source": "ECB",
        }
        assert significant(Decimal(row["rate"])) == significant(
            cross("CNY", "KRW", date.fromisoformat(used))
        )
        # The same figure the one-day endpoint gives for that day.
        one = rate(api, key, base="CNY", quote="KRW", date=row["day"]).json()
        assert (one["rate"], one["date"]) == (row["rate"], row["date"])
    assert rows[1]["rate"] == rows[2]["rate"] == rows[3]["rate"] != rows[0]["rate"]


def test_a_history_as_csv(api: Api, key: str):
    rates = {
        used: rate(api, key, base="KRW", quote="CNY", date=used).json()["rate"] for _, used in WEEK
    }

    response = history(
        api,
        key,
        base="KRW",
        quote="CNY",
        format="csv",
        **{"from": "2024-06-27", "to": "2024-07-01"},
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"] == 'attachment; filename="KRWCNY-2024-06-27-2024-07-01.csv"'
    )
    expected = "day,base,quote,rate,rate_date,source\r\n" + "".join(
        f"{day},KRW,CNY,{rates[used]},{used},ECB\r\n" for day, used in WEEK
    )
    text = response.content.decode()
    assert text == expected
    rows = list(csv.reader(io.StringIO(text)))[1:]
    for row in rows:
        assert significant(Decimal(row[3])) == significant(
            cross("KRW", "CNY", date.fromisoformat(row[4]))
        )


def test_a_history_of_one_day_and_of_a_whole_leap_year(api: Api, key: str):
    one = history(api, key, base="CNY", quote="KRW", **{"from": "2024-06-29", "to": "2024-06-29"})
    assert [(r["day"], r["date"]) for r in one.json()["data"]] == [("2024-06-29", "2024-06-28")]

    year = history(api, key, base="CNY", quote="KRW", **{"from": "2024-01-01", "to": "2024-12-31"})

    assert year.status_code == 200, year.json()
    rows = year.json()["data"]
    assert len(rows) == 366
    assert (rows[0]["day"], rows[0]["date"]) == ("2024-01-01", "2023-12-29")
    assert (rows[-1]["day"], rows[-1]["date"]) == ("2024-12-31", "2024-12-31")
    assert sum(row["day"] == row["date"] for row in rows) == sum(
        published(date(2024, 1, 1) + timedelta(n)) for n in range(366)
    )


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"from": "2024-07-01", "to": "2024-06-30"}, "parameter_invalid", "to"),
        # 367 days
        ({"from": "2024-01-01", "to": "2025-01-01"}, "parameter_invalid", "to"),
        ({"from": "2020-01-01", "to": "2024-01-01"}, "parameter_invalid", "to"),
        ({"to": "2024-07-01"}, "parameter_invalid", "from"),
        ({"from": "2024-07-01"}, "parameter_invalid", "to"),
        ({"from": "2024-07-01", "to": "2024-07-32"}, "parameter_invalid", "to"),
        (
            {"from": "2024-06-27", "to": "2024-07-01", "format": "xml"},
            "parameter_invalid",
            "format",
        ),
        (
            {"from": "2024-06-27", "to": "2024-07-01", "quote": "CNY"},
            "currency_pair_invalid",
            "quote",
        ),
        ({"from": "2024-06-27", "to": "2024-07-01", "base": "EUR"}, "currency_unsupported", "base"),
    ],
)
def test_a_bad_history_request_is_refused(api: Api, key: str, params, code, param):
    response = history(api, key, **{"base": "CNY", "quote": "KRW", **params})

    assert response.status_code == 400, response.json()
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-10-28", "2026-11-03"),  # runs past the end of the data
        ("1998-12-28", "1999-01-05"),  # starts before the data
        ("2005-03-28", "2005-04-04"),  # starts before the CNY series
    ],
)
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_history_beyond_the_data_is_refused_whole(api: Api, key: str, start, end, fmt):
    response = history(api, key, base="CNY", quote="KRW", format=fmt, **{"from": start, "to": end})

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert error_of(response)["code"] == "rate_unavailable"
