"""Account statements: an account's balances at the start and the end of a period, and every
transfer that touched it in between, in the order the ledger recorded them.

``statement_period`` turns the caller's ``from``, ``to`` and ``tz`` into a bounded period;
``account_statement_build`` reads the ledger into an ``AccountStatement`` and refuses to return
one that does not add up; ``statement_render`` writes it as JSON, CSV or XLSX. Amounts stay
integer minor units until they are written out. The layout of each format is in
docs/account_statements.md.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, WriteOnlyCell
from openpyxl.utils import get_column_letter

from hub import errors
from hub.money import currency_exponent, format_amount
from settlement.ledger import Balances, account_balances_at
from settlement.models import Account, Transfer, on_normal_side

Type = Transfer.Type

FORMATS = ("json", "csv", "xlsx")
CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# Where the account's merchants keep their books; any other currency reads in UTC.
DEFAULT_TIME_ZONES = {"CNY": "Asia/Shanghai", "KRW": "Asia/Seoul"}
FALLBACK_TIME_ZONE = "UTC"
# A leap year, and what one response may carry: openpyxl writes some 2,000 rows a second, so an
# XLSX is held to a few seconds of work; CSV and JSON are written some twenty times faster.
MAX_PERIOD = timedelta(days=366)
MAX_ROWS = 100_000
MAX_XLSX_ROWS = 20_000
# Bounds that keep every conversion to and from UTC (and one microsecond back) in range.
MIN_YEAR, MAX_YEAR = 1970, 9998
# Stored times have microsecond resolution, so "made by ``t`` - 1 µs" is "made before ``t``".
_TICK = timedelta(microseconds=1)
# Only ASCII digits: ``\d`` would take other scripts' digits that the date parser refuses.
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class StatementUnbalanced(RuntimeError):
    """The transfers of a period do not lead from its opening balances to its closing ones: the
    ledger is inconsistent, which no request can cause, so it is a server error."""


# --- the period ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementPeriod:
    start: datetime  # inclusive, in ``tz``
    end: datetime  # exclusive, in ``tz``
    tz: zoneinfo.ZoneInfo


def statement_format(raw: str | None) -> str:
    if raw is None:
        return "json"
    if raw not in FORMATS:
        raise errors.InvalidRequest(
            f"format must be one of: {', '.join(FORMATS)}.",
            code="parameter_invalid",
            param="format",
        )
    return raw


@cache
def _time_zones() -> frozenset[str]:
    # The IANA names the system (or the tzdata package) provides, without the "posix/" and
    # "right/" copies; checking membership first keeps odd paths away from ZoneInfo.
    return frozenset(zoneinfo.available_timezones())


def _time_zone(raw: str | None, currency: str) -> zoneinfo.ZoneInfo:
    if raw is None:
        return zoneinfo.ZoneInfo(DEFAULT_TIME_ZONES.get(currency, FALLBACK_TIME_ZONE))
    if raw not in _time_zones():
        raise errors.InvalidRequest(
            "tz must be an IANA time zone name, such as Asia/Shanghai or Asia/Seoul.",
            code="parameter_invalid",
            param="tz",
        )
    return zoneinfo.ZoneInfo(raw)


def _bound(raw: str, name: str, tz: zoneinfo.ZoneInfo) -> datetime:
    value: datetime | None
    try:
        if _DATE.fullmatch(raw):
            # A date is its first moment in the statement's time zone.
            value = datetime.combine(date.fromisoformat(raw), time(), tzinfo=tz)
        else:
            value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise errors.InvalidRequest(
            f"{name} must be a date (2026-11-01) or an ISO 8601 time with its offset "
            "(2026-11-01T00:00:00+08:00).",
            code="parameter_invalid",
            param=name,
        )
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise errors.InvalidRequest(
            f"{name} must lie between the years {MIN_YEAR} and {MAX_YEAR}.",
            code="parameter_invalid",
            param=name,
        )
    return value.astimezone(tz)


def _month_start(moment: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    local = moment.astimezone(tz)
    return datetime.combine(local.date().replace(day=1), time(), tzinfo=tz)


def statement_period(
    *,
    currency: str,
    raw_from: str | None,
    raw_to: str | None,
    raw_tz: str | None,
    now: datetime,
) -> StatementPeriod:
    """The period the caller asked for: ``to`` is now unless given, ``from`` the start of the
    calendar month (in ``tz``) that ``to`` closes, so that no parameter at all gives the month
    to date and ``to=2026-12-01`` alone gives November."""
    tz = _time_zone(raw_tz, currency)
    end = now.astimezone(tz) if raw_to is None else _bound(raw_to, "to", tz)
    start = _month_start(end - _TICK, tz) if raw_from is None else _bound(raw_from, "from", tz)
    if start > end:
        raise errors.InvalidRequest(
            "from must not be after to (to is now unless given).",
            code="period_invalid",
            param="from",
        )
    if end - start > MAX_PERIOD:
        raise errors.InvalidRequest(
            f"A statement covers at most {MAX_PERIOD.days} days; ask for several.",
            code="period_too_long",
            param="to",
        )
    return StatementPeriod(start=start, end=end, tz=tz)


# --- the statement -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementBalances:
    """The four balance columns and, derived from them as on ``Account``, the figures on the
    account's normal side."""

    normal_balance: str  # "debit" | "credit"
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def posted(self) -> int:
        return self._on_normal_side()[0]

    @property
    def pending(self) -> int:
        return self._on_normal_side()[1]

    @property
    def available(self) -> int:
        return self._on_normal_side()[2]

    def _on_normal_side(self) -> tuple[int, int, int]:
        return on_normal_side(
            self.normal_balance,
            self.debits_posted,
            self.credits_posted,
            self.debits_pending,
            self.credits_pending,
        )

    @classmethod
    def of(cls, normal_balance: str, b: Balances) -> StatementBalances:
        return cls(
            normal_balance, b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending
        )


