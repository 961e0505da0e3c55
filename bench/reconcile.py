"""``hub bench reconcile``: statement lines against ledger transfers with
:func:`settlement.reconcile.reconcile`, on a synthetic data set whose answer is known.

The data set is built with a seeded numpy generator (the same ``--seed`` and ``--lines`` give
the same frames): ``--lines`` statement lines and as many transfers on one bank account in CNY
and KRW, credits and debits, mostly 1:1 by reference with the bank booking up to two days later,
with the bank's usual noise: references in other case or padded with spaces, fees deducted within
tolerance, batches booked as one line (1:N), payments split over several lines (N:1), lines
whose reference the ledger does not know and transfers without one, amounts or dates or
currencies or directions that disagree, several lines against several transfers, duplicate
lines, fees and interest the ledger never booked, payouts the bank never booked, and identical
unreferenced items that cannot be told apart.

Every item carries its expected outcome; the run fails (exit status 2) unless the reconciliation
finds exactly the expected groups and counts. Timed: building the frames, the reconcile call,
and as the baseline in the same run a plain ``pd.merge`` of the two frames on the normalised
reference (what any matching by reference pays at least). No database is needed.
"""

from __future__ import annotations

import os
import platform
import time
from argparse import ArgumentParser
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from bench import BenchError
from settlement.reconcile import (
    AMBIGUOUS,
    AMOUNT_OUTSIDE_TOLERANCE,
    CURRENCY_DIFFERS,
    DATE_OUTSIDE_WINDOW,
    DIRECTION_DIFFERS,
    GROUPING_NOT_SUPPORTED,
    MANY_TO_ONE,
    MISMATCH_REASONS,
    NO_CANDIDATE,
    ONE_TO_MANY,
    ONE_TO_ONE,
    REFERENCE_ALREADY_MATCHED,
    RULES,
    UNREFERENCED,
    MatchRules,
    ReconcileResult,
    reconcile,
)

HELP = "reconcile N statement lines against N ledger transfers (pandas, no database)"

DEFAULT_LINES = 1_000_000
SMOKE_LINES = 20_000
MIN_LINES = 2_000
DEFAULT_SEED = 20240611
TARGET_SECONDS = 15
RULES_USED = MatchRules(amount_tolerance_minor=100, amount_tolerance_bps=1, date_window_days=2)
CURRENCIES = ("CNY", "KRW")
START = np.datetime64("2024-01-01", "D")
PERIOD_DAYS = 120
# Amounts of items that can only match without a reference come from their own range, each
# used once (or by exactly the items meant to pair), so that no two pair by accident.
ORPHAN_BASE = 900_000_000

