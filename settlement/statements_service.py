"""Bank statement import and reconciliation: the writes behind ``/v1/bank_statements``,
``/v1/reconciliation_runs`` and ``/v1/reconciliation_exceptions``.

Direction. A ``bank_cash`` account is the hub's money at a bank, debit-normal: money arriving on
the real account is a debit of the mirror, money leaving it a credit. The bank's statement speaks
from the account holder's side: money arriving is ``CRDT``. So a transfer that debits the mirror
reads as a ``credit`` line and one that credits it as a ``debit`` line, and both sides reach
``settlement.reconcile`` in the bank's sense.

Re-runs. The latest run of a statement is its ``current`` one. An exception a new run finds
again (same kind, items and reasons) stays the same open row; an open one it no longer finds is
closed as ``superseded``; a resolved one stays resolved and is not opened again.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
from django.db import IntegrityError, transaction
from django.utils import timezone

from hub import errors
from hub.ids import new_id, new_ids
from hub.models import Participant, Role
from hub.principal import Principal
from hub.services.events import event_emit, register_event_types
from settlement.models import Account, Transfer
from settlement.models_statements import (
    BankStatement,
    ReconciliationException,
    ReconciliationRun,
    StatementLine,
)
from settlement.reconcile import (
    CREDIT_DIRECTION,
    DEBIT_DIRECTION,
    MatchRules,
    lines_frame,
    reconcile,
)
from settlement.selectors import accounts_visible
from settlement.statements import (
    CsvMapping,
    CsvMappingError,
    Statement,
    StatementParseError,
    parse_statement_file,
)

register_event_types(
    "bank_statement.imported",
    "reconciliation_run.completed",
    "reconciliation_exception.resolved",
)

Kind = ReconciliationException.Kind
LineStatus = StatementLine.Status

# A booked line with neither a booking nor a value date cannot be placed in time.
NO_DATE = "no_date"
# What a run shows of each list; the counts are always complete, and the lines and the
# exceptions queue hold every item.
MAX_RESULT_ITEMS = 1000
# Dates outside these are refused: no bank statement is that old, and dates near the ends of
# the calendar would leave it once widened by a date window or moved to UTC.
EARLIEST = date(1900, 1, 1)
LATEST = date(2999, 12, 31)
# Parts of a statement that say how it travelled, not what it says: a duplicate copy or the same
# statement inside another file hashes the same without them.
ENVELOPE = ("message_id", "message_created_at", "copy_duplicate", "created_at")
MATCHED_FIELDS = (
    "rule",
    "reference",
    "currency",
    "direction",
    "line_ids",
    "transfer_ids",
    "line_amount_minor",
    "transfer_amount_minor",
    "amount_difference_minor",
    "tolerance_minor",
    "date_distance_days",
)


# --- import --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedStatement:
    statement: BankStatement
    created: bool


@dataclass(frozen=True)
class StatementImport:
    """One uploaded file: its statements in file order, each new or found from before."""

    filename: str
    file_sha256: str
    statements: tuple[ImportedStatement, ...]

    @property
    def created(self) -> int:
        return sum(item.created for item in self.statements)


@dataclass(frozen=True)
class _Plan:
    statement: BankStatement
    lines: list[StatementLine]


def bank_statement_import(
    *,
    actor: Principal,
    data: bytes,
    filename: str,
    account_id: str | None = None,
    bank_id: str | None = None,
    csv_mapping: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> StatementImport:
    """Store the statements of a camt.053 or mapped CSV file on their mirror accounts.

    Each statement goes to ``account_id`` if given, else to the caller's visible ``bank_cash``
    account whose ``reference`` is the statement's IBAN or account id (spaces and case aside) in
    its currency. A statement stored before (same account, same content) is returned as it is;
    a file is refused whole, storing nothing, if any statement in it cannot be placed.
    """
    filename = _clean_filename(filename)
    mapping = _csv_mapping(csv_mapping)
    try:
        parsed = parse_statement_file(data, filename=filename, csv_mapping=mapping)
    except StatementParseError as exc:
        reason = str(exc)
        raise errors.InvalidRequest(
            f"{filename}: {reason}" if filename else reason, code="statement_invalid", param="file"
        ) from None
    named_bank = _named_bank(actor, bank_id)
    named_account = _named_account(actor, account_id)
    file_sha256 = hashlib.sha256(data).hexdigest()
    plans = []
    for position, statement in enumerate(parsed):
        account = named_account or _mirror_of(actor, statement)
        _check_fits(statement, account)
        plans.append(
            _plan(
                actor,
                statement,
                account=account,
                bank=_bank_of(actor, account, named_bank),
                position=position,
                filename=filename,
                size=len(data),
                file_sha256=file_sha256,
                metadata=dict(metadata or {}),
            )
        )
    try:
        stored = _store(actor, plans)
    except IntegrityError:
        # The same statement imported at the same moment by another request: it won, ours was
        # rolled back whole; this time the statements are found.
        stored = _store(actor, plans)
    return StatementImport(filename=filename, file_sha256=file_sha256, statements=stored)


def _clean_filename(name: str) -> str:
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return name.strip()[:255]


def _csv_mapping(raw: Mapping[str, Any] | None) -> CsvMapping | None:
    if raw is None:
        return None
    try:
        return CsvMapping.from_dict(raw)
    except CsvMappingError as exc:
        raise errors.InvalidRequest(
            str(exc), code="csv_mapping_invalid", param="csv_mapping"
        ) from None
    except TypeError as exc:  # a value of the wrong type the mapping's checks did not foresee
        raise errors.InvalidRequest(
            f"CSV mapping: {exc}", code="csv_mapping_invalid", param="csv_mapping"
        ) from None


def _named_bank(actor: Principal, bank_id: str | None) -> Participant | None:
    if bank_id is None:
        return None
    if not actor.is_operator:
        if bank_id != actor.participant.pk:
            raise errors.PermissionDenied(
                "A bank imports its own statements; only the operator names another bank.",
                code="bank_forbidden",
                param="bank",
            )
        return actor.participant
    bank = Participant.objects.filter(pk=bank_id).first()
    if bank is None:
        raise errors.NotFound(param="bank")
    if bank.role != Role.BANK:
        raise errors.InvalidRequest(
            f"bank names a {bank.role}, not a bank.", code="bank_invalid", param="bank"
        )
    return bank


def _named_account(actor: Principal, account_id: str | None) -> Account | None:
    if account_id is None:
        return None
    account = accounts_visible(actor=actor).select_related("owner").filter(pk=account_id).first()
    if account is None:
        raise errors.NotFound(param="account")
    if account.kind != Account.Kind.BANK_CASH:
        raise errors.InvalidRequest(
            f"A statement mirrors a bank_cash account; {account.pk} is {account.kind}.",
            code="account_kind_invalid",
            param="account",
        )
    return account


def _compact(identification: str) -> str:
    return "".join(identification.split()).upper()


def _currency_of(statement: Statement) -> str | None:
    if statement.account.currency:
        return statement.account.currency
    return statement.entries[0].currency if statement.entries else None


def _mirror_of(actor: Principal, statement: Statement) -> Account:
    """The caller's bank_cash account whose reference is the statement's account."""
    identification = statement.account.identification
    if not identification:
        raise errors.InvalidRequest(
            f"Statement {statement.statement_id} names no account: name the bank_cash account "
            "it mirrors with account.",
            code="account_unresolved",
            param="account",
        )
    currency = _currency_of(statement)
    wanted = _compact(identification)
    candidates = [
        account
        for account in accounts_visible(actor=actor)
        .select_related("owner")
        .filter(kind=Account.Kind.BANK_CASH)
        .exclude(reference="")
        .order_by("pk")
        if _compact(account.reference) == wanted
        and (currency is None or account.currency == currency)
    ]
    if not candidates:
        raise errors.InvalidRequest(
            f"No bank_cash account of yours has the reference {identification}"
            f"{f' in {currency}' if currency else ''}: open one with that reference, or name the "
            "account with account.",
            code="account_unresolved",
            param="account",
        )
    if len(candidates) > 1:
        raise errors.InvalidRequest(
            f"{len(candidates)} bank_cash accounts have the reference {identification}: name "
            "one with account.",
            code="account_ambiguous",
            param="account",
        )
    return candidates[0]


def _check_fits(statement: Statement, account: Account) -> None:
    """The named or found account is the statement's: its reference and currency agree."""
    identification = statement.account.identification
    if (
        account.reference
        and identification
        and _compact(account.reference) != _compact(identification)
    ):
        raise errors.InvalidRequest(
            f"{account.pk} mirrors {account.reference}, but statement "
            f"{statement.statement_id} is of {statement.account.identification}.",
            code="account_mismatch",
            param="account",
        )
    found = {statement.account.currency} if statement.account.currency else set()
    found |= {entry.currency for entry in statement.entries}
    other = sorted(found - {account.currency})
    if other:
        raise errors.InvalidRequest(
            f"{account.pk} holds {account.currency}; statement {statement.statement_id} is in "
            f"{', '.join(other)}.",
            code="currency_mismatch",
            param="account",
        )


