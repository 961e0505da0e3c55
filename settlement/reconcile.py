"""Bank statement lines matched against ledger transfers on the bank's mirror account, by rules.

Plain pandas and numpy, no Django: the same code serves the reconciliation service, the benchmark
and anyone checking a statement offline. Every pass works on whole columns (joins on integer codes,
group-bys, sorted searches); nothing loops over rows in Python, so a million lines against a
million transfers takes seconds.

Amounts are integer minor units (``int64``) everywhere, tolerances included: a float column is
refused rather than converted, because a float near money is how cents go missing.

Passes, each on what the earlier ones left:

1. ``one_to_one``: same reference (trimmed, case-insensitive), currency and direction, amounts
   within tolerance, dates within the window; when a reference has several candidates the closest
   amount wins, then the closest date, then input order.
2. ``one_to_many``: one line against all the remaining transfers of its reference (a bank that
   books a batch as one line), their sum within tolerance, every date within the window.
3. ``many_to_one``: the mirror image (a transfer the bank split into several lines).
4. ``unreferenced``: items whose reference the other side does not know (none, or the bank's own)
   paired 1:1 by exact amount, currency and direction at the nearest date within the window, only
   where each is the other's only nearest candidate. Whatever still has a candidate afterwards is
   ``ambiguous``.

What shares a reference with the other side but did not match is ``mismatched``, grouped by
reference, with reason codes and figures; everything else is ``unmatched`` with a reason. Each
line and each transfer ends up in exactly one of matched, mismatched and unmatched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from settlement.statements.model import CREDIT, Statement

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ONE_TO_ONE: Final = "one_to_one"
ONE_TO_MANY: Final = "one_to_many"
MANY_TO_ONE: Final = "many_to_one"
UNREFERENCED: Final = "unreferenced"
RULES: Final = (ONE_TO_ONE, ONE_TO_MANY, MANY_TO_ONE, UNREFERENCED)

AMOUNT_OUTSIDE_TOLERANCE: Final = "amount_outside_tolerance"
DATE_OUTSIDE_WINDOW: Final = "date_outside_window"
CURRENCY_DIFFERS: Final = "currency_differs"
DIRECTION_DIFFERS: Final = "direction_differs"
# Everything agrees, but only as a grouping no enabled rule takes: several lines against several
# transfers, or 1:N / N:1 with that rule turned off.
GROUPING_NOT_SUPPORTED: Final = "grouping_not_supported"
MISMATCH_REASONS: Final = (
    AMOUNT_OUTSIDE_TOLERANCE,
    DATE_OUTSIDE_WINDOW,
    CURRENCY_DIFFERS,
    DIRECTION_DIFFERS,
    GROUPING_NOT_SUPPORTED,
)

NO_CANDIDATE: Final = "no_candidate"
AMBIGUOUS: Final = "ambiguous"
REFERENCE_ALREADY_MATCHED: Final = "reference_already_matched"
UNMATCHED_REASONS: Final = (NO_CANDIDATE, AMBIGUOUS, REFERENCE_ALREADY_MATCHED)

CREDIT_DIRECTION: Final = "credit"
DEBIT_DIRECTION: Final = "debit"
DIRECTIONS: Final = (CREDIT_DIRECTION, DEBIT_DIRECTION)
_DIRECTION_CODES: Final = {"credit": 0, "debit": 1, "CRDT": 0, "DBIT": 1}

LINE_COLUMNS: Final = (
    "line_id",
    "amount_minor",
    "currency",
    "direction",
    "booking_date",
    "reference",
)
LINE_OPTIONAL_COLUMNS: Final = ("value_date", "end_to_end_id", "counterparty", "description")
TRANSFER_COLUMNS: Final = (
    "transfer_id",
    "amount_minor",
    "currency",
    "direction",
    "date",
    "reference",
)

MAX_BPS: Final = 10_000
MAX_TOLERANCE_MINOR: Final = 10**18
MAX_WINDOW_DAYS: Final = 366
# A reference shared by a lines and b transfers costs a*b candidate pairs in the 1:1 pass. With
# one item on either side that is linear; past this many pairs with several on both sides, the
# reference is left to the mismatch report, which keeps memory linear whatever the input.
MAX_PAIRS_PER_REFERENCE: Final = 256
# Each unreferenced round settles at least the pairs that are unique already; chains of ties
# settle one link per round, and what is still tied after this many is reported ambiguous.
MAX_UNREFERENCED_ROUNDS: Final = 32
_INT64_MAX: Final = int(np.iinfo(np.int64).max)


@dataclass(frozen=True)
class MatchRules:
    """How close a line and a transfer must be to match.

    The amount tolerance of a group is the larger of ``amount_tolerance_minor`` and
    ``amount_tolerance_bps`` basis points of the larger side's amount (rounded down); a group
    matches when the absolute difference is at most that. Dates match when every line and every
    transfer of the group are at most ``date_window_days`` apart.
    """

    amount_tolerance_minor: int = 0
    amount_tolerance_bps: int = 0
    date_window_days: int = 2
    one_to_many: bool = True
    many_to_one: bool = True
    match_without_reference: bool = True

    def __post_init__(self) -> None:
        bounds = {
            "amount_tolerance_minor": MAX_TOLERANCE_MINOR,
            "amount_tolerance_bps": MAX_BPS,
            "date_window_days": MAX_WINDOW_DAYS,
        }
        for name, upper in bounds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{name} must be an integer, not {value!r}")
            if not 0 <= value <= upper:
                raise ValueError(f"{name} must be between 0 and {upper}, not {value}")
        for name in ("one_to_many", "many_to_one", "match_without_reference"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")

    def tolerance(self, larger: IntArray) -> IntArray:
        """The tolerance in minor units for groups whose larger side is ``larger``."""
        # floor(a * bps / 10000) without the product overflowing int64: a = q * 10000 + r.
        q, r = np.divmod(larger, MAX_BPS)
        by_bps = q * self.amount_tolerance_bps + (r * self.amount_tolerance_bps) // MAX_BPS
        return np.maximum(by_bps, np.int64(self.amount_tolerance_minor)).astype(np.int64)


@dataclass(frozen=True)
class ReconcileResult:
    """What matched, what nearly did and what did not.

    ``matched``: one row per group, ordered by its first line: ``match_group``, ``rule``,
    ``reference`` (normalised; null for ``unreferenced``), ``currency``, ``direction``,
    ``line_count``, ``transfer_count``, ``line_amount_minor``, ``transfer_amount_minor``,
    ``amount_difference_minor`` (lines minus transfers), ``tolerance_minor``,
    ``date_distance_days`` (the largest distance between a line and a transfer of the group).
    ``matched_lines`` / ``matched_transfers``: ``match_group`` and ``line_id`` / ``transfer_id``.

    ``mismatched``: one row per reference shared by leftover lines and transfers:
    ``mismatch_group``, ``reference``, ``reasons`` (comma-separated codes), one boolean column per
    reason code, the counts, the amounts per side (null when that side mixes currencies), the
    difference and tolerance (null when the currencies differ), the currency and direction per
    side (null when mixed), ``date_distance_days``. ``mismatched_lines`` /
    ``mismatched_transfers``: the input rows with their ``mismatch_group``.

    ``unmatched_lines`` / ``unmatched_transfers``: the input rows with a ``reason``.
    """

    matched: pd.DataFrame
    matched_lines: pd.DataFrame
    matched_transfers: pd.DataFrame
    mismatched: pd.DataFrame
    mismatched_lines: pd.DataFrame
    mismatched_transfers: pd.DataFrame
    unmatched_lines: pd.DataFrame
    unmatched_transfers: pd.DataFrame
    line_count: int
    transfer_count: int
    # category -> side -> currency -> direction -> total minor units
    totals: dict[str, dict[str, dict[str, dict[str, int]]]]

    def summary(self) -> dict[str, Any]:
        """Counts and totals per category, as plain ints (JSON-ready)."""
        matched_rules = self.matched["rule"].value_counts()
        reasons = {code: int(self.mismatched[code].sum()) for code in MISMATCH_REASONS}
        return {
            "lines": self.line_count,
            "transfers": self.transfer_count,
            "matched": {
                "groups": len(self.matched),
                "lines": len(self.matched_lines),
                "transfers": len(self.matched_transfers),
                "groups_by_rule": {rule: int(matched_rules.get(rule, 0)) for rule in RULES},
                "totals": self.totals["matched"],
            },
            "mismatched": {
                "groups": len(self.mismatched),
                "lines": len(self.mismatched_lines),
                "transfers": len(self.mismatched_transfers),
                "groups_by_reason": reasons,
                "totals": self.totals["mismatched"],
            },
            "unmatched": {
                "lines": len(self.unmatched_lines),
                "transfers": len(self.unmatched_transfers),
                "lines_by_reason": _reason_counts(self.unmatched_lines),
                "transfers_by_reason": _reason_counts(self.unmatched_transfers),
                "totals": self.totals["unmatched"],
            },
        }

    def to_records(self) -> dict[str, Any]:
        """Everything as JSON-ready lists of dicts: amounts as ints, dates as ISO strings."""
        matched = _records(self.matched)
        line_ids = _ids_by_group(self.matched_lines, "match_group", "line_id")
        transfer_ids = _ids_by_group(self.matched_transfers, "match_group", "transfer_id")
        for row in matched:
            row["line_ids"] = line_ids.get(row["match_group"], [])
            row["transfer_ids"] = transfer_ids.get(row["match_group"], [])
        mismatched = _records(self.mismatched.drop(columns=list(MISMATCH_REASONS)))
        line_ids = _ids_by_group(self.mismatched_lines, "mismatch_group", "line_id")
        transfer_ids = _ids_by_group(self.mismatched_transfers, "mismatch_group", "transfer_id")
        for row in mismatched:
            row["reasons"] = row["reasons"].split(",")
            row["line_ids"] = line_ids.get(row["mismatch_group"], [])
            row["transfer_ids"] = transfer_ids.get(row["mismatch_group"], [])
        return {
            "summary": self.summary(),
            "matched": matched,
            "mismatched": mismatched,
            "unmatched_lines": _records(self.unmatched_lines),
            "unmatched_transfers": _records(self.unmatched_transfers),
        }


def lines_frame(statements: Iterable[Statement], *, booked_only: bool = True) -> pd.DataFrame:
    """The statements' entries as the ``lines`` input of :func:`reconcile`.

    ``line_id`` is ``<statement id>:<entry index>``. The reference is the entry's end-to-end id,
    else its structured creditor reference, else the payment information id its batched
    transactions share (a bank netting a batch books one entry for the hub's whole payout batch).
    Pending and information entries are left out unless ``booked_only`` is false.
    """
    rows = []
    for statement in statements:
        for entry in statement.entries:
            if booked_only and entry.status != "BOOK":
                continue
            batch_ids = {tx.payment_information_id for tx in entry.transactions}
            batch_id = batch_ids.pop() if len(batch_ids) == 1 else None
            description = entry.additional_info or " ".join(entry.remittance.unstructured) or None
            rows.append(
                {
                    "line_id": f"{statement.statement_id}:{entry.index}",
                    "amount_minor": entry.amount_minor,
                    "currency": entry.currency,
                    "direction": CREDIT_DIRECTION
                    if entry.credit_debit == CREDIT
                    else DEBIT_DIRECTION,
                    "booking_date": entry.booking_date or entry.value_date,
                    "value_date": entry.value_date,
                    "reference": entry.end_to_end_id
                    or entry.remittance.creditor_reference
                    or batch_id,
                    "end_to_end_id": entry.end_to_end_id,
                    "counterparty": entry.counterparty.name if entry.counterparty else None,
                    "description": description,
                }
            )
    frame = pd.DataFrame(rows, columns=[*LINE_COLUMNS, *LINE_OPTIONAL_COLUMNS])
    frame["amount_minor"] = frame["amount_minor"].astype(np.int64)
    for column in ("booking_date", "value_date"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


# -- input -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Side:
    """One side as integer columns; positions are row numbers of the input frame."""

    frame: pd.DataFrame
    id_column: str
    amount: IntArray
    currency: IntArray  # codes shared by both sides
    direction: IntArray  # 0 credit, 1 debit
    day: IntArray  # days since 1970-01-01
    key: IntArray  # reference codes shared by both sides, -1 for none

    def __len__(self) -> int:
        return len(self.amount)


def _check_frame(frame: object, name: str, required: tuple[str, ...], id_column: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, not {type(frame).__name__}")
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing the column(s) {', '.join(missing)}")
    ids = frame[id_column]
    if ids.isna().any():
        raise ValueError(f"{name}.{id_column} has empty values")
    if not ids.is_unique:
        duplicated = ids[ids.duplicated()].iloc[0]
        raise ValueError(f"{name}.{id_column} is not unique: {duplicated!r} appears twice")


def _amounts(column: pd.Series, label: str) -> IntArray:
    dtype = column.dtype
    if pd.api.types.is_float_dtype(dtype):
        raise ValueError(
            f"{label} is {dtype}: amounts must be integer minor units (int64), never float"
        )
    if not pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        raise ValueError(f"{label} is {dtype}: amounts must be integer minor units (int64)")
    if column.isna().any():
        raise ValueError(f"{label} has empty values")
    if len(column) and int(column.max()) > _INT64_MAX:
        raise ValueError(f"{label} has amounts beyond int64")
    values = column.to_numpy(dtype=np.int64)
    if len(values) and values.min() < 0:
        raise ValueError(f"{label} has negative amounts; the direction column carries the sign")
    # Group sums and totals are int64: refuse input whose grand total could overflow.
    if (
        len(values)
        and int(values.max()) * len(values) > _INT64_MAX
        and sum(values.tolist()) > _INT64_MAX
    ):
        raise ValueError(f"{label}: the amounts add up to more than int64 can hold")
    return values


def _days(column: pd.Series, label: str) -> tuple[IntArray, BoolArray]:
    """Calendar days since 1970-01-01 (the wall-clock date of tz-aware values), and the nulls."""
    if column.dtype == object:
        kind = pd.api.types.infer_dtype(column, skipna=True)
        if kind not in {"date", "datetime", "datetime64", "empty"}:
            raise ValueError(f"{label} must hold dates or datetime64 values, not {kind}")
        try:
            column = pd.to_datetime(column)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{label}: {exc}") from None
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_localize(None)
    if not pd.api.types.is_datetime64_dtype(column.dtype):
        raise ValueError(f"{label} is {column.dtype}: dates must be datetime64 or date objects")
    values = column.to_numpy()
    nulls = np.isnat(values)
    # datetime64 casts floor, so a time of day before 1970 still lands on its own date.
    return values.astype("datetime64[D]").view(np.int64), nulls


def _text(column: pd.Series, label: str) -> pd.Series:
    if column.dtype == object or isinstance(column.dtype, pd.StringDtype):
        kind = pd.api.types.infer_dtype(column, skipna=True)
        if kind in {"string", "empty"}:
            return column
    elif column.isna().all():
        return column.astype("str")
    raise ValueError(f"{label} must hold text (or be empty), not {column.dtype}")


def _shared_codes(left: pd.Series, right: pd.Series) -> tuple[IntArray, IntArray, pd.Index]:
    codes, uniques = pd.factorize(pd.concat([left, right], ignore_index=True))
    codes = codes.astype(np.int64)
    return codes[: len(left)], codes[len(left) :], uniques


def _references(left: pd.Series, right: pd.Series) -> tuple[IntArray, IntArray, npt.NDArray[Any]]:
    """Shared codes of the trimmed, case-folded references; -1 where there is none."""
    raw_left, raw_right, raw = _shared_codes(left, right)
    # Normalise each distinct spelling once rather than every row.
    normalised = pd.Series(raw, dtype=object).str.strip().str.casefold()
    normalised = normalised.where(normalised.str.len() > 0)
    to_key, keys = pd.factorize(normalised)
    to_key = np.append(to_key.astype(np.int64), -1)  # raw code -1 (null) stays -1
    return to_key[raw_left], to_key[raw_right], np.asarray(keys, dtype=object)


def _prepare(
    lines: pd.DataFrame, transfers: pd.DataFrame
) -> tuple[_Side, _Side, npt.NDArray[Any], list[str]]:
    _check_frame(lines, "lines", LINE_COLUMNS, "line_id")
    _check_frame(transfers, "transfers", TRANSFER_COLUMNS, "transfer_id")
    line_amount = _amounts(lines["amount_minor"], "lines.amount_minor")
    transfer_amount = _amounts(transfers["amount_minor"], "transfers.amount_minor")

    line_day, line_no_day = _days(lines["booking_date"], "lines.booking_date")
    if "value_date" in lines.columns and line_no_day.any():
        value_day, no_value_day = _days(lines["value_date"], "lines.value_date")
        line_day = np.where(line_no_day, value_day, line_day)
        line_no_day &= no_value_day
    if line_no_day.any():
        raise ValueError("lines.booking_date has empty values (and no value_date to fall back on)")
    transfer_day, transfer_no_day = _days(transfers["date"], "transfers.date")
    if transfer_no_day.any():
        raise ValueError("transfers.date has empty values")

    for frame, name in ((lines, "lines"), (transfers, "transfers")):
        for column in ("currency", "direction"):
            if frame[column].isna().any():
                raise ValueError(f"{name}.{column} has empty values")
    line_currency, transfer_currency, currencies = _shared_codes(
        lines["currency"], transfers["currency"]
    )
    currency_names = [str(code) for code in currencies]
    bad = [code for code in currencies if not (isinstance(code, str) and _is_currency(code))]
    if bad:
        raise ValueError(f"currency must be a three-letter ISO 4217 code, not {bad[0]!r}")
    line_direction, transfer_direction, directions = _shared_codes(
        lines["direction"], transfers["direction"]
    )
    unknown = [value for value in directions if value not in _DIRECTION_CODES]
    if unknown:
        raise ValueError(f"direction must be credit or debit (or CRDT/DBIT), not {unknown[0]!r}")
    direction_code = np.array([_DIRECTION_CODES[value] for value in directions], dtype=np.int64)

    line_reference = _text(lines["reference"], "lines.reference")
    if "end_to_end_id" in lines.columns:
        end_to_end = _text(lines["end_to_end_id"], "lines.end_to_end_id")
        blank = line_reference.isna() | (line_reference.str.strip() == "")
        line_reference = line_reference.where(~blank, end_to_end)
    line_key, transfer_key, keys = _references(
        line_reference, _text(transfers["reference"], "transfers.reference")
    )
    line_side = _Side(
        frame=lines,
        id_column="line_id",
        amount=line_amount,
        currency=line_currency,
        direction=direction_code[line_direction],
        day=line_day,
        key=line_key,
    )
    transfer_side = _Side(
        frame=transfers,
        id_column="transfer_id",
        amount=transfer_amount,
        currency=transfer_currency,
        direction=direction_code[transfer_direction],
        day=transfer_day,
        key=transfer_key,
    )
    return line_side, transfer_side, keys, currency_names


def _is_currency(code: str) -> bool:
    return len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


# -- matching --------------------------------------------------------------------------------


class _Groups:
    """Match groups as they are found: per item its group (-1 while free), per group its rule."""

    def __init__(self, lines: _Side, transfers: _Side) -> None:
        self.line = np.full(len(lines), -1, dtype=np.int64)
        self.transfer = np.full(len(transfers), -1, dtype=np.int64)
        self.rule_codes: list[IntArray] = []
        self.count = 0

    def add(
        self,
        rule: str,
        size: int,
        line_pos: IntArray,
        line_group: IntArray,
        transfer_pos: IntArray,
        transfer_group: IntArray,
    ) -> None:
        """Record ``size`` new groups numbered 0..size-1 in the caller's arrays."""
        if not size:
            return
        self.line[line_pos] = line_group + self.count
        self.transfer[transfer_pos] = transfer_group + self.count
        self.rule_codes.append(np.full(size, RULES.index(rule), dtype=np.int64))
        self.count += size


def _join_on_keys(left: IntArray, right: IntArray, n_keys: int) -> tuple[IntArray, IntArray]:
    """Every (i, j) with ``left[i] == right[j]`` (codes >= 0), ordered by i then j; keys with
    several items on both sides and more than MAX_PAIRS_PER_REFERENCE pairs are left out."""
    left_count = np.bincount(left, minlength=n_keys)
    right_count = np.bincount(right, minlength=n_keys)
    allowed = (
        (left_count <= 1)
        | (right_count <= 1)
        | (left_count * right_count <= MAX_PAIRS_PER_REFERENCE)
    )
    repeats = np.where(allowed[left], right_count[left], 0)
    total = int(repeats.sum())
    right_order = np.argsort(right, kind="stable")
    right_start = np.cumsum(right_count) - right_count
    i = np.repeat(np.arange(len(left), dtype=np.int64), repeats)
    first_out = np.cumsum(repeats) - repeats
    offset = np.arange(total, dtype=np.int64) - np.repeat(first_out, repeats)
    j = right_order[np.repeat(right_start[left], repeats) + offset]
    return i, j.astype(np.int64)


def _greedy_pairs(
    line: IntArray, transfer: IntArray, diff: IntArray, dist: IntArray
) -> tuple[IntArray, IntArray]:
    """1:1 pairs out of candidate pairs: closest amount first, then closest date, then input
    order. Taking, round after round, every pair that is the first choice of both its line and
    its transfer gives exactly what taking the pairs one by one in that order would."""
    if not len(line):
        return line, transfer
    single = (np.bincount(line)[line] == 1) & (np.bincount(transfer)[transfer] == 1)
    chosen_lines = [line[single]]
    chosen_transfers = [transfer[single]]
    rest = pd.DataFrame(
        {"diff": diff[~single], "dist": dist[~single], "l": line[~single], "t": transfer[~single]}
    ).sort_values(["diff", "dist", "l", "t"], kind="stable")
    while len(rest):
        first = ~rest["l"].duplicated().to_numpy() & ~rest["t"].duplicated().to_numpy()
        take_l = rest["l"].to_numpy()[first]
        take_t = rest["t"].to_numpy()[first]
        chosen_lines.append(take_l)
        chosen_transfers.append(take_t)
        rest = rest[~rest["l"].isin(take_l) & ~rest["t"].isin(take_t)]
    lines_out = np.concatenate(chosen_lines)
    transfers_out = np.concatenate(chosen_transfers)
    order = np.argsort(lines_out, kind="stable")
    return lines_out[order], transfers_out[order]


def _pass_one_to_one(
    lines: _Side, transfers: _Side, groups: _Groups, rules: MatchRules, n_keys: int
) -> None:
    line_pos = np.flatnonzero((groups.line < 0) & (lines.key >= 0))
    transfer_pos = np.flatnonzero((groups.transfer < 0) & (transfers.key >= 0))
    i, j = _join_on_keys(lines.key[line_pos], transfers.key[transfer_pos], n_keys)
    li, ti = line_pos[i], transfer_pos[j]
    la, ta = lines.amount[li], transfers.amount[ti]
    diff = np.abs(la - ta)
    dist = np.abs(lines.day[li] - transfers.day[ti])
    ok = (
        (lines.currency[li] == transfers.currency[ti])
        & (lines.direction[li] == transfers.direction[ti])
        & (diff <= rules.tolerance(np.maximum(la, ta)))
        & (dist <= rules.date_window_days)
    )
    li, ti = _greedy_pairs(li[ok], ti[ok], diff[ok], dist[ok])
    local = np.arange(len(li), dtype=np.int64)
    groups.add(ONE_TO_ONE, len(li), li, local, ti, local)


def _pass_one_against_group(
    one: _Side,
    one_group: IntArray,
    many: _Side,
    many_group: IntArray,
    rules: MatchRules,
    n_keys: int,
) -> tuple[int, IntArray, IntArray, IntArray, IntArray]:
    """One item of ``one`` against all the free items of ``many`` that carry its reference.
    Returns the number of groups and (positions, local group) for each side."""
    empty = np.zeros(0, dtype=np.int64)
    many_pos = np.flatnonzero((many_group < 0) & (many.key >= 0))
    one_pos = np.flatnonzero((one_group < 0) & (one.key >= 0))
    if not len(many_pos) or not len(one_pos):
        return 0, empty, empty, empty, empty
    sets = _aggregate(many, many_pos, many.key[many_pos])
    usable = (sets.size >= 2) & sets.one_currency & sets.one_direction
    set_of_key = np.full(n_keys + 1, -1, dtype=np.int64)
    set_of_key[sets.by[usable]] = np.flatnonzero(usable)
    s = set_of_key[one.key[one_pos]]
    pos, s = one_pos[s >= 0], s[s >= 0]
    amount, total, day = one.amount[pos], sets.total[s], one.day[pos]
    diff = np.abs(amount - total)
    dist = np.maximum(np.abs(day - sets.first[s]), np.abs(day - sets.last[s]))
    ok = (
        (one.currency[pos] == sets.currency[s])
        & (one.direction[pos] == sets.direction[s])
        & (diff <= rules.tolerance(np.maximum(amount, total)))
        & (dist <= rules.date_window_days)
    )
    pos, s, diff, dist = pos[ok], s[ok], diff[ok], dist[ok]
    # Several items may claim the same set; the closest one gets it.
    order = np.lexsort((pos, dist, diff))
    _, first = np.unique(s[order], return_index=True)
    winner = np.sort(order[first])  # by position, since pos is ascending
    pos, s = pos[winner], s[winner]
    size = len(pos)
    local = np.arange(size, dtype=np.int64)
    group_of_key = np.full(n_keys + 1, -1, dtype=np.int64)
    group_of_key[sets.by[s]] = local
    member_group = group_of_key[many.key[many_pos]]
    members = member_group >= 0
    return size, pos, local, many_pos[members], member_group[members]


@dataclass(frozen=True)
class _Sets:
    """Items aggregated per value of ``by`` (a reference code or a group), ascending."""

    by: IntArray
    size: IntArray
    total: IntArray
    first: IntArray  # earliest day
    last: IntArray  # latest day
    currency: IntArray  # the lowest code; the only one when ``one_currency``
    one_currency: BoolArray
    direction: IntArray
    one_direction: BoolArray
    first_pos: IntArray


def _aggregate(side: _Side, pos: IntArray, by: IntArray) -> _Sets:
    """``pos`` must be ascending; sums stay int64 (reduceat on the sorted items, no floats)."""
    if not len(by):
        none, no = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        return _Sets(none, none, none, none, none, none, no, none, no, none)
    order = np.argsort(by, kind="stable")
    by, pos = by[order], pos[order]
    starts = np.flatnonzero(np.r_[True, by[1:] != by[:-1]])

    def reduce(ufunc: np.ufunc, values: IntArray) -> IntArray:
        return np.asarray(ufunc.reduceat(values[pos], starts), dtype=np.int64)

    currency_lo = reduce(np.minimum, side.currency)
    direction_lo = reduce(np.minimum, side.direction)
    return _Sets(
        by=by[starts],
        size=np.diff(np.r_[starts, len(by)]).astype(np.int64),
        total=reduce(np.add, side.amount),
        first=reduce(np.minimum, side.day),
        last=reduce(np.maximum, side.day),
        currency=currency_lo,
        one_currency=currency_lo == reduce(np.maximum, side.currency),
        direction=direction_lo,
        one_direction=direction_lo == reduce(np.maximum, side.direction),
        first_pos=pos[starts],
    )


def _unique_nearest(a: IntArray, b: IntArray, window: int) -> tuple[IntArray, BoolArray]:
    """For each value of ``a``: the index in ``b`` of its only nearest value within ``window``
    (-1 if none or tied), and whether it has any value within ``window``."""
    if not len(b) or not len(a):
        return np.full(len(a), -1, dtype=np.int64), np.zeros(len(a), dtype=bool)
    order = np.argsort(b, kind="stable")
    sorted_b = b[order]
    lo = np.searchsorted(sorted_b, a - window, "left")
    hi = np.searchsorted(sorted_b, a + window, "right")
    has = hi > lo
    below = np.searchsorted(sorted_b, a, "right") - 1
    above = np.searchsorted(sorted_b, a, "left")
    last = len(sorted_b) - 1
    far = np.int64(window + 1)
    to_below = np.where(below >= lo, a - sorted_b[np.clip(below, 0, last)], far)
    to_above = np.where(above < hi, sorted_b[np.clip(above, 0, last)] - a, far)
    nearest = np.where(has, np.minimum(to_below, to_above), 0)
    ties = np.searchsorted(sorted_b, a - nearest, "right") - np.searchsorted(
        sorted_b, a - nearest, "left"
    )
    ties += np.where(
        nearest > 0,
        np.searchsorted(sorted_b, a + nearest, "right")
        - np.searchsorted(sorted_b, a + nearest, "left"),
        0,
    )
    unique = has & (ties == 1)
    index = np.clip(np.where(to_below <= to_above, below, above), 0, last)
    return np.where(unique, order[index], -1).astype(np.int64), has


def _pass_unreferenced(
    lines: _Side, transfers: _Side, groups: _Groups, rules: MatchRules, n_keys: int
) -> tuple[IntArray, IntArray]:
    """Returns the positions of the lines and transfers left ambiguous."""
    line_pos = np.flatnonzero((groups.line < 0) & _orphans(lines, transfers, n_keys))
    transfer_pos = np.flatnonzero((groups.transfer < 0) & _orphans(transfers, lines, n_keys))
    empty = np.zeros(0, dtype=np.int64)
    if not len(line_pos) or not len(transfer_pos):
        return empty, empty
    n = len(line_pos)
    # One integer per (currency, direction, amount, day), with buckets spaced so far apart that
    # a search within the date window never reaches the next bucket.
    bucket = (
        pd.DataFrame(
            {
                "currency": np.concatenate(
                    [lines.currency[line_pos], transfers.currency[transfer_pos]]
                ),
                "direction": np.concatenate(
                    [lines.direction[line_pos], transfers.direction[transfer_pos]]
                ),
                "amount": np.concatenate([lines.amount[line_pos], transfers.amount[transfer_pos]]),
            }
        )
        .groupby(["currency", "direction", "amount"], sort=False)
        .ngroup()
        .to_numpy()
        .astype(np.int64)
    )
    day = np.concatenate([lines.day[line_pos], transfers.day[transfer_pos]])
    window = rules.date_window_days
    span = int(day.max()) - int(day.min()) + 2 * window + 2
    point = bucket * span + (day - day.min())
    line_point, transfer_point = point[:n], point[n:]
    line_free = np.ones(n, dtype=bool)
    transfer_free = np.ones(len(transfer_pos), dtype=bool)
    pairs_l: list[IntArray] = []
    pairs_t: list[IntArray] = []
    for _ in range(MAX_UNREFERENCED_ROUNDS):
        lf, tf = np.flatnonzero(line_free), np.flatnonzero(transfer_free)
        line_choice, _has = _unique_nearest(line_point[lf], transfer_point[tf], window)
        transfer_choice, _has = _unique_nearest(transfer_point[tf], line_point[lf], window)
        chose = np.flatnonzero(line_choice >= 0)
        mutual = chose[transfer_choice[line_choice[chose]] == chose]
        if not len(mutual):
            break
        took_l, took_t = lf[mutual], tf[line_choice[mutual]]
        pairs_l.append(took_l)
        pairs_t.append(took_t)
        line_free[took_l] = False
        transfer_free[took_t] = False
    if pairs_l:
        li = line_pos[np.concatenate(pairs_l)]
        ti = transfer_pos[np.concatenate(pairs_t)]
        order = np.argsort(li, kind="stable")
        local = np.arange(len(li), dtype=np.int64)
        groups.add(UNREFERENCED, len(li), li[order], local, ti[order], local)
    lf, tf = np.flatnonzero(line_free), np.flatnonzero(transfer_free)
    _, line_has = _unique_nearest(line_point[lf], transfer_point[tf], window)
    _, transfer_has = _unique_nearest(transfer_point[tf], line_point[lf], window)
    return line_pos[lf[line_has]], transfer_pos[tf[transfer_has]]


def _present(side: _Side, n_keys: int) -> BoolArray:
    """Per reference code, whether ``side`` carries it at all."""
    return np.bincount(side.key[side.key >= 0], minlength=n_keys) > 0


def _orphans(side: _Side, other: _Side, n_keys: int) -> BoolArray:
    """Items whose reference the other side does not know: none, or e.g. the bank's own."""
    known = np.append(_present(other, n_keys), False)  # index -1 (no reference) -> False
    return ~known[side.key]


def reconcile(
    lines: pd.DataFrame, transfers: pd.DataFrame, rules: MatchRules | None = None
) -> ReconcileResult:
    """Match statement ``lines`` against ledger ``transfers`` of the same bank account.

    ``lines`` columns: ``line_id`` (unique), ``amount_minor`` (integer minor units, >= 0),
    ``currency`` (ISO 4217), ``direction`` (``credit``/``debit``, or ``CRDT``/``DBIT``),
    ``booking_date`` (datetime64 or ``date``; where empty, ``value_date``), ``reference`` (text,
    may be empty; where empty, ``end_to_end_id`` if that column is there); optional
    ``value_date``, ``end_to_end_id``, ``counterparty``, ``description``, and any others, which
    are carried into the mismatched and unmatched rows.

    ``transfers`` columns: ``transfer_id`` (unique), ``amount_minor``, ``currency``,
    ``direction`` (as seen on the bank account), ``date``, ``reference``; others are carried.

    Raises ValueError, naming the column, for input that cannot be reconciled exactly.
    """
    rules = MatchRules() if rules is None else rules
    if not isinstance(rules, MatchRules):
        raise ValueError(f"rules must be MatchRules, not {type(rules).__name__}")
    line_side, transfer_side, keys, currencies = _prepare(lines, transfers)
    n_keys = len(keys)
    groups = _Groups(line_side, transfer_side)
    _pass_one_to_one(line_side, transfer_side, groups, rules, n_keys)
    if rules.one_to_many:
        size, lp, lg, tp, tg = _pass_one_against_group(
            line_side, groups.line, transfer_side, groups.transfer, rules, n_keys
        )
        groups.add(ONE_TO_MANY, size, lp, lg, tp, tg)
    if rules.many_to_one:
        size, tp, tg, lp, lg = _pass_one_against_group(
            transfer_side, groups.transfer, line_side, groups.line, rules, n_keys
        )
        # Groups are numbered by their first line, as everywhere else.
        first_line = pd.Series(lp).groupby(lg).min().sort_values(kind="stable")
        renumber = np.empty(size, dtype=np.int64)
        renumber[first_line.index.to_numpy()] = np.arange(size, dtype=np.int64)
        groups.add(MANY_TO_ONE, size, lp, renumber[lg], tp, renumber[tg])
    empty = np.zeros(0, dtype=np.int64)
    ambiguous_lines, ambiguous_transfers = empty, empty
    if rules.match_without_reference:
        ambiguous_lines, ambiguous_transfers = _pass_unreferenced(
            line_side, transfer_side, groups, rules, n_keys
        )
    return _result(
        line_side,
        transfer_side,
        groups,
        rules,
        keys=keys,
        currencies=currencies,
        ambiguous_lines=ambiguous_lines,
        ambiguous_transfers=ambiguous_transfers,
    )


# -- result ----------------------------------------------------------------------------------


def _lookup(flags: BoolArray, key: IntArray) -> BoolArray:
    """``flags[key]`` with key -1 (no reference) reading False."""
    return np.append(flags, False)[key]


def _rows(side: _Side, pos: IntArray, **columns: Any) -> pd.DataFrame:
    """The input rows at ``pos`` with ``columns`` in front."""
    rows = side.frame.iloc[pos].reset_index(drop=True)
    front = pd.DataFrame(columns, index=rows.index)
    return pd.concat([front, rows.drop(columns=[c for c in columns if c in rows.columns])], axis=1)


def _labels(codes: IntArray, names: Iterable[str]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=list(names))


def _totals(side: _Side, mask: BoolArray, currencies: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for currency in np.unique(side.currency[mask]):
        of_currency = mask & (side.currency == currency)
        out[currencies[currency]] = {
            name: int(side.amount[of_currency & (side.direction == code)].sum())
            for code, name in enumerate(DIRECTIONS)
        }
    return out


def _check_partition(size: int, name: str, *positions: IntArray) -> None:
    seen = np.bincount(np.concatenate(positions), minlength=size)
    if len(seen) != size or (seen != 1).any():
        raise AssertionError(f"every {name} must be in exactly one category")


def _result(
    lines: _Side,
    transfers: _Side,
    groups: _Groups,
    rules: MatchRules,
    *,
    keys: npt.NDArray[Any],
    currencies: list[str],
    ambiguous_lines: IntArray,
    ambiguous_transfers: IntArray,
) -> ReconcileResult:
    n_keys = len(keys)
    reference_names = np.empty(n_keys + 1, dtype=object)
    reference_names[:n_keys] = keys  # and code -1 reads the None at the end
    line_left, transfer_left = groups.line < 0, groups.transfer < 0

    # Matched: aggregates per group, renumbered by each group's first line.
    lm, tm = np.flatnonzero(~line_left), np.flatnonzero(~transfer_left)
    line_sets = _aggregate(lines, lm, groups.line[lm])
    transfer_sets = _aggregate(transfers, tm, groups.transfer[tm])
    count = groups.count
    if not (
        np.array_equal(line_sets.by, np.arange(count))
        and np.array_equal(transfer_sets.by, np.arange(count))
    ):
        raise AssertionError("every match group must have lines and transfers")
    renumber = np.empty(count, dtype=np.int64)
    renumber[np.argsort(line_sets.first_pos, kind="stable")] = np.arange(count, dtype=np.int64)
    order = np.argsort(renumber, kind="stable")
    rule = np.concatenate(groups.rule_codes) if groups.rule_codes else np.zeros(0, np.int64)
    line_total, transfer_total = line_sets.total, transfer_sets.total
    tolerance = rules.tolerance(np.maximum(line_total, transfer_total))
    distance = np.maximum(
        np.abs(line_sets.last - transfer_sets.first), np.abs(transfer_sets.last - line_sets.first)
    )
    if (
        (np.abs(line_total - transfer_total) > tolerance).any()
        or (distance > rules.date_window_days).any()
        or not (line_sets.one_currency & transfer_sets.one_currency).all()
        or (line_sets.currency != transfer_sets.currency).any()
        or (line_sets.direction != transfer_sets.direction).any()
    ):
        raise AssertionError("a match group breaks the rules it was matched by")
    first_key = lines.key[line_sets.first_pos]
    reference = np.where(rule == RULES.index(UNREFERENCED), -1, first_key)
    matched = pd.DataFrame(
        {
            "match_group": np.arange(count, dtype=np.int64),
            "rule": _labels(rule[order], RULES),
            "reference": pd.array(reference_names[reference[order]], dtype="str"),
            "currency": _labels(line_sets.currency[order], currencies),
            "direction": _labels(line_sets.direction[order], DIRECTIONS),
            "line_count": line_sets.size[order],
            "transfer_count": transfer_sets.size[order],
            "line_amount_minor": line_total[order],
            "transfer_amount_minor": transfer_total[order],
            "amount_difference_minor": (line_total - transfer_total)[order],
            "tolerance_minor": tolerance[order],
            "date_distance_days": distance[order],
        }
    )
    matched_lines = _links(lines, lm, renumber[groups.line[lm]], "match_group")
    matched_transfers = _links(transfers, tm, renumber[groups.transfer[tm]], "match_group")

    # Mismatched: leftovers grouped by a reference that has leftovers on both sides.
    line_left_keys = np.bincount(lines.key[line_left & (lines.key >= 0)], minlength=n_keys) > 0
    transfer_left_keys = (
        np.bincount(transfers.key[transfer_left & (transfers.key >= 0)], minlength=n_keys) > 0
    )
    line_mis = line_left & _lookup(transfer_left_keys, lines.key)
    transfer_mis = transfer_left & _lookup(line_left_keys, transfers.key)
    ml, mt = np.flatnonzero(line_mis), np.flatnonzero(transfer_mis)
    mismatched, line_set, transfer_set = _mismatched(
        lines, transfers, ml, mt, rules, reference_names, currencies, n_keys
    )
    mismatched_lines = _rows(lines, ml, mismatch_group=line_set)
    mismatched_transfers = _rows(transfers, mt, mismatch_group=transfer_set)

    # Unmatched, with the reason.
    unmatched_line = line_left & ~line_mis
    unmatched_transfer = transfer_left & ~transfer_mis
    unmatched_lines = _unmatched(lines, transfers, unmatched_line, ambiguous_lines, n_keys)
    unmatched_transfers = _unmatched(
        transfers, lines, unmatched_transfer, ambiguous_transfers, n_keys
    )

    _check_partition(len(lines), "line", lm, ml, np.flatnonzero(unmatched_line))
    _check_partition(len(transfers), "transfer", tm, mt, np.flatnonzero(unmatched_transfer))
    categories = {
        "matched": (~line_left, ~transfer_left),
        "mismatched": (line_mis, transfer_mis),
        "unmatched": (unmatched_line, unmatched_transfer),
    }
    totals = {
        name: {
            "lines": _totals(lines, line_mask, currencies),
            "transfers": _totals(transfers, transfer_mask, currencies),
        }
        for name, (line_mask, transfer_mask) in categories.items()
    }
    return ReconcileResult(
        matched=matched,
        matched_lines=matched_lines,
        matched_transfers=matched_transfers,
        mismatched=mismatched,
        mismatched_lines=mismatched_lines,
        mismatched_transfers=mismatched_transfers,
        unmatched_lines=unmatched_lines,
        unmatched_transfers=unmatched_transfers,
        line_count=len(lines),
        transfer_count=len(transfers),
        totals=totals,
    )


def _links(side: _Side, pos: IntArray, group: IntArray, name: str) -> pd.DataFrame:
    order = np.argsort(group, kind="stable")  # then by position: ``pos`` is ascending
    ids = side.frame[side.id_column].iloc[pos[order]].reset_index(drop=True)
    return pd.DataFrame({name: group[order], side.id_column: ids})


def _mismatched(
    lines: _Side,
    transfers: _Side,
    ml: IntArray,
    mt: IntArray,
    rules: MatchRules,
    reference_names: npt.NDArray[Any],
    currencies: list[str],
    n_keys: int,
) -> tuple[pd.DataFrame, IntArray, IntArray]:
    """One row per shared reference, and the group of each line and transfer in it."""
    line_sets = _aggregate(lines, ml, lines.key[ml])
    transfer_sets = _aggregate(transfers, mt, transfers.key[mt])
    if not np.array_equal(line_sets.by, transfer_sets.by):
        raise AssertionError("a mismatch group must have lines and transfers")
    count = len(line_sets.by)
    renumber = np.empty(count, dtype=np.int64)
    renumber[np.argsort(line_sets.first_pos, kind="stable")] = np.arange(count, dtype=np.int64)
    order = np.argsort(renumber, kind="stable")
    group_of_key = np.full(n_keys + 1, -1, dtype=np.int64)
    group_of_key[line_sets.by] = renumber

    same_currency = (
        line_sets.one_currency
        & transfer_sets.one_currency
        & (line_sets.currency == transfer_sets.currency)
    )
    same_direction = (
        line_sets.one_direction
        & transfer_sets.one_direction
        & (line_sets.direction == transfer_sets.direction)
    )
    line_total, transfer_total = line_sets.total, transfer_sets.total
    difference = line_total - transfer_total
    tolerance = rules.tolerance(np.maximum(line_total, transfer_total))
    distance = np.maximum(
        np.abs(line_sets.last - transfer_sets.first), np.abs(transfer_sets.last - line_sets.first)
    )
    flags = {
        # Sums across currencies mean nothing, so amounts are judged only in one currency.
        AMOUNT_OUTSIDE_TOLERANCE: same_currency & (np.abs(difference) > tolerance),
        DATE_OUTSIDE_WINDOW: distance > rules.date_window_days,
        CURRENCY_DIFFERS: ~same_currency,
        DIRECTION_DIFFERS: ~same_direction,
    }
    flags[GROUPING_NOT_SUPPORTED] = ~np.logical_or.reduce(list(flags.values()))
    reasons = pd.Series("", index=range(count), dtype="str")
    for code in MISMATCH_REASONS:
        reasons = reasons + np.where(flags[code], code + ",", "")
    reasons = reasons.str.rstrip(",")

    def amounts(values: IntArray, known: BoolArray) -> pd.Series:
        return pd.Series(values[order], dtype="Int64").mask(~known[order])

    def labels(codes: IntArray, known: BoolArray, names: Iterable[str]) -> pd.Categorical:
        return _labels(np.where(known, codes, -1)[order], names)

    frame = pd.DataFrame(
        {
            "mismatch_group": np.arange(count, dtype=np.int64),
            "reference": pd.array(reference_names[line_sets.by[order]], dtype="str"),
            "reasons": reasons.to_numpy()[order],
            **{code: flags[code][order] for code in MISMATCH_REASONS},
            "line_count": line_sets.size[order],
            "transfer_count": transfer_sets.size[order],
            "line_amount_minor": amounts(line_total, line_sets.one_currency),
            "transfer_amount_minor": amounts(transfer_total, transfer_sets.one_currency),
            "amount_difference_minor": amounts(difference, same_currency),
            "tolerance_minor": amounts(tolerance, same_currency),
            "line_currency": labels(line_sets.currency, line_sets.one_currency, currencies),
            "transfer_currency": labels(
                transfer_sets.currency, transfer_sets.one_currency, currencies
            ),
            "line_direction": labels(line_sets.direction, line_sets.one_direction, DIRECTIONS),
            "transfer_direction": labels(
                transfer_sets.direction, transfer_sets.one_direction, DIRECTIONS
            ),
            "date_distance_days": distance[order],
        }
    )
    return frame, group_of_key[lines.key[ml]], group_of_key[transfers.key[mt]]


def _unmatched(
    side: _Side, other: _Side, mask: BoolArray, ambiguous: IntArray, n_keys: int
) -> pd.DataFrame:
    reason = np.full(len(side), UNMATCHED_REASONS.index(NO_CANDIDATE), dtype=np.int64)
    taken = _lookup(_present(other, n_keys), side.key)
    reason[taken] = UNMATCHED_REASONS.index(REFERENCE_ALREADY_MATCHED)
    reason[ambiguous] = UNMATCHED_REASONS.index(AMBIGUOUS)
    pos = np.flatnonzero(mask)
    return _rows(side, pos, reason=_labels(reason[pos], UNMATCHED_REASONS))


def _reason_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = frame["reason"].value_counts()
    return {reason: int(counts.get(reason, 0)) for reason in UNMATCHED_REASONS}


def _plain(value: Any) -> Any:
    """A JSON-ready scalar: numpy ints as int, dates as ISO strings, nulls as None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = list(frame.columns)
    return [
        {column: _plain(value) for column, value in zip(columns, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def _ids_by_group(links: pd.DataFrame, group: str, id_column: str) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for key, value in zip(links[group].tolist(), links[id_column].tolist(), strict=True):
        out.setdefault(key, []).append(_plain(value))
    return out