@dataclass(frozen=True)
class StatementRow:
    transfer: str
    created_at: datetime
    type: str
    side: str  # the account's side of the transfer: "debit" | "credit"
    counterparty: str
    amount: int  # the transfer's amount, always positive
    # What the row did to the posted and pending balances, signed on the account's normal side.
    posted_change: int
    pending_change: int
    after: StatementBalances
    reference: str
    code: str
    pending_transfer: str | None  # the hold a post, void or expiry resolves
    corrects: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class StatementTotals:
    debits_posted: int
    credits_posted: int
    net_posted: int  # on the normal side: closing posted - opening posted
    pending_change: int  # on the normal side: closing pending - opening pending
    count: int


@dataclass(frozen=True)
class AccountStatement:
    account: str
    livemode: bool
    currency: str
    normal_balance: str
    period: StatementPeriod
    opening: StatementBalances
    closing: StatementBalances
    totals: StatementTotals
    rows: tuple[StatementRow, ...]


@contextmanager
def _one_snapshot() -> Iterator[None]:
    """Run the statement's reads against one state of the ledger, so that a transfer committed
    between them cannot make the statement disagree with itself."""
    if connection.in_atomic_block:
        yield  # the caller's transaction decides
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # Must be the transaction's first statement; read only, it blocks nobody.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        # SQLite: a transaction already reads one snapshot (and writers wait for it).
        yield


_ROW_FIELDS = (
    "id",
    "created_at",
    "type",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "pending_amount",
    "reference",
    "code",
    "pending__id",
    "corrects__id",
    "metadata",
)


def statement_row_limit(fmt: str) -> int:
    return MAX_XLSX_ROWS if fmt == "xlsx" else MAX_ROWS