def _bank_of(actor: Principal, account: Account, named: Participant | None) -> Participant | None:
    if actor.role == Role.BANK:
        return actor.participant
    owner = account.owner
    if owner.role == Role.BANK:
        if named is not None and named.pk != owner.pk:
            raise errors.InvalidRequest(
                f"{account.pk} is held by bank {owner.pk}, not {named.pk}.",
                code="bank_mismatch",
                param="bank",
            )
        return owner
    return named


def _content_sha256(statement: Statement) -> str:
    body = statement.as_dict()
    for name in ENVELOPE:
        body.pop(name, None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    # PostgreSQL keeps no NUL in text or jsonb; a file can still carry one in a CSV cell.
    if "\\u0000" in canonical:
        raise errors.InvalidRequest(
            f"Statement {statement.statement_id} has a NUL character in a text field.",
            code="statement_invalid",
            param="file",
        )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_dates(statement: Statement) -> None:
    moments: list[date | datetime | None] = [
        statement.message_created_at,
        statement.created_at,
        statement.from_date_time,
        statement.to_date_time,
    ]
    moments += [balance.date for balance in statement.balances]
    for entry in statement.entries:
        moments += [
            entry.booking_date,
            entry.value_date,
            entry.booking_date_time,
            entry.value_date_time,
        ]
    for moment in moments:
        day = moment.date() if isinstance(moment, datetime) else moment
        if day is not None and not EARLIEST <= day <= LATEST:
            raise errors.InvalidRequest(
                f"Statement {statement.statement_id} has the date {day.isoformat()}; dates "
                f"from {EARLIEST.isoformat()} to {LATEST.isoformat()} are accepted.",
                code="statement_invalid",
                param="file",
            )


def _line_day(booking: date | None, value: date | None) -> date | None:
    return booking or value


def _period(statement: Statement) -> tuple[date | None, date | None]:
    days = [
        day
        for entry in statement.entries
        if (day := _line_day(entry.booking_date, entry.value_date)) is not None
    ]
    days += [
        moment.date() for moment in (statement.from_date_time, statement.to_date_time) if moment
    ]
    return (min(days), max(days)) if days else (None, None)


def _plan(
    actor: Principal,
    statement: Statement,
    *,
    account: Account,
    bank: Participant | None,
    position: int,
    filename: str,
    size: int,
    file_sha256: str,
    metadata: dict[str, str],
) -> _Plan:
    content_sha256 = _content_sha256(statement)
    _check_dates(statement)
    start, end = _period(statement)
    opening, closing = statement.opening_balance, statement.closing_balance
    row = BankStatement(
        id=new_id("bst"),
        livemode=actor.livemode,
        account=account,
        bank=bank,
        uploaded_by=actor.participant,
        format=statement.format,
        message_id=statement.message_id or "",
        message_created_at=statement.message_created_at,
        statement_id=statement.statement_id,
        file_position=position,
        issued_at=statement.created_at,
        electronic_sequence_number=statement.electronic_sequence_number,
        legal_sequence_number=statement.legal_sequence_number,
        copy_duplicate=statement.copy_duplicate or "",
        page_number=statement.page_number,
        last_page=statement.last_page,
        account_identification=statement.account.identification or "",
        account_details=statement.account.as_dict(),
        currency=account.currency,
        from_date_time=statement.from_date_time,
        to_date_time=statement.to_date_time,
        period_start=start,
        period_end=end,
        opening_balance_minor=None if opening is None else opening.signed_minor,
        opening_balance_currency="" if opening is None else opening.currency,
        opening_balance_date=None if opening is None else opening.date,
        closing_balance_minor=None if closing is None else closing.signed_minor,
        closing_balance_currency="" if closing is None else closing.currency,
        closing_balance_date=None if closing is None else closing.date,
        balances=[balance.as_dict() for balance in statement.balances],
        additional_info=statement.additional_info or "",
        entry_count=len(statement.entries),
        filename=filename,
        file_size=size,
        file_sha256=file_sha256,
        content_sha256=content_sha256,
        metadata=metadata,
    )
    # The reference each entry is matched by, by the same rule the matcher documents.
    references = lines_frame([statement], booked_only=False)["reference"].tolist()
    ids = new_ids("bsl", len(statement.entries))
    lines = [
        StatementLine(
            id=line_id,
            statement_id=row.pk,
            index=entry.index,
            amount_minor=entry.amount_minor,
            currency=entry.currency,
            credit_debit=entry.credit_debit,
            stated_amount=entry.stated_amount,
            rounded=entry.rounded,
            entry_status=entry.status,
            reversal=entry.reversal,
            booking_date=entry.booking_date,
            booking_date_time=entry.booking_date_time,
            value_date=entry.value_date,
            value_date_time=entry.value_date_time,
            reference=reference if isinstance(reference, str) else "",
            account_servicer_reference=entry.account_servicer_reference or "",
            entry_reference=entry.entry_reference or "",
            end_to_end_id=entry.end_to_end_id or "",
            instruction_id=entry.instruction_id or "",
            transaction_id=entry.transaction_id or "",
            bank_transaction_code=(
                None
                if entry.bank_transaction_code is None
                else entry.bank_transaction_code.as_dict()
            ),
            remittance=entry.remittance.as_dict(),
            counterparty=None if entry.counterparty is None else entry.counterparty.as_dict(),
            additional_info=entry.additional_info or "",
            transactions=[detail.as_dict() for detail in entry.transactions],
            status=LineStatus.UNRECONCILED if entry.status == "BOOK" else LineStatus.EXCLUDED,
            status_reason="" if entry.status == "BOOK" else "not_booked",
        )
        for line_id, entry, reference in zip(ids, statement.entries, references, strict=True)
    ]
    return _Plan(statement=row, lines=lines)


@transaction.atomic(durable=True)
def _store(actor: Principal, plans: Sequence[_Plan]) -> tuple[ImportedStatement, ...]:
    stored = []
    for plan in plans:
        row = plan.statement
        existing = BankStatement.objects.filter(
            livemode=row.livemode, account=row.account, content_sha256=row.content_sha256
        ).first()
        if existing is not None:
            stored.append(ImportedStatement(existing, created=False))
            continue
        row.save(force_insert=True)
        StatementLine.objects.bulk_create(plan.lines, batch_size=500)
        event_emit(
            type="bank_statement.imported",
            owner=row.bank or actor.participant,
            actor=actor,
            data={
                "id": row.pk,
                "account": row.account_id,
                "statement_id": row.statement_id,
                "format": row.format,
                "entry_count": row.entry_count,
            },
        )
        stored.append(ImportedStatement(row, created=True))
    return tuple(stored)


# --- reconciliation ------------------------------------------------------------------------------


def rules_as_json(rules: MatchRules) -> dict[str, Any]:
    return {
        "amount_tolerance_minor": int(rules.amount_tolerance_minor),
        "amount_tolerance_bps": int(rules.amount_tolerance_bps),
        "date_window_days": int(rules.date_window_days),
        "one_to_many": rules.one_to_many,
        "many_to_one": rules.many_to_one,
        "match_without_reference": rules.match_without_reference,
    }


@transaction.atomic(durable=True)
def reconciliation_run(
    *,
    actor: Principal,
    statement_id: str,
    rules: MatchRules,
    metadata: Mapping[str, str] | None = None,
) -> ReconciliationRun:
    """Match the statement's booked lines against the posted transfers on its mirror account.

    The transfers are those made (by their UTC date) within the statement's period widened by
    the date window on both sides, less those the current run of another statement of the same
    account matched. An unmatched transfer from the widened margins belongs to a neighbouring
    statement's period: it was a candidate here, and is not reported here.
    """
    statement = _locked_statement(actor, statement_id)
    account = statement.account
    lines = list(StatementLine.objects.filter(statement=statement).order_by("index"))
    window = _window(statement, rules.date_window_days)
    transfers, taken = _candidate_transfers(statement, window)

    booked = [line for line in lines if line.entry_status == "BOOK"]
    dated = [line for line in booked if _line_day(line.booking_date, line.value_date)]
    undated = [line for line in booked if not _line_day(line.booking_date, line.value_date)]
    try:
        result = reconcile(_lines_df(dated), _transfers_df(transfers, account), rules)
    except ValueError as exc:  # e.g. amounts whose total does not fit in 64 bits
        raise errors.InvalidRequest(
            f"The statement cannot be reconciled: {exc}.",
            code="statement_unreconcilable",
            status=422,
        ) from None
    records = result.to_records()

    start, end = statement.period_start, statement.period_end
    in_period = {t.id for t in transfers if start and end and start <= _day(t) <= end}
    unmatched_transfers = [
        row for row in records["unmatched_transfers"] if row["transfer_id"] in in_period
    ]
    findings = _findings(records, unmatched_transfers, undated)

    previous = ReconciliationRun.objects.filter(
        statement=statement, status=ReconciliationRun.Status.CURRENT
    )
    previous.update(status=ReconciliationRun.Status.SUPERSEDED)
    run = ReconciliationRun.objects.create(
        id=new_id("rcr"),
        livemode=statement.livemode,
        statement=statement,
        created_by=actor.participant,
        rules=rules_as_json(rules),
        window_start=window[0] if window else None,
        window_end=window[1] if window else None,
        counts=_counts(
            result.summary(),
            lines=len(lines),
            excluded=len(lines) - len(booked),
            undated=len(undated),
            transfers=len(transfers),
            taken=taken,
            unmatched_transfers=len(unmatched_transfers),
        ),
        matched_transfer_ids=[tid for row in records["matched"] for tid in row["transfer_ids"]],
        metadata=dict(metadata or {}),
    )
    run.exception_counts = _queue(run, statement, findings)
    run.result = _bounded_result(records, findings)
    run.save(update_fields=["exception_counts", "result"])
    _mark_lines(run, lines, records, undated)
    event_emit(
        type="reconciliation_run.completed",
        owner=actor.participant,
        actor=actor,
        data={
            "id": run.pk,
            "bank_statement": statement.pk,
            "counts": run.counts,
            "exceptions": run.exception_counts,
        },
    )
    return run


def _locked_statement(actor: Principal, statement_id: str) -> BankStatement:
    # Runs of one statement take turns: each reads the open exceptions the last one left.
    found = list(
        BankStatement.objects.select_for_update()
        .filter(pk=statement_id, livemode=actor.livemode)
        .select_related("account")
    )
    if not found:
        raise errors.NotFound()
    return found[0]


def _window(statement: BankStatement, days: int) -> tuple[date, date] | None:
    if statement.period_start is None or statement.period_end is None:
        return None
    widen = timedelta(days=days)
    # Dates were checked to lie far inside the calendar, so widening by a year cannot leave it.
    return statement.period_start - widen, statement.period_end + widen


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _candidate_transfers(
    statement: BankStatement, window: tuple[date, date] | None
) -> tuple[list[Transfer], int]:
    """Posted transfers on the mirror account within the window, and how many of them the
    current run of another statement already matched (left out)."""
    if window is None:
        return [], 0
    account = statement.account
    posted = Transfer.objects.filter(
        livemode=statement.livemode,
        type__in=[Transfer.Type.SINGLE, Transfer.Type.POST],
        created_at__gte=_midnight(window[0]),
        created_at__lt=_midnight(window[1] + timedelta(days=1)),
    ).only("id", "amount", "currency", "created_at", "reference", "debit_account_id")
    # One indexed scan per side ((debit_account, seq), (credit_account, seq)); a transfer never
    # has the same account on both.
    found = list(posted.filter(debit_account=account).order_by("seq"))
    found += list(posted.filter(credit_account=account).order_by("seq"))
    found.sort(key=lambda t: t.seq)
    others = ReconciliationRun.objects.filter(
        statement__account=account,
        status=ReconciliationRun.Status.CURRENT,
        statement__period_start__lte=window[1],
        statement__period_end__gte=window[0],
    ).exclude(statement=statement)
    taken: set[str] = set()
    for ids in others.values_list("matched_transfer_ids", flat=True):
        taken.update(ids)
    kept = [t for t in found if t.id not in taken]
    return kept, len(found) - len(kept)


def _day(transfer: Transfer) -> date:
    return transfer.created_at.astimezone(UTC).date()


def _lines_df(lines: Sequence[StatementLine]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line_id": [line.pk for line in lines],
            "amount_minor": pd.Series([line.amount_minor for line in lines], dtype="int64"),
            "currency": [line.currency for line in lines],
            "direction": [
                CREDIT_DIRECTION if line.credit_debit == "CRDT" else DEBIT_DIRECTION
                for line in lines
            ],
            "booking_date": pd.to_datetime(
                pd.Series([_line_day(line.booking_date, line.value_date) for line in lines])
            ),
            "reference": pd.Series([line.reference or None for line in lines], dtype=object),
        }
    )