IntArray = npt.NDArray[np.int64]
Log = Callable[[str], None]


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--lines", type=int, default=None, help=f"statement lines and transfers ({DEFAULT_LINES})"
    )
    parser.add_argument(
        "--smoke", action="store_true", help=f"a tiny run for CI ({SMOKE_LINES} lines)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"({DEFAULT_SEED})")


# -- the data set -----------------------------------------------------------------------------


@dataclass
class _Items:
    """One side's rows as integer columns while the data set is being built."""

    amount: list[IntArray] = field(default_factory=list)
    currency: list[IntArray] = field(default_factory=list)
    direction: list[IntArray] = field(default_factory=list)
    day: list[IntArray] = field(default_factory=list)
    reference: list[IntArray] = field(default_factory=list)  # -1 none, -2 the bank's own
    truth: list[IntArray] = field(default_factory=list)  # expected match group, -1 none

    def add(self, **columns: IntArray | int) -> None:
        size = max(np.size(value) for value in columns.values())
        for name, value in columns.items():
            getattr(self, name).append(np.broadcast_to(np.asarray(value, np.int64), size).copy())

    def column(self, name: str) -> IntArray:
        return np.concatenate(getattr(self, name))


@dataclass
class Dataset:
    lines: pd.DataFrame
    transfers: pd.DataFrame
    line_truth: IntArray  # per row of ``lines``: expected match group or -1
    transfer_truth: IntArray
    truth_rules: IntArray  # per expected match group: index in RULES
    expected: dict[str, Any]


class _Builder:
    def __init__(self, rng: np.random.Generator, rules: MatchRules) -> None:
        self.rng = rng
        self.rules = rules
        self.lines = _Items()
        self.transfers = _Items()
        self.next_reference = 0
        self.next_orphan = 0
        self.truth_rules: list[IntArray] = []
        self.groups = 0

    def references(self, size: int) -> IntArray:
        out = np.arange(self.next_reference, self.next_reference + size, dtype=np.int64)
        self.next_reference += size
        return out

    def orphan_amounts(self, size: int) -> IntArray:
        out = ORPHAN_BASE + 7 * np.arange(self.next_orphan, self.next_orphan + size)
        self.next_orphan += size
        return out.astype(np.int64)

    def truth(self, rule: str, size: int) -> IntArray:
        out = np.arange(self.groups, self.groups + size, dtype=np.int64)
        self.groups += size
        self.truth_rules.append(np.full(size, RULES.index(rule), dtype=np.int64))
        return out

    def amounts(self, size: int, low: int = 10_000, high: int = 5_000_000) -> IntArray:
        return self.rng.integers(low, high, size, dtype=np.int64)

    def currencies(self, size: int) -> IntArray:
        return (self.rng.random(size) < 0.3).astype(np.int64)  # 30% KRW

    def directions(self, size: int) -> IntArray:
        return (self.rng.random(size) < 0.4).astype(np.int64)  # 40% debits

    def days(self, size: int) -> IntArray:
        return self.rng.integers(0, PERIOD_DAYS, size, dtype=np.int64)

    def tolerance(self, amount: IntArray) -> IntArray:
        by_bps = amount * self.rules.amount_tolerance_bps // 10_000
        return np.maximum(by_bps, self.rules.amount_tolerance_minor)

    def one_to_one(self, size: int, *, within_tolerance: float = 0.02) -> None:
        reference, amount = self.references(size), self.amounts(size)
        currency, direction, day = self.currencies(size), self.directions(size), self.days(size)
        shift = self.rng.choice(3, size, p=[0.6, 0.3, 0.1])
        # A fee the bank deducted, anywhere from one minor unit up to exactly the tolerance.
        fee = np.where(
            self.rng.random(size) < within_tolerance,
            self.rng.integers(1, self.tolerance(amount) + 1),
            0,
        )
        truth = self.truth(ONE_TO_ONE, size)
        self.transfers.add(
            amount=amount, currency=currency, direction=direction, day=day,
            reference=reference, truth=truth,
        )  # fmt: skip
        self.lines.add(
            amount=amount - fee, currency=currency, direction=direction, day=day + shift,
            reference=reference, truth=truth,
        )  # fmt: skip

    def duplicates(self, size: int) -> None:
        """Pairs whose line the bank repeated a day later: the copy finds its transfer taken."""
        reference, amount = self.references(size), self.amounts(size)
        currency, direction, day = self.currencies(size), self.directions(size), self.days(size)
        truth = self.truth(ONE_TO_ONE, size)
        self.transfers.add(
            amount=amount, currency=currency, direction=direction, day=day,
            reference=reference, truth=truth,
        )  # fmt: skip
        self.lines.add(
            amount=amount, currency=currency, direction=direction, day=day,
            reference=reference, truth=truth,
        )  # fmt: skip
        self.lines.add(
            amount=amount, currency=currency, direction=direction,
            day=day + self.rng.integers(1, 3, size), reference=reference, truth=-1,
        )  # fmt: skip

    def grouped(self, count: int, low: int, high: int, *, one_line: bool) -> int:
        """``count`` groups of ``low..high`` items on one side against one item on the other:
        a batch booked as one line (``one_line``) or a payment split over lines. Returns the
        number of items on the many side."""
        sizes = self.rng.integers(low, high + 1, count)
        members = int(sizes.sum())
        reference = self.references(count)
        currency, direction, day = self.currencies(count), self.directions(count), self.days(count)
        # Pieces far above the tolerance of any total, so no single piece matches the whole.
        piece = self.amounts(members, 100_000, 5_000_000)
        owner = np.repeat(np.arange(count), sizes)
        total = np.zeros(count, dtype=np.int64)
        np.add.at(total, owner, piece)
        truth = self.truth(ONE_TO_MANY if one_line else MANY_TO_ONE, count)
        spread = self.rng.integers(0, self.rules.date_window_days + 1, members)
        many = {
            "amount": piece,
            "currency": currency[owner],
            "direction": direction[owner],
            "reference": reference[owner],
            "truth": truth[owner],
        }
        one = {"amount": total, "currency": currency, "direction": direction}
        one.update(reference=reference, truth=truth)
        if one_line:
            self.lines.add(day=day + self.rules.date_window_days, **one)
            self.transfers.add(day=day[owner] + spread, **many)
        else:
            self.transfers.add(day=day, **one)
            self.lines.add(day=day[owner] + spread, **many)
        return members

    def unreferenced(self, size: int) -> None:
        """Half with no reference on either side; half where the bank wrote its own reference
        and the ledger's reference never reached the statement."""
        amount = self.orphan_amounts(size)
        currency, direction, day = self.currencies(size), self.directions(size), self.days(size)
        bank_own = self.rng.random(size) < 0.5
        truth = self.truth(UNREFERENCED, size)
        self.transfers.add(
            amount=amount, currency=currency, direction=direction, day=day,
            reference=np.where(bank_own, self.references(size), -1), truth=truth,
        )  # fmt: skip
        self.lines.add(
            amount=amount, currency=currency, direction=direction,
            day=day + self.rng.integers(0, 3, size), reference=np.where(bank_own, -2, -1),
            truth=truth,
        )  # fmt: skip

    def mismatched(self, size: int, reason: str) -> None:
        reference, amount = self.references(size), self.amounts(size)
        currency, direction, day = self.currencies(size), self.directions(size), self.days(size)
        line_amount, line_currency, line_direction, line_day = amount, currency, direction, day
        if reason == AMOUNT_OUTSIDE_TOLERANCE:
            line_amount = amount + 2 * self.tolerance(amount) + 1 + self.rng.integers(0, 999, size)
        elif reason == DATE_OUTSIDE_WINDOW:
            line_day = day + self.rules.date_window_days + 1 + self.rng.integers(0, 10, size)
        elif reason == CURRENCY_DIFFERS:
            line_currency = 1 - currency
        elif reason == DIRECTION_DIFFERS:
            line_direction = 1 - direction
        self.transfers.add(
            amount=amount, currency=currency, direction=direction, day=day,
            reference=reference, truth=-1,
        )  # fmt: skip
        self.lines.add(
            amount=line_amount, currency=line_currency, direction=line_direction, day=line_day,
            reference=reference, truth=-1,
        )  # fmt: skip

    def many_to_many(self, size: int) -> None:
        """Two transfers against two lines that agree only in total."""
        reference = np.repeat(self.references(size), 2)
        currency = np.repeat(self.currencies(size), 2)
        direction = np.repeat(self.directions(size), 2)
        day = np.repeat(self.days(size), 2)
        unit = np.repeat(self.amounts(size, 100_000, 1_000_000), 2)
        common: dict[str, IntArray | int] = {"currency": currency, "direction": direction}
        common.update(day=day, reference=reference, truth=-1)
        self.transfers.add(amount=unit * np.tile([3, 5], size), **common)
        self.lines.add(amount=unit * np.tile([2, 6], size), **common)

    def ambiguous(self, clusters: int) -> None:
        """Two unreferenced lines and two unreferenced transfers, all alike."""
        amount = np.repeat(self.orphan_amounts(clusters), 2)
        common = {
            "amount": amount,
            "currency": np.repeat(self.currencies(clusters), 2),
            "direction": np.repeat(self.directions(clusters), 2),
            "day": np.repeat(self.days(clusters), 2),
        }
        self.transfers.add(reference=-1, truth=-1, **common)
        self.lines.add(reference=-1, truth=-1, **common)

    def only_lines(self, size: int) -> None:
        """Fees and interest the ledger never booked."""
        self.lines.add(
            amount=self.orphan_amounts(size), currency=self.currencies(size),
            direction=self.directions(size), day=self.days(size), reference=-1, truth=-1,
        )  # fmt: skip

    def only_transfers(self, size: int) -> None:
        """Payouts the bank has not booked (yet)."""
        self.transfers.add(
            amount=self.orphan_amounts(size), currency=self.currencies(size),
            direction=self.directions(size), day=self.days(size),
            reference=self.references(size), truth=-1,
        )  # fmt: skip


def _reference_text(reference: IntArray, prefix: str) -> pd.Series:
    text = prefix + pd.Series(np.maximum(reference, 0)).astype("str").str.zfill(10)
    return text.where(reference >= 0)


def _frame(
    items: _Items, rng: np.random.Generator, *, id_prefix: str, lines: bool
) -> tuple[pd.DataFrame, IntArray]:
    size = sum(len(part) for part in items.amount)
    order = rng.permutation(size)
    reference = items.column("reference")[order]
    text = _reference_text(reference, "E2E")
    if lines:
        # Banks change case and pad fields; matching must see through both.
        lower = rng.random(size) < 0.1
        padded = rng.random(size) < 0.05
        text = text.where(~lower, text.str.lower())
        text = text.where(~padded, " " + text + "  ")
        bank_own = reference == -2
        text = text.where(~bank_own, _reference_text(np.arange(size), "BNK"))
    day = START + items.column("day")[order]
    frame = pd.DataFrame(
        {
            f"{'line' if lines else 'transfer'}_id": id_prefix
            + pd.Series(order).astype("str").str.zfill(8),
            "amount_minor": items.column("amount")[order],
            "currency": pd.Series(np.array(CURRENCIES)[items.column("currency")[order]]),
            "direction": pd.Series(np.array(["credit", "debit"])[items.column("direction")[order]]),
            "booking_date" if lines else "date": day,
            "reference": text,
        }
    )
    if lines:
        frame["value_date"] = day
    return frame, items.column("truth")[order]


def build_dataset(lines: int, seed: int, rules: MatchRules = RULES_USED) -> Dataset:
    """``lines`` statement lines and as many transfers, with the expected outcome."""
    if lines < MIN_LINES:
        raise BenchError(f"--lines must be at least {MIN_LINES}")
    rng = np.random.default_rng(seed)
    build = _Builder(rng, rules)
    n = lines
    batches, splits, unreferenced = n * 4 // 1000, n * 5 // 1000, n * 2 // 100
    mismatches = {
        AMOUNT_OUTSIDE_TOLERANCE: n // 100,
        DATE_OUTSIDE_WINDOW: n * 5 // 1000,
        CURRENCY_DIFFERS: n // 1000,
        DIRECTION_DIFFERS: n // 1000,
    }
    many_to_many, only_lines, duplicates, clusters = n // 2000, n * 2 // 100, n // 1000, n // 2000

    batch_transfers = build.grouped(batches, 2, 8, one_line=True)
    split_lines = build.grouped(splits, 2, 4, one_line=False)
    build.unreferenced(unreferenced)
    for reason, size in mismatches.items():
        build.mismatched(size, reason)
    build.many_to_many(many_to_many)
    build.duplicates(duplicates)
    build.ambiguous(clusters)
    build.only_lines(only_lines)
    other_lines = (
        batches + split_lines + unreferenced + sum(mismatches.values()) + 2 * many_to_many
        + 2 * duplicates + 2 * clusters + only_lines
    )  # fmt: skip
    other_transfers = (
        batch_transfers + splits + unreferenced + sum(mismatches.values()) + 2 * many_to_many
        + duplicates + 2 * clusters
    )  # fmt: skip
    pairs = n - other_lines
    only_transfers = n - pairs - other_transfers
    if pairs <= 0 or only_transfers < 0:
        raise BenchError(f"cannot lay out {n} lines; try more")
    build.one_to_one(pairs)
    build.only_transfers(only_transfers)

    line_frame, line_truth = _frame(build.lines, rng, id_prefix="stl_", lines=True)
    transfer_frame, transfer_truth = _frame(build.transfers, rng, id_prefix="tr_", lines=False)
    mismatched_groups = sum(mismatches.values()) + many_to_many
    expected = {
        "matched_groups": build.groups,
        "matched_groups_by_rule": {
            ONE_TO_ONE: pairs + duplicates,
            ONE_TO_MANY: batches,
            MANY_TO_ONE: splits,
            UNREFERENCED: unreferenced,
        },
        "matched_lines": pairs + duplicates + batches + split_lines + unreferenced,
        "matched_transfers": pairs + duplicates + batch_transfers + splits + unreferenced,
        "mismatched_groups": mismatched_groups,
        "mismatched_groups_by_reason": {
            **mismatches,
            GROUPING_NOT_SUPPORTED: many_to_many,
        },
        "mismatched_lines": mismatched_groups + many_to_many,
        "mismatched_transfers": mismatched_groups + many_to_many,
        "unmatched_lines": only_lines + duplicates + 2 * clusters,
        "unmatched_lines_by_reason": {
            NO_CANDIDATE: only_lines,
            AMBIGUOUS: 2 * clusters,
            REFERENCE_ALREADY_MATCHED: duplicates,
        },
        "unmatched_transfers": only_transfers + 2 * clusters,
        "unmatched_transfers_by_reason": {
            NO_CANDIDATE: only_transfers,
            AMBIGUOUS: 2 * clusters,
            REFERENCE_ALREADY_MATCHED: 0,
        },
    }
    return Dataset(
        lines=line_frame,
        transfers=transfer_frame,
        line_truth=line_truth,
        transfer_truth=transfer_truth,
        truth_rules=np.concatenate(build.truth_rules),
        expected=expected,
    )


# -- checking ---------------------------------------------------------------------------------


def counts(result: ReconcileResult) -> dict[str, Any]:
    """The figures compared with the expected ones."""
    summary = result.summary()
    matched, mismatched, unmatched = (
        summary["matched"],
        summary["mismatched"],
        summary["unmatched"],
    )
    return {
        "matched_groups": matched["groups"],
        "matched_groups_by_rule": matched["groups_by_rule"],
        "matched_lines": matched["lines"],
        "matched_transfers": matched["transfers"],
        "mismatched_groups": mismatched["groups"],
        "mismatched_groups_by_reason": {
            reason: mismatched["groups_by_reason"][reason] for reason in MISMATCH_REASONS
        },
        "mismatched_lines": mismatched["lines"],
        "mismatched_transfers": mismatched["transfers"],
        "unmatched_lines": unmatched["lines"],
        "unmatched_lines_by_reason": unmatched["lines_by_reason"],
        "unmatched_transfers": unmatched["transfers"],
        "unmatched_transfers_by_reason": unmatched["transfers_by_reason"],
    }


def check(dataset: Dataset, result: ReconcileResult) -> dict[str, Any]:
    """The result's counts, after checking them and every match group against the truth."""
    found = counts(result)
    wrong = {
        name: {"expected": value, "found": found[name]}
        for name, value in dataset.expected.items()
        if found[name] != value
    }
    if wrong:
        raise BenchError(f"the reconciliation disagrees with the known answer: {wrong}")
    # Same partition: each match group holds exactly one expected group's items, and the rule
    # that matched it is the expected one.
    pairs = []
    for links, frame, truth, id_column in (
        (result.matched_lines, dataset.lines, dataset.line_truth, "line_id"),
        (result.matched_transfers, dataset.transfers, dataset.transfer_truth, "transfer_id"),
    ):
        rows = pd.Index(frame[id_column]).get_indexer(links[id_column])
        pairs.append(pd.DataFrame({"group": links["match_group"].to_numpy(), "truth": truth[rows]}))
    both = pd.concat(pairs, ignore_index=True)
    if (both["truth"] < 0).any():
        raise BenchError(f"{int((both['truth'] < 0).sum())} items matched that should not")
    distinct = both.drop_duplicates()
    if distinct["group"].duplicated().any() or distinct["truth"].duplicated().any():
        raise BenchError("match groups differ from the expected groups")
    rules = result.matched.set_index("match_group")["rule"].astype("str")
    expected_rules = pd.Series(np.array(RULES)[dataset.truth_rules[distinct["truth"]]])
    if not np.array_equal(rules.loc[distinct["group"]].to_numpy(), expected_rules.to_numpy()):
        raise BenchError("a group was matched by another rule than expected")
    return found


def baseline_merge(lines: pd.DataFrame, transfers: pd.DataFrame) -> int:
    """Normalise both references and join on them: the floor of any reference matching."""
    left = pd.DataFrame(
        {"line_id": lines["line_id"], "key": lines["reference"].str.strip().str.casefold()}
    ).dropna()
    right = pd.DataFrame(
        {
            "transfer_id": transfers["transfer_id"],
            "key": transfers["reference"].str.strip().str.casefold(),
        }
    ).dropna()
    return len(pd.merge(left, right, on="key"))


# -- run --------------------------------------------------------------------------------------


def run(options: dict[str, Any], log: Log) -> dict[str, Any]:
    smoke = bool(options.get("smoke"))
    size = int(options.get("lines") or (SMOKE_LINES if smoke else DEFAULT_LINES))
    seed = options.get("seed")
    seed = DEFAULT_SEED if seed is None else int(seed)
    started = datetime.now(UTC)
    load_before = os.getloadavg()

    log(f"building {size} lines and transfers (seed {seed})")
    clock = time.perf_counter()
    dataset = build_dataset(size, seed)
    build_seconds = time.perf_counter() - clock
    log(f"built in {build_seconds:.2f} s")

    clock, cpu = time.perf_counter(), time.process_time()
    result = reconcile(dataset.lines, dataset.transfers, RULES_USED)
    seconds, cpu_seconds = time.perf_counter() - clock, time.process_time() - cpu
    log(f"reconciled in {seconds:.2f} s")

    clock = time.perf_counter()
    joined = baseline_merge(dataset.lines, dataset.transfers)
    baseline_seconds = time.perf_counter() - clock
    log(f"baseline merge: {joined} rows in {baseline_seconds:.2f} s")

    found = check(dataset, result)
    log("result agrees with the known answer")
    return {
        "bench": "reconcile",
        "lines": len(dataset.lines),
        "transfers": len(dataset.transfers),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "build_seconds": round(build_seconds, 3),
        "lines_per_s": round(len(dataset.lines) / seconds) if seconds else None,
        "baseline_merge_seconds": round(baseline_seconds, 3),
        "vs_baseline": round(seconds / baseline_seconds, 2) if baseline_seconds else None,
        **found,
        "truth_checked": True,
        "rules": {
            "amount_tolerance_minor": RULES_USED.amount_tolerance_minor,
            "amount_tolerance_bps": RULES_USED.amount_tolerance_bps,
            "date_window_days": RULES_USED.date_window_days,
        },
        "target_seconds": TARGET_SECONDS,
        "target_met": seconds <= TARGET_SECONDS,
        "seed": seed,
        "smoke": smoke,
        "nproc": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "started_at": started.isoformat(timespec="seconds"),
    }