def account_statement_build(
    *, account: Account, period: StatementPeriod, max_rows: int | None = None
) -> AccountStatement:
    """The statement of ``account`` for ``period``: opening balances as of just before its start
    (a transfer made exactly at the start is a row of the period), closing balances as of just
    before its end, and one row per transfer made in between, in ``seq`` order; refused if
    there are more than ``max_rows`` of them (default ``MAX_ROWS``)."""
    limit = MAX_ROWS if max_rows is None else max_rows
    normal = account.normal_balance
    touching = Transfer.objects.filter(Q(debit_account=account) | Q(credit_account=account))
    with _one_snapshot():
        opening = account_balances_at(account=account, at=period.start - _TICK)
        closing = account_balances_at(account=account, at=period.end - _TICK)
        fetched = list(
            touching.filter(created_at__gte=period.start, created_at__lt=period.end)
            .order_by("seq")
            .values_list(*_ROW_FIELDS)[: limit + 1]
        )
    if len(fetched) > limit:
        raise errors.InvalidRequest(
            f"The period holds more than {limit:,} transfers, the most one statement in this "
            f"format holds (CSV and JSON: {MAX_ROWS:,}); ask for shorter periods.",
            code="statement_too_large",
            param="to",
        )
    columns = {
        "debit": [opening.debits_posted, opening.debits_pending],
        "credit": [opening.credits_posted, opening.credits_pending],
    }
    sums = {"debit": 0, "credit": 0}
    rows = []
    for (
        transfer_id,
        created_at,
        kind,
        debit_id,
        credit_id,
        amount,
        pending_amount,
        reference,
        code,
        pending_id,
        corrects_id,
        metadata,
    ) in fetched:
        side = "debit" if debit_id == account.pk else "credit"
        posted = amount if kind in (Type.SINGLE, Type.POST) else 0
        # A hold adds to pending; its resolution (post, void, expire) releases all it held.
        pending = amount if kind == Type.PENDING else -(pending_amount or 0)
        columns[side][0] += posted
        columns[side][1] += pending
        sums[side] += posted
        sign = 1 if side == normal else -1
        rows.append(
            StatementRow(
                transfer=transfer_id,
                created_at=created_at,
                type=kind,
                side=side,
                counterparty=credit_id if side == "debit" else debit_id,
                amount=amount,
                posted_change=sign * posted,
                pending_change=sign * pending,
                after=StatementBalances(
                    normal,
                    debits_posted=columns["debit"][0],
                    credits_posted=columns["credit"][0],
                    debits_pending=columns["debit"][1],
                    credits_pending=columns["credit"][1],
                ),
                reference=reference,
                code=code,
                pending_transfer=pending_id,
                corrects=corrects_id,
                metadata=metadata or {},
            )
        )
    statement = AccountStatement(
        account=account.pk,
        livemode=account.livemode,
        currency=account.currency,
        normal_balance=normal,
        period=period,
        opening=StatementBalances.of(normal, opening),
        closing=StatementBalances.of(normal, closing),
        totals=StatementTotals(
            debits_posted=sums["debit"],
            credits_posted=sums["credit"],
            net_posted=(sums["credit"] - sums["debit"]) * (1 if normal == "credit" else -1),
            pending_change=sum(row.pending_change for row in rows),
            count=len(rows),
        ),
        rows=tuple(rows),
    )
    _check_balanced(statement)
    return statement


def _check_balanced(s: AccountStatement) -> None:
    """opening posted + credits - debits (on the normal side) = closing posted, and the same for
    every balance column; the last row's running balances are the closing ones."""
    o, c, t = s.opening, s.closing, s.totals
    sign = 1 if s.normal_balance == "credit" else -1
    last = s.rows[-1].after if s.rows else o
    checks = {
        "posted": o.posted + sign * (t.credits_posted - t.debits_posted) == c.posted,
        "net_posted": o.posted + t.net_posted == c.posted,
        "pending": o.pending + t.pending_change == c.pending,
        "debits_posted": o.debits_posted + t.debits_posted == c.debits_posted,
        "credits_posted": o.credits_posted + t.credits_posted == c.credits_posted,
        "running": last == c,
    }
    failed = sorted(name for name, ok in checks.items() if not ok)
    if failed:
        raise StatementUnbalanced(
            f"statement of {s.account} from {s.period.start.isoformat()} to "
            f"{s.period.end.isoformat()} does not balance: {', '.join(failed)}"
        )