def _transfers_df(transfers: Sequence[Transfer], account: Account) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transfer_id": [t.id for t in transfers],
            "amount_minor": pd.Series([t.amount for t in transfers], dtype="int64"),
            "currency": [t.currency for t in transfers],
            # Debiting the mirror is money arriving at the bank: a credit on its statement.
            "direction": [
                CREDIT_DIRECTION if t.debit_account_id == account.pk else DEBIT_DIRECTION
                for t in transfers
            ],
            "date": pd.to_datetime(pd.Series([_day(t) for t in transfers])),
            "reference": pd.Series([t.reference or None for t in transfers], dtype=object),
        }
    )


def _counts(
    summary: Mapping[str, Any],
    *,
    lines: int,
    excluded: int,
    undated: int,
    transfers: int,
    taken: int,
    unmatched_transfers: int,
) -> dict[str, Any]:
    matched, mismatched, unmatched = (
        summary["matched"],
        summary["mismatched"],
        summary["unmatched"],
    )
    lines_by_reason = dict(unmatched["lines_by_reason"])
    lines_by_reason[NO_DATE] = undated
    return {
        "lines": lines,
        "lines_excluded": excluded,
        "transfers": transfers,
        "transfers_matched_elsewhere": taken,
        "matched": {
            "groups": matched["groups"],
            "lines": matched["lines"],
            "transfers": matched["transfers"],
            "groups_by_rule": dict(matched["groups_by_rule"]),
        },
        "mismatched": {
            "groups": mismatched["groups"],
            "lines": mismatched["lines"],
            "transfers": mismatched["transfers"],
            "groups_by_reason": dict(mismatched["groups_by_reason"]),
        },
        "unmatched": {
            "lines": unmatched["lines"] + undated,
            "transfers": unmatched_transfers,
            "transfers_outside_period": unmatched["transfers"] - unmatched_transfers,
            "lines_by_reason": lines_by_reason,
        },
    }


