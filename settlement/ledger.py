"""Ledger services: open accounts, make transfers (one, or batches of thousands), post and void
pending transfers, expire them, and read balances at any past time.

The database applies every transfer to its accounts (see ``settlement.models``), so a transfer is
one insert: the accounts are locked, in id order, by the trigger, and an overdraft is refused by
the account's CHECK constraint. These functions turn what the database refused into the API's
error codes. A batch is simulated first under its accounts' locks, so that each item gets its
own answer, and then inserted with one statement (COPY on PostgreSQL)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.models import Q, Sum
from django.utils import timezone
from psycopg.types.json import JsonbBinaryDumper

from hub import errors
from hub.ids import new_id, new_ids
from hub.models import Participant, Role
from hub.money import check_currency
from hub.principal import Principal
from settlement.models import Account, Transfer

Type = Transfer.Type
Kind = Account.Kind

MAX_BATCH = 8000
MAX_TIMEOUT_SECONDS = 30 * 24 * 3600
# Transfer ids the caller chooses: what fits in a URL path segment unescaped.
ID_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


# --- accounts ------------------------------------------------------------------------------------

# Who may own which kind of account.
KINDS_BY_ROLE: dict[str, frozenset[str]] = {
    Role.MERCHANT: frozenset({Kind.MERCHANT_SETTLEMENT}),
    Role.PAYMENT_INSTITUTION: frozenset({Kind.INSTITUTION_RECEIVABLE}),
    Role.BANK: frozenset({Kind.BANK_CASH}),
    Role.INSURER: frozenset({Kind.INSURANCE_PREMIUM}),
    Role.OPERATOR: frozenset(
        {
            Kind.PAYOUT_CLEARING,
            Kind.FX_POSITION,
            Kind.FEES,
            Kind.SUSPENSE,
            Kind.EQUITY,
            Kind.LOAN,
            Kind.BANK_CASH,
        }
    ),
}
# Kinds that may never be overdrawn unless the operator says otherwise.
NO_OVERDRAFT = frozenset({Kind.MERCHANT_SETTLEMENT, Kind.PAYOUT_CLEARING})


def account_create(
    *,
    actor: Principal,
    owner_id: str | None,
    currency: str,
    kind: str,
    debits_must_not_exceed_credits: bool | None = None,
    credits_must_not_exceed_debits: bool | None = None,
    hot: bool = False,
    reference: str = "",
    metadata: Mapping[str, str] | None = None,
) -> Account:
    """An account for ``owner_id`` (the caller if None). A merchant opens its own settlement
    accounts; the operator opens any account for anyone. ``hot``: see ``Account.hot``."""
    currency = check_currency(currency)
    if owner_id is None or owner_id == actor.participant.pk:
        owner = actor.participant
    elif actor.is_operator:
        found = Participant.objects.filter(pk=owner_id).first()
        if found is None:
            raise errors.InvalidRequest("No such participant.", code="owner_missing", param="owner")
        owner = found
    else:
        raise errors.PermissionDenied(
            "Only the operator opens accounts for other participants.", code="owner_forbidden"
        )
    if not actor.is_operator and kind != Kind.MERCHANT_SETTLEMENT:
        raise errors.PermissionDenied(
            "A merchant opens merchant_settlement accounts only.", code="kind_forbidden"
        )
    if kind not in KINDS_BY_ROLE.get(owner.role, frozenset()):
        allowed = ", ".join(sorted(KINDS_BY_ROLE.get(owner.role, frozenset()))) or "none"
        raise errors.InvalidRequest(
            f"A {owner.role} holds no {kind} account (it may hold: {allowed}).",
            code="kind_invalid",
            param="kind",
        )
    if not owner.is_active:
        raise errors.Conflict(f"The owner is {owner.status}.", code="participant_inactive")
    if reference.startswith("hub:"):
        raise errors.InvalidRequest(
            "References starting with hub: name the hub's own accounts.",
            code="reference_reserved",
            param="reference",
        )
    no_overdraft = kind in NO_OVERDRAFT
    if not actor.is_operator and debits_must_not_exceed_credits is False:
        raise errors.PermissionDenied(
            "Only the operator lets an account be overdrawn.", code="flag_forbidden"
        )
    dnec = (
        no_overdraft if debits_must_not_exceed_credits is None else debits_must_not_exceed_credits
    )
    cned = bool(credits_must_not_exceed_debits)
    if dnec and cned:
        raise errors.InvalidRequest(
            "An account takes one overdraft flag at most.",
            code="flags_invalid",
            param="credits_must_not_exceed_debits",
        )
    return Account.objects.create(
        livemode=actor.livemode,
        owner=owner,
        currency=currency,
        kind=kind,
        debits_must_not_exceed_credits=dnec,
        credits_must_not_exceed_debits=cned,
        hot=hot,
        reference=reference,
        metadata=dict(metadata or {}),
    )


# The columns a new transfer is written with, in this order.
_COLUMNS = (
    "id",
    "livemode",
    "type",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "currency",
    "pending_id",
    "pending_amount",
    "expires_at",
    "reference",
    "code",
    "corrects_id",
    "metadata",
    "created_at",
)


# --- one transfer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferSpec:
    """What a caller asks for; ``id`` (the caller's, or one made up) makes a retry safe."""

    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    id: str | None = None
    pending: bool = False
    timeout_seconds: int | None = None
    reference: str = ""
    code: str = ""
    corrects: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def check_transfer_id(value: str, *, param: str = "id") -> str:
    # "batch" names the batch endpoint in /v1/transfers/batch.
    if not 1 <= len(value) <= 64 or not set(value) <= ID_ALPHABET or value == "batch":
        raise errors.InvalidRequest(
            "A transfer id has 1 to 64 letters, digits, '_' or '-' (and is not 'batch').",
            code="parameter_invalid",
            param=param,
        )
    return value


def _row(
    spec: TransferSpec, *, livemode: bool, now: datetime, corrects_seq: int | None
) -> Transfer:
    if spec.timeout_seconds is not None and not spec.pending:
        raise errors.InvalidRequest(
            "Only a pending transfer has a timeout.", code="parameter_invalid", param="timeout"
        )
    return Transfer(
        id=spec.id or new_id("tr"),
        livemode=livemode,
        type=Type.PENDING if spec.pending else Type.SINGLE,
        debit_account_id=spec.debit_account_id,
        credit_account_id=spec.credit_account_id,
        amount=spec.amount,
        currency=spec.currency,
        expires_at=(
            now + timedelta(seconds=spec.timeout_seconds) if spec.timeout_seconds else None
        ),
        reference=spec.reference,
        code=spec.code,
        corrects_id=corrects_seq,
        metadata=dict(spec.metadata),
        created_at=now,
    )


def _corrected_seq(livemode: bool, transfer_id: str | None) -> int | None:
    if transfer_id is None:
        return None
    seq = (
        Transfer.objects.filter(livemode=livemode, id=transfer_id)
        .values_list("seq", flat=True)
        .first()
    )
    if seq is None:
        raise errors.InvalidRequest(
            "corrects names no transfer.", code="transfer_missing", param="corrects"
        )
    return seq


def transfer_create(*, livemode: bool, spec: TransferSpec) -> tuple[Transfer, bool]:
    """Make one transfer, posted at once or pending. Returns it and whether it is new: a repeat
    of an id with the same fields returns the original; with other fields it is refused."""
    if spec.id is not None:
        check_transfer_id(spec.id)
    if spec.timeout_seconds is not None and not 1 <= spec.timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise errors.InvalidRequest(
            f"timeout is 1 to {MAX_TIMEOUT_SECONDS} seconds.",
            code="parameter_invalid",
            param="timeout",
        )
    row = _row(
        spec,
        livemode=livemode,
        now=timezone.now(),
        corrects_seq=_corrected_seq(livemode, spec.corrects),
    )
    return _insert_one(row)


def deadlocked(exc: BaseException) -> bool:
    """PostgreSQL broke a deadlock by failing this statement. The ledger takes account locks
    in id order, so the one deadlock left is a transfer id sent twice at once (the same id in a
    batch and a single transfer): the index entry and the account locks are taken in opposite
    orders. Trying again finds the other one's transfer."""
    return isinstance(exc.__cause__, psycopg.errors.DeadlockDetected)


DEADLOCK_TRIES = 5


def _race_lost() -> errors.Conflict:
    return errors.Conflict(
        "The same transfer id is being made by another request; send it again.",
        code="transfer_id_race",
    )


def _insert_one(row: Transfer) -> tuple[Transfer, bool]:
    for attempt in range(DEADLOCK_TRIES):
        try:
            return _insert_one_try(row)
        except DatabaseError as exc:
            if not deadlocked(exc):
                raise
            if connection.in_atomic_block or attempt == DEADLOCK_TRIES - 1:
                raise _race_lost() from None
            time.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
    raise AssertionError("unreachable")


_local = threading.local()


@contextmanager
def savepoints_off() -> Iterator[None]:
    """Single transfers made inside the ``with`` make no savepoint of their own: for a caller
    whose transaction is rolled back whole on any refusal (a settlement run's chunk of hundreds
    of transfers), since a transaction with more than 64 subtransactions makes every snapshot
    in the database slower to check. A refusal then leaves that transaction unusable."""
    _local.savepoints_off = True
    try:
        yield
    finally:
        _local.savepoints_off = False


def _insert_one_try(row: Transfer) -> tuple[Transfer, bool]:
    try:
        # Outside a transaction the insert commits by itself (one round trip); inside one, a
        # savepoint keeps the caller's transaction usable after a refusal.
        if connection.in_atomic_block:
            with transaction.atomic(savepoint=not getattr(_local, "savepoints_off", False)):
                _save(row)
        else:
            _save(row)
    except DatabaseError as exc:
        if violated(exc, "transfer_id_once"):
            return _repeat(row), False
        if deadlocked(exc):
            raise
        raise _refusal(exc, row) from None
    return row, True


# PostgreSQL's types of ``_COLUMNS``, for a binary COPY.
_COPY_TYPES = [
    "text",
    "bool",
    "text",
    "text",
    "text",
    "int8",
    "text",
    "int8",
    "int8",
    "timestamptz",
    "text",
    "text",
    "int8",
    "jsonb",
    "timestamptz",
]
_METADATA = _COLUMNS.index("metadata")
_INSERT = (
    f"INSERT INTO settlement_transfer ({', '.join(_COLUMNS)}) "  # noqa: S608 (constant names)
    f"VALUES ({', '.join(['%s'] * len(_COLUMNS))}) RETURNING seq"
)


def _save(row: Transfer) -> None:
    """``row.save()`` without the ORM's statement building, which costs more than the
    insert itself on the hot path (PostgreSQL; elsewhere the ORM)."""
    # The connection itself, not the ``connection`` proxy: each attribute read through the
    # proxy looks the connection up again.
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        row.save(force_insert=True)
        return
    values = [getattr(row, name) for name in _COLUMNS]
    values[_METADATA] = json.dumps(row.metadata) if row.metadata else "{}"
    db.ensure_connection()
    # A server-side prepared statement: parsed and planned once per connection, where Django's
    # cursors would send the statement as text each time.
    with db.wrap_database_errors, psycopg.Cursor(db.connection) as cursor:
        cursor.execute(_INSERT, values, prepare=True)
        found = cursor.fetchone()
        assert found is not None
        row.seq = found[0]
    row._state.adding = False
    row._state.db = DEFAULT_DB_ALIAS


# --- linked transfers ----------------------------------------------------------------------------

MAX_LINKED = 16


def transfers_create_linked(
    *,
    livemode: bool,
    specs: Sequence[TransferSpec],
    accounts_checked: bool = False,
    now: datetime | None = None,
    alongside: Sequence[tuple[str, Sequence[Any]]] = (),
) -> list[Transfer]:
    """A few transfers that are made together or not at all, as one ``INSERT``: the database
    checks them and takes their accounts' locks at the end of that statement, in id order, so
    the accounts they share with every other writer (the hub's FX positions, say) stay locked
    only from there to the commit, with no Python between. Every spec names its id (new ones:
    a repeat is ``409 transfer_exists``). The accounts' existence, currency and mode are
    checked first without a lock (one query; skipped when the caller has ``accounts_checked``),
    since after a refused statement the caller's transaction can ask nothing more. For callers
    that need no per-item answers; batches with per-item results use
    ``transfers_create_batch``. ``now`` stamps them with the time of the caller's own record
    (so that the two fall on the same day). ``alongside`` (PostgreSQL only) are the caller's own
    writes, each one ``INSERT``, ``UPDATE`` or ``DELETE`` with its parameters, made by the same
    statement as data-modifying CTEs: one round trip for all, and a refusal of any undoes all."""
    if not 1 <= len(specs) <= MAX_LINKED:
        raise errors.InvalidRequest(
            f"Linked transfers are 1 to {MAX_LINKED}.", code="parameter_invalid", param="transfers"
        )
    now = now or timezone.now()
    rows = []
    for spec in specs:
        if spec.id is None or spec.corrects is not None:
            raise ValueError("linked transfers name their ids and correct nothing")
        check_transfer_id(spec.id)
        rows.append(_row(spec, livemode=livemode, now=now, corrects_seq=None))
    if not accounts_checked:
        _check_accounts(rows)
    try:
        # No savepoint of its own (a round trip while the accounts are locked): a refusal
        # leaves the caller's transaction to be rolled back, as the caller's own error does.
        with transaction.atomic(savepoint=False):
            _save_many(rows, alongside)
    except DatabaseError as exc:
        if deadlocked(exc):
            raise _race_lost() from None
        if violated(exc, "transfer_id_once"):
            raise errors.Conflict(
                "A transfer id of these was used before.", code="transfer_exists"
            ) from None
        refusal = _linked_refusal(exc, rows)
        if refusal is exc:
            raise  # not the ledger's: the caller's own writes alongside, say
        raise refusal from None
    return rows


# Linked transfers as one parameter, a JSON array of rows typed by the table itself: the same
# prepared statement for any number of them, and few enough parameters, with the writes of a
# caller alongside, for psycopg to keep the statement's parsed form (it parses anew each time a
# statement with more than 50).
_INSERT_MANY = (
    f"INSERT INTO settlement_transfer ({', '.join(_COLUMNS)}) "  # noqa: S608 (constant names)
    f"SELECT {', '.join(_COLUMNS)} FROM json_populate_recordset(NULL::settlement_transfer, %s) "
    "RETURNING id, seq"
)


def _save_many(rows: list[Transfer], alongside: Sequence[tuple[str, Sequence[Any]]] = ()) -> None:
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        if alongside:
            raise ValueError("writes alongside linked transfers need PostgreSQL")
        for row in rows:
            row.save(force_insert=True)
        return
    statement = _INSERT_MANY
    values: list[Any] = []
    if alongside:
        ctes = ", ".join(f"w{n} AS ({sql})" for n, (sql, _) in enumerate(alongside))
        statement = f"WITH {ctes} {statement}"
        for _, params in alongside:
            values.extend(params)
    values.append(json.dumps([_json_row(row) for row in rows]))
    db.ensure_connection()
    with db.wrap_database_errors, psycopg.Cursor(db.connection) as cursor:
        cursor.execute(statement, values, prepare=True)
        seqs = dict(cursor.fetchall())
    for row in rows:
        row.seq = seqs[row.id]
        row._state.adding = False
        row._state.db = DEFAULT_DB_ALIAS


def _json_row(row: Transfer) -> dict[str, Any]:
    """A new transfer's columns as JSON values PostgreSQL reads back exactly (times in ISO 8601
    with their offset, amounts as integers)."""
    found = {name: getattr(row, name) for name in _COLUMNS}
    for name in ("expires_at", "created_at"):
        if found[name] is not None:
            found[name] = found[name].isoformat()
    return found


def _check_accounts(rows: list[Transfer]) -> None:
    """That every account exists in the rows' mode and holds their currency (one query)."""
    ids = {row.debit_account_id for row in rows} | {row.credit_account_id for row in rows}
    held = dict(
        Account.objects.filter(pk__in=ids, livemode=rows[0].livemode).values_list("pk", "currency")
    )
    for row in rows:
        for param, account_id in (
            ("debit_account", row.debit_account_id),
            ("credit_account", row.credit_account_id),
        ):
            if account_id not in held:
                raise errors.InvalidRequest("No such account.", code="account_missing", param=param)
            if held[account_id] != row.currency:
                raise errors.InvalidRequest(
                    f"The {param.replace('_', ' ')} holds {held[account_id]}, not {row.currency}.",
                    code="currency_mismatch",
                    param=param,
                )


def _linked_refusal(exc: DatabaseError, rows: list[Transfer]) -> errors.HubError | DatabaseError:
    """The API's error for what the database refused, without asking it anything more (the
    transaction is aborted)."""
    if violated(exc, "account_mismatch"):
        return errors.InvalidRequest(
            "The accounts do not take these transfers.", code="account_invalid"
        )
    return _refusal(exc, rows[0])


def _repeat(row: Transfer) -> Transfer:
    """The transfer already made under ``row.id``, if ``row`` asks for the same thing."""
    existing = Transfer.objects.get(livemode=row.livemode, id=row.id)
    _check_same(existing, row)
    return existing


def _check_same(existing: Transfer, row: Transfer) -> None:
    differs = [
        name
        for name in (
            "type",
            "debit_account_id",
            "credit_account_id",
            "amount",
            "currency",
            "pending_id",
            "reference",
            "code",
            "corrects_id",
            "metadata",
        )
        if getattr(existing, name) != getattr(row, name)
    ]
    if _timeout(existing) != _timeout(row):
        differs.append("timeout")
    if differs:
        raise errors.Conflict(
            f"A transfer {row.id!r} exists with another {differs[0]}.",
            code="transfer_exists",
            param="id" if differs[0] == "type" else differs[0].removesuffix("_id"),
        )


def _timeout(row: Transfer) -> float | None:
    if row.expires_at is None:
        return None
    return round((row.expires_at - row.created_at).total_seconds())


# How SQLite names a unique index it refuses (by its columns, not its name).
_SQLITE_UNIQUE = {
    "transfer_id_once": "settlement_transfer.livemode, settlement_transfer.id",
    "transfer_resolved_once": "settlement_transfer.pending_id",
}


def violated(exc: BaseException, name: str, *, sqlite: str | None = None) -> bool:
    """Whether the database refused for ``name``. On PostgreSQL: the constraint it names, or the
    trigger's ``ledger:<name>`` refusal, never the rest of the message (its detail quotes the
    caller's values: an id or a reference may read like a constraint's name). SQLite's message
    names the constraint, or a unique one's columns (``sqlite``, for tables not the ledger's)."""
    diag = getattr(exc.__cause__, "diag", None)
    if diag is not None:
        if diag.constraint_name:
            return bool(diag.constraint_name == name)
        primary = diag.message_primary or ""
        return primary == f"ledger:{name}" or primary.startswith(f"ledger:{name}:")
    text = str(exc)
    columns = sqlite or _SQLITE_UNIQUE.get(name)
    return name in text or (columns is not None and columns in text)


def _refusal(exc: DatabaseError, row: Transfer) -> errors.HubError | DatabaseError:
    """The API's error for what the database refused (anything unexpected is re-raised)."""
    if violated(exc, "account_debits_within_credits"):
        return errors.Conflict(
            "The debit account's funds do not cover this transfer.",
            code="insufficient_funds",
            param="amount",
        )
    if violated(exc, "account_credits_within_debits"):
        return errors.Conflict(
            "The credit account may not take more credits than its debits.",
            code="exceeds_debits",
            param="amount",
        )
    if violated(exc, "transfer_two_accounts"):
        return errors.InvalidRequest(
            "The debit and credit accounts are the same.",
            code="same_account",
            param="credit_account",
        )
    if violated(exc, "transfer_resolved_once"):
        done = Transfer.objects.filter(pending_id=row.pending_id, type__in=Transfer.RESOLUTIONS)
        names = {"post": "posted", "void": "voided", "expire": "expired"}
        state = names.get(str(done.values_list("type", flat=True).first()), "resolved")
        return errors.Conflict(
            f"The pending transfer is already {state}.", code=f"pending_transfer_{state}"
        )
    if violated(exc, "resolution_mismatch"):
        return errors.Conflict("The pending transfer has expired.", code="pending_transfer_expired")
    if violated(exc, "account_mismatch"):
        return _account_error(row)
    return exc


def _account_error(row: Transfer) -> errors.HubError:
    found = {
        a.pk: a
        for a in Account.objects.filter(
            pk__in=[row.debit_account_id, row.credit_account_id], livemode=row.livemode
        )
    }
    for param, account_id in (
        ("debit_account", row.debit_account_id),
        ("credit_account", row.credit_account_id),
    ):
        account = found.get(account_id)
        if account is None:
            return errors.InvalidRequest("No such account.", code="account_missing", param=param)
        if account.currency != row.currency:
            return errors.InvalidRequest(
                f"The {param.replace('_', ' ')} holds {account.currency}, not {row.currency}.",
                code="currency_mismatch",
                param=param,
            )
    return errors.InvalidRequest("The accounts do not take this transfer.", code="account_invalid")


# --- two-phase -----------------------------------------------------------------------------------


def _pending(livemode: bool, pending_id: str) -> Transfer:
    pending = Transfer.objects.filter(livemode=livemode, id=pending_id).first()
    if pending is None:
        raise errors.NotFound()
    if pending.type != Type.PENDING:
        raise errors.Conflict("The transfer is not pending.", code="transfer_not_pending")
    return pending


def transfer_post(
    *,
    livemode: bool,
    pending_id: str,
    amount: int | None = None,
    id: str | None = None,
    reference: str = "",
    metadata: Mapping[str, str] | None = None,
) -> tuple[Transfer, bool]:
    """Post a pending transfer, all of it or ``amount`` of it (the rest is released)."""
    if id is not None:
        check_transfer_id(id)
    pending = _pending(livemode, pending_id)
    posted = pending.amount if amount is None else amount
    if posted > pending.amount:
        raise errors.InvalidRequest(
            f"The pending transfer holds {pending.amount} minor units; {posted} cannot be posted.",
            code="exceeds_pending_amount",
            param="amount",
        )
    return _resolve(pending, Type.POST, posted, id=id, reference=reference, metadata=metadata)


def transfer_void(
    *,
    livemode: bool,
    pending_id: str,
    id: str | None = None,
    reference: str = "",
    metadata: Mapping[str, str] | None = None,
) -> tuple[Transfer, bool]:
    if id is not None:
        check_transfer_id(id)
    pending = _pending(livemode, pending_id)
    return _resolve(
        pending, Type.VOID, pending.amount, id=id, reference=reference, metadata=metadata
    )


def _resolve(
    pending: Transfer,
    kind: str,
    amount: int,
    *,
    id: str | None,
    reference: str,
    metadata: Mapping[str, str] | None,
) -> tuple[Transfer, bool]:
    now = timezone.now()
    row = Transfer(
        id=id or new_id("tr"),
        livemode=pending.livemode,
        type=kind,
        debit_account_id=pending.debit_account_id,
        credit_account_id=pending.credit_account_id,
        amount=amount,
        currency=pending.currency,
        pending=pending,
        pending_amount=pending.amount,
        reference=reference or pending.reference,
        metadata=dict(metadata or {}),
        created_at=now,
    )
    if id is not None and Transfer.objects.filter(livemode=pending.livemode, id=id).exists():
        return _repeat(row), False  # a retry of a resolution that was made
    # Said before the insert for a clearer answer (the database checks it as well), unless the
    # hold was resolved already, which the insert reports.
    expired = pending.expires_at is not None and pending.expires_at <= now
    if (
        expired
        and not Transfer.objects.filter(pending=pending, type__in=Transfer.RESOLUTIONS).exists()
    ):
        raise errors.Conflict("The pending transfer has expired.", code="pending_transfer_expired")
    return _insert_one(row)


def holds_expire_due(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Release every pending transfer whose timeout has passed (an ``expire`` transfer each).
    A hold posted or voided meanwhile is skipped: its resolution took the unique slot first."""
    now = now or timezone.now()
    due = list(
        Transfer.objects.filter(type=Type.PENDING, expires_at__lte=now)
        .exclude(resolutions__type__in=Transfer.RESOLUTIONS)
        .order_by("expires_at")[:limit]
    )
    rows = [
        Transfer(
            id=new_id("tr"),
            livemode=p.livemode,
            type=Type.EXPIRE,
            debit_account_id=p.debit_account_id,
            credit_account_id=p.credit_account_id,
            amount=p.amount,
            currency=p.currency,
            pending=p,
            pending_amount=p.amount,
            reference=p.reference,
            created_at=now,
        )
        for p in due
    ]
    if not rows:
        return 0
    with transaction.atomic():
        Transfer.objects.bulk_create(rows, ignore_conflicts=True)
    return Transfer.objects.filter(type=Type.EXPIRE, pending__in=due, created_at=now).count()


# --- batches -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemResult:
    index: int
    id: str
    status: str  # "created" | "exists" | "failed" | "skipped" (an atomic batch that failed)
    error: errors.HubError | None = None


class BatchRefused(errors.HubError):
    """An atomic batch with an item that cannot be made: nothing was made."""

    status = 409

    def __init__(self, results: list[ItemResult]) -> None:
        failed = next(r for r in results if r.status == "failed")
        assert failed.error is not None
        super().__init__(
            f"Item {failed.index} was refused ({failed.error.code}): {failed.error.message} "
            "Nothing in the batch was made.",
            code="batch_refused",
            param=f"transfers[{failed.index}].{failed.error.param or ''}".rstrip("."),
        )
        self.results = results


@dataclass
class _Balance:
    currency: str
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int


def transfers_create_batch(
    *, livemode: bool, specs: Sequence[TransferSpec], atomic: bool
) -> list[ItemResult]:
    """Make up to 8,000 transfers in one transaction (see ``_batch``); tried again if PostgreSQL
    broke a deadlock with a single transfer of the same id (``deadlocked``)."""
    for attempt in range(DEADLOCK_TRIES):
        try:
            return _batch(livemode=livemode, specs=specs, atomic=atomic)
        except DatabaseError as exc:
            if not deadlocked(exc):
                raise
            if connection.in_atomic_block or attempt == DEADLOCK_TRIES - 1:
                raise _race_lost() from None
            time.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
    raise AssertionError("unreachable")


def _batch(*, livemode: bool, specs: Sequence[TransferSpec], atomic: bool) -> list[ItemResult]:
    """Make up to 8,000 transfers in one transaction, in order: ``atomic`` makes them linked
    (all or none); otherwise each item succeeds or fails on its own, seeing the balances the
    items before it left. One lock query, one insert (fed while the items are checked), one
    balance update per account."""
    if not 1 <= len(specs) <= MAX_BATCH:
        raise errors.InvalidRequest(
            f"A batch holds 1 to {MAX_BATCH} transfers.",
            code="parameter_invalid",
            param="transfers",
        )
    chosen = {spec.id for spec in specs if spec.id is not None}
    with transaction.atomic():
        balances = _lock(
            {s.debit_account_id for s in specs} | {s.credit_account_id for s in specs}, livemode
        )
        # Stamped once the accounts are ours, so that times follow the order of the writes.
        now = timezone.now()
        # Read under the accounts' locks: a transfer on them made meanwhile has committed.
        # Only ids the caller chose can exist already; the hub's own are new.
        existing = (
            {t.id: t for t in Transfer.objects.filter(livemode=livemode, id__in=chosen)}
            if chosen
            else {}
        )
        corrected = dict(
            Transfer.objects.filter(
                livemode=livemode, id__in={s.corrects for s in specs if s.corrects}
            ).values_list("id", "seq")
        )
        results: list[ItemResult] = []
        seen: set[str] = set()
        refused = False
        try:
            with _inserter() as insert:
                for index, (spec, transfer_id) in enumerate(zip(specs, _ids(specs), strict=True)):
                    try:
                        if spec.id is not None:
                            check_transfer_id(spec.id)
                        if transfer_id in seen:
                            raise errors.InvalidRequest(
                                "The id appears twice in the batch.",
                                code="id_repeated",
                                param="id",
                            )
                        seen.add(transfer_id)
                        if spec.corrects and spec.corrects not in corrected:
                            raise errors.InvalidRequest(
                                "corrects names no transfer.",
                                code="transfer_missing",
                                param="corrects",
                            )
                        if spec.timeout_seconds is not None and not spec.pending:
                            raise errors.InvalidRequest(
                                "Only a pending transfer has a timeout.",
                                code="parameter_invalid",
                                param="timeout",
                            )
                        if transfer_id in existing:
                            row = _row(
                                replace(spec, id=transfer_id),
                                livemode=livemode,
                                now=now,
                                corrects_seq=corrected.get(spec.corrects or ""),
                            )
                            _check_same(existing[transfer_id], row)
                            results.append(ItemResult(index, transfer_id, "exists"))
                            continue
                        _apply(balances, spec)
                    except errors.HubError as exc:
                        results.append(ItemResult(index, transfer_id, "failed", exc))
                        refused = atomic
                        continue
                    if not refused:  # an atomic batch that failed inserts nothing more
                        insert(
                            (
                                transfer_id,
                                livemode,
                                Type.PENDING if spec.pending else Type.SINGLE,
                                spec.debit_account_id,
                                spec.credit_account_id,
                                spec.amount,
                                spec.currency,
                                None,
                                None,
                                now + timedelta(seconds=spec.timeout_seconds)
                                if spec.timeout_seconds
                                else None,
                                spec.reference,
                                spec.code,
                                corrected.get(spec.corrects) if spec.corrects else None,
                                spec.metadata,
                                now,
                            )
                        )
                    results.append(ItemResult(index, transfer_id, "created"))
                if refused:
                    # Raised inside the insert: the rows sent so far are abandoned with it.
                    raise BatchRefused(
                        [
                            r if r.status == "failed" else ItemResult(r.index, r.id, "skipped")
                            for r in results
                        ]
                    )
        except DatabaseError as exc:
            if violated(exc, "transfer_id_once"):
                # An id of the batch was taken meanwhile on other accounts: nothing was
                # made; the same batch again answers "exists" for it.
                raise errors.Conflict(
                    "A transfer id of the batch was used meanwhile; send the batch again.",
                    code="transfer_id_race",
                ) from None
            raise
    return results


_BALANCE_COLUMNS = (
    "id",
    "currency",
    "debits_must_not_exceed_credits",
    "credits_must_not_exceed_debits",
    "debits_posted",
    "credits_posted",
    "debits_pending",
    "credits_pending",
)
_LOCK = (
    f"SELECT {', '.join(_BALANCE_COLUMNS)} FROM settlement_account "  # noqa: S608 (constant names)
    "WHERE id = ANY(%s) AND livemode = %s ORDER BY id FOR NO KEY UPDATE"
)

# What waits beside each account (``AccountDelta``), in the order of ``_BALANCE_COLUMNS``.
_UNFOLDED = (
    "SELECT account_id, sum(debits_posted)::bigint, sum(credits_posted)::bigint,"
    " sum(debits_pending)::bigint, sum(credits_pending)::bigint"
    " FROM settlement_accountdelta WHERE account_id = ANY(%s) GROUP BY account_id"
)


def _ids(specs: Sequence[TransferSpec], run: int = 500) -> Iterator[str]:
    """Each item's transfer id: the caller's, or one the hub makes. The hub's are made a run at
    a time as the items come (time-ordered all the same), while the rows before them are being
    inserted, rather than all of them before the batch starts."""
    missing = sum(1 for spec in specs if spec.id is None)
    made: Iterator[str] = iter(())
    for spec in specs:
        if spec.id is not None:
            yield spec.id
            continue
        transfer_id = next(made, None)
        if transfer_id is None:
            made = iter(new_ids("tr", min(run, missing)))
            transfer_id = next(made)
        missing -= 1
        yield transfer_id


def _lock(account_ids: Iterable[str], livemode: bool) -> dict[str, _Balance]:
    # NO KEY UPDATE, as the trigger's own lock and update take: it does not conflict with the
    # KEY SHARE locks that inserting transfers takes for their foreign keys (FOR UPDATE would,
    # and could deadlock with an insert holding one).
    ids = list(set(account_ids))
    if connection.vendor != "postgresql":
        rows: Iterable[tuple[Any, ...]] = (
            Account.objects.select_for_update(no_key=True)
            .filter(pk__in=ids, livemode=livemode)
            .order_by("pk")
            .values_list(*_BALANCE_COLUMNS)
        )
        return {row[0]: _Balance(*row[1:]) for row in rows}
    # The ids as one array parameter: the ORM's IN (%s, %s, ...) of a thousand accounts costs
    # more to build and parse than the query takes.
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        rows = cursor.execute(_LOCK, [ids, livemode]).fetchall()
        # Read once the accounts are ours, by a statement of its own (which sees the deltas as
        # the lock leaves them): nobody folds them meanwhile, and what is added only adds to
        # what the batch may spend.
        unfolded = cursor.execute(_UNFOLDED, [ids]).fetchall()
    balances = {row[0]: _Balance(*row[1:]) for row in rows}
    for account_id, *columns in unfolded:
        balance = balances.get(account_id)
        if balance is not None:
            balance.debits_posted += columns[0]
            balance.credits_posted += columns[1]
            balance.debits_pending += columns[2]
            balance.credits_pending += columns[3]
    return balances


def _apply(balances: dict[str, _Balance], row: TransferSpec) -> None:
    """Check ``row`` against the balances as the batch left them so far, then add it."""
    debit = balances.get(row.debit_account_id)
    credit = balances.get(row.credit_account_id)
    if debit is None:
        raise errors.InvalidRequest(
            "No such account.", code="account_missing", param="debit_account"
        )
    if credit is None:
        raise errors.InvalidRequest(
            "No such account.", code="account_missing", param="credit_account"
        )
    if debit is credit:
        raise errors.InvalidRequest(
            "The debit and credit accounts are the same.",
            code="same_account",
            param="credit_account",
        )
    for param, side in (("debit_account", debit), ("credit_account", credit)):
        if side.currency != row.currency:
            raise errors.InvalidRequest(
                f"The {param.replace('_', ' ')} holds {side.currency}, not {row.currency}.",
                code="currency_mismatch",
                param=param,
            )
    pending = row.pending
    if debit.debits_must_not_exceed_credits and (
        debit.debits_posted + debit.debits_pending + row.amount > debit.credits_posted
    ):
        raise errors.Conflict(
            "The debit account's funds do not cover this transfer.",
            code="insufficient_funds",
            param="amount",
        )
    if credit.credits_must_not_exceed_debits and (
        credit.credits_posted + credit.credits_pending + row.amount > credit.debits_posted
    ):
        raise errors.Conflict(
            "The credit account may not take more credits than its debits.",
            code="exceeds_debits",
            param="amount",
        )
    if pending:
        debit.debits_pending += row.amount
        credit.credits_pending += row.amount
    else:
        debit.debits_posted += row.amount
        credit.credits_posted += row.amount


class _MetadataDumper(JsonbBinaryDumper):
    """A transfer's metadata in a binary COPY; most transfers have none, and skip json.dumps."""

    def dump(self, obj: Any) -> bytes:
        if not obj:
            return b"\x01{}"
        return b"\x01" + json.dumps(dict(obj)).encode()


class _CopyIn:
    """Rows into ``settlement_transfer`` by one binary COPY, opened at the first row (no row,
    no statement). The server inserts and indexes the rows as they come, while the caller makes
    the next ones; the statement trigger runs when the COPY ends."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._copy: Any = None

    def __call__(self, row: tuple[Any, ...]) -> None:
        if self._copy is None:
            self._copy = self._open()
        self._copy.write_row(row)

    def _open(self) -> Any:
        stack = self._stack
        # Django's own errors, as its cursors would raise them (the raw cursor raises psycopg's).
        stack.enter_context(connection.wrap_database_errors)
        raw: Any = stack.enter_context(connection.cursor()).cursor
        raw.adapters.register_dumper(None, _MetadataDumper)
        # Binary: the server parses no text (about a sixth less time for a batch).
        copy = stack.enter_context(
            raw.copy(f"COPY settlement_transfer ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)")
        )
        copy.set_types(_COPY_TYPES)
        return copy


@contextmanager
def _inserter() -> Iterator[Callable[[tuple[Any, ...]], None]]:
    """A function that inserts one row (values in the order of ``_COLUMNS``, metadata a
    mapping), all of them as one statement: a COPY on PostgreSQL (see ``_CopyIn``; its statement
    trigger then updates each account once), a bulk insert at the end elsewhere. An exception
    in the block inserts nothing."""
    if connection.vendor != "postgresql":
        rows: list[tuple[Any, ...]] = []
        yield rows.append
        if rows:
            Transfer.objects.bulk_create(
                [
                    Transfer(**{**dict(zip(_COLUMNS, row, strict=True)), "metadata": dict(row[13])})
                    for row in rows
                ],
                batch_size=500,
            )
        return
    with ExitStack() as stack:
        yield _CopyIn(stack)


# --- reads ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Balances:
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int


def account_balances_at(*, account: Account, at: datetime) -> Balances:
    """The account's four balance columns as they stood at ``at``: the sum of its transfers made
    by then (a resolution releases its hold from the moment it was made)."""
    totals = {}
    for side in ("debit", "credit"):
        rows = Transfer.objects.filter(**{f"{side}_account": account}, created_at__lte=at)
        agg = rows.aggregate(
            posted=Sum("amount", filter=Q(type__in=[Type.SINGLE, Type.POST]), default=0),
            held=Sum("amount", filter=Q(type=Type.PENDING), default=0),
            released=Sum("pending_amount", filter=Q(type__in=Transfer.RESOLUTIONS), default=0),
        )
        totals[side] = (int(agg["posted"]), int(agg["held"]) - int(agg["released"]))
    return Balances(
        debits_posted=totals["debit"][0],
        credits_posted=totals["credit"][0],
        debits_pending=totals["debit"][1],
        credits_pending=totals["credit"][1],
    )