# --- rendering -----------------------------------------------------------------------------------


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _metadata_text(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _balances_json(b: StatementBalances, currency: str) -> dict[str, str]:
    # The same members as the account's ``balances`` in the API.
    values = {
        "posted": b.posted,
        "pending": b.pending,
        "available": b.available,
        "debits_posted": b.debits_posted,
        "credits_posted": b.credits_posted,
        "debits_pending": b.debits_pending,
        "credits_pending": b.credits_pending,
    }
    return {"currency": currency, **{k: format_amount(v, currency) for k, v in values.items()}}


def statement_as_dict(s: AccountStatement) -> dict[str, Any]:
    cur = s.currency
    t = s.totals
    return {
        "object": "account_statement",
        "account": s.account,
        "livemode": s.livemode,
        "currency": cur,
        "normal_balance": s.normal_balance,
        "tz": s.period.tz.key,
        "from": _utc(s.period.start),
        "to": _utc(s.period.end),
        "opening": _balances_json(s.opening, cur),
        "closing": _balances_json(s.closing, cur),
        "totals": {
            "debits_posted": format_amount(t.debits_posted, cur),
            "credits_posted": format_amount(t.credits_posted, cur),
            "net_posted": format_amount(t.net_posted, cur),
            "pending_change": format_amount(t.pending_change, cur),
            "count": t.count,
        },
        "rows": [
            {
                "transfer": r.transfer,
                "created_at": _utc(r.created_at),
                "type": r.type,
                "side": r.side,
                "counterparty": r.counterparty,
                "amount": format_amount(r.amount, cur),
                "posted_change": format_amount(r.posted_change, cur),
                "pending_change": format_amount(r.pending_change, cur),
                "posted_balance": format_amount(r.after.posted, cur),
                "pending_balance": format_amount(r.after.pending, cur),
                "available_balance": format_amount(r.after.available, cur),
                "reference": r.reference,
                "code": r.code,
                "pending_transfer": r.pending_transfer,
                "corrects": r.corrects,
                "metadata": r.metadata,
            }
            for r in s.rows
        ],
    }


def statement_json(s: AccountStatement) -> bytes:
    return json.dumps(statement_as_dict(s), ensure_ascii=False, separators=(",", ":")).encode()


# The spreadsheets (CSV and XLSX) share one layout: a block of name/value lines, an empty line,
# then the table. Each value is (kind, value); kinds: "text", "money" (minor units), "time", "int".
Cell = tuple[str, Any]


def _summary(s: AccountStatement) -> list[tuple[str, Cell]]:
    lines: list[tuple[str, Cell]] = [
        ("statement", ("text", "account_statement")),
        ("account", ("text", s.account)),
        ("livemode", ("text", "true" if s.livemode else "false")),
        ("currency", ("text", s.currency)),
        ("normal_balance", ("text", s.normal_balance)),
        ("tz", ("text", s.period.tz.key)),
        ("from", ("time", s.period.start)),
        ("to", ("time", s.period.end)),
    ]
    for when, b in (("opening", s.opening), ("closing", s.closing)):
        for name in ("posted", "pending", "available"):
            lines.append((f"{when}_{name}", ("money", getattr(b, name))))
    t = s.totals
    lines += [
        ("debits_posted", ("money", t.debits_posted)),
        ("credits_posted", ("money", t.credits_posted)),
        ("net_posted", ("money", t.net_posted)),
        ("pending_change", ("money", t.pending_change)),
        ("count", ("int", t.count)),
    ]
    return lines


COLUMNS: tuple[tuple[str, str, Callable[[StatementRow], Any]], ...] = (
    ("transfer", "text", lambda r: r.transfer),
    ("created_at", "time", lambda r: r.created_at),
    ("type", "text", lambda r: r.type),
    ("side", "text", lambda r: r.side),
    ("counterparty", "text", lambda r: r.counterparty),
    ("amount", "money", lambda r: r.amount),
    ("posted_change", "money", lambda r: r.posted_change),
    ("pending_change", "money", lambda r: r.pending_change),
    ("posted_balance", "money", lambda r: r.after.posted),
    ("pending_balance", "money", lambda r: r.after.pending),
    ("available_balance", "money", lambda r: r.after.available),
    ("reference", "text", lambda r: r.reference),
    ("code", "text", lambda r: r.code),
    ("pending_transfer", "text", lambda r: r.pending_transfer),
    ("corrects", "text", lambda r: r.corrects),
    ("metadata", "text", lambda r: _metadata_text(r.metadata)),
)


def _table(s: AccountStatement) -> Iterator[list[Cell]]:
    for row in s.rows:
        yield [(kind, get(row)) for _, kind, get in COLUMNS]


# Excel reads a text cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(cell: Cell, s: AccountStatement) -> str:
    kind, value = cell
    if value is None:
        return ""
    if kind == "money":
        return format_amount(value, s.currency)
    if kind == "time":
        return str(value.astimezone(s.period.tz).isoformat())
    if kind == "int":
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def statement_csv(s: AccountStatement) -> bytes:
    """UTF-8 with a byte order mark, CRLF line ends: what Excel in Chinese and Korean Windows
    opens as UTF-8 (without the mark it guesses GBK or CP949)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for name, cell in _summary(s):
        writer.writerow([name, _csv_value(cell, s)])
    writer.writerow([])
    writer.writerow([name for name, _, _ in COLUMNS])
    for cells in _table(s):
        writer.writerow([_csv_value(cell, s) for cell in cells])
    return out.getvalue().encode("utf-8-sig")


XLSX_TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
# Excel's limit for the text of one cell.
_XLSX_MAX_TEXT = 32_767


def money_number_format(currency: str) -> str:
    """CNY ``#,##0.00``, KRW ``#,##0``: as many decimals as the currency has."""
    exponent = currency_exponent(currency)
    return "#,##0" + ("." + "0" * exponent if exponent else "")


def _xlsx_cell(ws: Any, cell: Cell, s: AccountStatement, money_format: str) -> Any:
    kind, value = cell
    if value is None:
        return None
    if kind == "money":
        out = WriteOnlyCell(ws)
        # A number exact in major units (Decimal, not float), shown with the currency's decimals.
        out.value = Decimal(value).scaleb(-currency_exponent(s.currency))
        out.number_format = money_format
        return out
    if kind == "time":
        # Excel has no time zones: the local time in ``tz``, which the summary names.
        out = WriteOnlyCell(ws, value=value.astimezone(s.period.tz).replace(tzinfo=None))
        out.number_format = XLSX_TIME_FORMAT
        return out
    if kind == "int":
        return value
    text = ILLEGAL_CHARACTERS_RE.sub("\ufffd", str(value))
    if len(text) > _XLSX_MAX_TEXT:
        text = text[: _XLSX_MAX_TEXT - 1] + "\u2026"
    out = WriteOnlyCell(ws, value=text)
    # Text stays text: openpyxl would store "=..." as a formula and "#N/A" as an error.
    out.data_type = "s"
    return out


def statement_xlsx(s: AccountStatement) -> bytes:
    """One sheet, "Statement": amounts as numbers in the currency's number format, times as
    local date-times."""
    money_format = money_number_format(s.currency)
    workbook = Workbook(write_only=True)
    ws = workbook.create_sheet("Statement")
    summary = _summary(s)
    widths = [22, 20, 20, 14, 34, 16, 16, 16, 16, 16, 18, 24, 12, 24, 24, 40]
    for index, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(index)].width = width
    for name, cell in summary:
        ws.append([name, _xlsx_cell(ws, cell, s, money_format)])
    ws.append([])
    ws.append([name for name, _, _ in COLUMNS])
    for cells in _table(s):
        ws.append([_xlsx_cell(ws, cell, s, money_format) for cell in cells])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _bound_label(value: datetime, tz: zoneinfo.ZoneInfo) -> str:
    local = value.astimezone(tz)
    if local.time() == time():
        return local.strftime("%Y-%m-%d")
    # No colons: Windows refuses them in file names.
    return local.strftime("%Y-%m-%dT%H%M%S")


def statement_filename(s: AccountStatement, extension: str) -> str:
    tz = s.period.tz
    start, end = _bound_label(s.period.start, tz), _bound_label(s.period.end, tz)
    return f"{s.account}_{start}_{end}.{extension}"


_RENDERERS: dict[str, Callable[[AccountStatement], bytes]] = {
    "json": statement_json,
    "csv": statement_csv,
    "xlsx": statement_xlsx,
}


def statement_render(s: AccountStatement, fmt: str) -> tuple[bytes, str, str]:
    """The statement as ``fmt``: its bytes, content type and file name."""
    return _RENDERERS[fmt](s), CONTENT_TYPES[fmt], statement_filename(s, fmt)