@dataclass
class _Finding:
    kind: str
    reasons: list[str]
    line_ids: list[str]
    transfer_ids: list[str]
    reference: str
    currency: str
    line_amount_minor: int | None
    transfer_amount_minor: int | None
    amount_difference_minor: int | None
    tolerance_minor: int | None
    date_distance_days: int | None
    details: dict[str, Any]
    exception_id: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reasons": self.reasons,
            "line_ids": self.line_ids,
            "transfer_ids": self.transfer_ids,
            "reference": self.reference,
            "currency": self.currency,
            "line_amount_minor": self.line_amount_minor,
            "transfer_amount_minor": self.transfer_amount_minor,
            "amount_difference_minor": self.amount_difference_minor,
            "tolerance_minor": self.tolerance_minor,
            "date_distance_days": self.date_distance_days,
            "details": self.details,
            "exception": self.exception_id,
        }

    @property
    def fingerprint(self) -> str:
        key = [self.kind, sorted(self.line_ids), sorted(self.transfer_ids), sorted(self.reasons)]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def _findings(
    records: Mapping[str, Any],
    unmatched_transfers: Iterable[Mapping[str, Any]],
    undated: Iterable[StatementLine],
) -> list[_Finding]:
    findings = []
    for group in records["mismatched"]:
        same = group["line_currency"] == group["transfer_currency"]
        findings.append(
            _Finding(
                kind=Kind.MISMATCHED,
                reasons=list(group["reasons"]),
                line_ids=list(group["line_ids"]),
                transfer_ids=list(group["transfer_ids"]),
                reference=group["reference"] or "",
                currency=(group["line_currency"] or "") if same else "",
                line_amount_minor=group["line_amount_minor"],
                transfer_amount_minor=group["transfer_amount_minor"],
                amount_difference_minor=group["amount_difference_minor"],
                tolerance_minor=group["tolerance_minor"],
                date_distance_days=group["date_distance_days"],
                details={
                    name: group[name]
                    for name in (
                        "line_currency",
                        "transfer_currency",
                        "line_direction",
                        "transfer_direction",
                    )
                },
            )
        )
    for row in records["unmatched_lines"]:
        findings.append(_unmatched(Kind.UNMATCHED_LINE, row, row["line_id"], row["booking_date"]))
    for line in undated:
        findings.append(
            _unmatched(
                Kind.UNMATCHED_LINE,
                {
                    "reason": NO_DATE,
                    "amount_minor": line.amount_minor,
                    "currency": line.currency,
                    "direction": CREDIT_DIRECTION
                    if line.credit_debit == "CRDT"
                    else DEBIT_DIRECTION,
                    "reference": line.reference or None,
                },
                line.pk,
                None,
            )
        )
    for row in unmatched_transfers:
        findings.append(_unmatched(Kind.UNMATCHED_TRANSFER, row, row["transfer_id"], row["date"]))
    return findings


def _unmatched(kind: str, row: Mapping[str, Any], item: str, day: str | None) -> _Finding:
    is_line = kind == Kind.UNMATCHED_LINE
    amount = int(row["amount_minor"])
    return _Finding(
        kind=kind,
        reasons=[str(row["reason"])],
        line_ids=[item] if is_line else [],
        transfer_ids=[] if is_line else [item],
        reference=row["reference"] or "",
        currency=row["currency"],
        line_amount_minor=amount if is_line else None,
        transfer_amount_minor=None if is_line else amount,
        amount_difference_minor=None,
        tolerance_minor=None,
        date_distance_days=None,
        details={"direction": row["direction"], "date": day},
    )


def _queue(
    run: ReconciliationRun, statement: BankStatement, findings: Sequence[_Finding]
) -> dict[str, int]:
    """Open, keep, or leave resolved one exception per finding; close what was not found."""
    earlier = ReconciliationException.objects.filter(statement=statement)
    Status = ReconciliationException.Status
    still_open = {row.fingerprint: row for row in earlier.filter(status=Status.OPEN)}
    resolved = dict(earlier.filter(status=Status.RESOLVED).values_list("fingerprint", "id"))
    new_rows: dict[str, ReconciliationException] = {}
    kept: list[ReconciliationException] = []
    already_resolved = 0
    for finding in findings:
        fingerprint = finding.fingerprint
        if fingerprint in new_rows:  # each item is in one category, so this cannot happen
            finding.exception_id = new_rows[fingerprint].pk
        elif fingerprint in still_open:
            row = still_open.pop(fingerprint)
            row.last_run = run
            kept.append(row)
            finding.exception_id = row.pk
        elif fingerprint in resolved:
            already_resolved += 1
            finding.exception_id = resolved[fingerprint]
        else:
            row = ReconciliationException(
                id=new_id("rex"),
                livemode=statement.livemode,
                statement=statement,
                account_id=statement.account_id,
                run=run,
                last_run=run,
                kind=finding.kind,
                reasons=",".join(finding.reasons),
                fingerprint=fingerprint,
                reference=finding.reference,
                line_ids=finding.line_ids,
                transfer_ids=finding.transfer_ids,
                currency=finding.currency,
                line_amount_minor=finding.line_amount_minor,
                transfer_amount_minor=finding.transfer_amount_minor,
                amount_difference_minor=finding.amount_difference_minor,
                tolerance_minor=finding.tolerance_minor,
                date_distance_days=finding.date_distance_days,
                details=finding.details,
            )
            new_rows[fingerprint] = row
            finding.exception_id = row.pk
    # What is still in still_open was not found again: the item matched, or changed.
    gone = list(still_open.values())
    for row in gone:
        row.status = Status.SUPERSEDED
        row.superseded_by = run
    ReconciliationException.objects.bulk_update(gone, ["status", "superseded_by"], batch_size=500)
    ReconciliationException.objects.bulk_update(kept, ["last_run"], batch_size=500)
    ReconciliationException.objects.bulk_create(new_rows.values(), batch_size=500)
    return {
        "opened": len(new_rows),
        "still_open": len(kept),
        "superseded": len(gone),
        "already_resolved": already_resolved,
    }


def _bounded(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": items[:MAX_RESULT_ITEMS], "has_more": len(items) > MAX_RESULT_ITEMS}


def _bounded_result(records: Mapping[str, Any], findings: Sequence[_Finding]) -> dict[str, Any]:
    matched = [{name: group[name] for name in MATCHED_FIELDS} for group in records["matched"]]
    of_kind = {
        kind: [finding.as_json() for finding in findings if finding.kind == kind]
        for kind in Kind.values
    }
    return {
        "matched": _bounded(matched),
        "mismatched": _bounded(of_kind[Kind.MISMATCHED]),
        "unmatched_lines": _bounded(of_kind[Kind.UNMATCHED_LINE]),
        "unmatched_transfers": _bounded(of_kind[Kind.UNMATCHED_TRANSFER]),
    }


def _mark_lines(
    run: ReconciliationRun,
    lines: Sequence[StatementLine],
    records: Mapping[str, Any],
    undated: Sequence[StatementLine],
) -> None:
    verdict: dict[str, tuple[str, str, list[str]]] = {}
    for group in records["matched"]:
        for line_id in group["line_ids"]:
            verdict[line_id] = (LineStatus.MATCHED, group["rule"], group["transfer_ids"])
    for group in records["mismatched"]:
        for line_id in group["line_ids"]:
            reasons = ",".join(group["reasons"])
            verdict[line_id] = (LineStatus.MISMATCHED, reasons, group["transfer_ids"])
    for row in records["unmatched_lines"]:
        verdict[row["line_id"]] = (LineStatus.UNMATCHED, row["reason"], [])
    for line in undated:
        verdict[line.pk] = (LineStatus.UNMATCHED, NO_DATE, [])
    changed = []
    for line in lines:
        if line.pk not in verdict:
            continue  # not booked: stays excluded
        line.status, line.status_reason, line.transfer_ids = verdict[line.pk]
        line.run = run
        changed.append(line)
    StatementLine.objects.bulk_update(
        changed, ["status", "status_reason", "transfer_ids", "run"], batch_size=500
    )


# --- the exceptions queue ------------------------------------------------------------------------


@transaction.atomic(durable=True)
def reconciliation_exception_resolve(
    *, actor: Principal, exception_id: str, note: str
) -> ReconciliationException:
    """Close an open exception with the operator's note of what was done about it."""
    found = list(
        ReconciliationException.objects.select_for_update().filter(
            pk=exception_id, livemode=actor.livemode
        )
    )
    if not found:
        raise errors.NotFound()
    row = found[0]
    if row.status == ReconciliationException.Status.RESOLVED:
        raise errors.Conflict(
            "The exception is already resolved.", code="reconciliation_exception_resolved"
        )
    if row.status == ReconciliationException.Status.SUPERSEDED:
        raise errors.Conflict(
            "A later reconciliation run no longer finds this exception; there is nothing to "
            "resolve.",
            code="reconciliation_exception_superseded",
        )
    row.status = ReconciliationException.Status.RESOLVED
    row.note = note
    row.resolved_by = actor.participant.pk
    row.resolved_at = timezone.now()
    row.save(update_fields=["status", "note", "resolved_by", "resolved_at"])
    event_emit(
        type="reconciliation_exception.resolved",
        owner=actor.participant,
        actor=actor,
        data={"id": row.pk, "bank_statement": row.statement_id, "kind": row.kind},
    )
    return row
