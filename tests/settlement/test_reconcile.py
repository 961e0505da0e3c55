"""Reconciliation of statement lines against ledger transfers: each rule's exact outcome, the
edges of the tolerances and the date window, every mismatch and unmatched reason, refused input,
and properties over generated data sets with a known answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    UNREFERENCED,
    MatchRules,
    ReconcileResult,
    _check_partition,
    lines_frame,
    reconcile,
)
from settlement.statements import Entry, Remittance, Statement, TransactionDetail
from settlement.statements.model import Account

DAY0 = date(2024, 3, 1)

LineRow = tuple[Any, ...]


def day(offset: int) -> date:
    return DAY0 + timedelta(days=offset)


def lines_of(*rows: LineRow) -> pd.DataFrame:
    """Rows of (line_id, amount_minor, reference[, currency[, direction[, day offset]]])."""
    return _frame(rows, "line_id", "booking_date")


def transfers_of(*rows: LineRow) -> pd.DataFrame:
    """Rows of (transfer_id, amount_minor, reference[, currency[, direction[, day offset]]])."""
    return _frame(rows, "transfer_id", "date")


def _frame(rows: tuple[LineRow, ...], id_column: str, date_column: str) -> pd.DataFrame:
    defaults = ("CNY", "credit", 0)
    full = [(*row, *defaults[len(row) - 3 :]) for row in rows]
    return pd.DataFrame(
        {
            id_column: pd.Series([row[0] for row in full], dtype="str"),
            "amount_minor": np.array([row[1] for row in full], dtype=np.int64),
            "currency": pd.Series([row[3] for row in full], dtype="str"),
            "direction": pd.Series([row[4] for row in full], dtype="str"),
            date_column: pd.to_datetime(pd.Series([day(row[5]) for row in full], dtype=object)),
            "reference": pd.Series([row[2] for row in full], dtype=object),
        }
    )


def assert_partition(result: ReconcileResult, lines: pd.DataFrame, transfers: pd.DataFrame) -> None:
    """Each line and each transfer in exactly one of matched, mismatched, unmatched."""
    for ids, frames, id_column in (
        (lines["line_id"], ("matched_lines", "mismatched_lines", "unmatched_lines"), "line_id"),
        (
            transfers["transfer_id"],
            ("matched_transfers", "mismatched_transfers", "unmatched_transfers"),
            "transfer_id",
        ),
    ):
        seen = pd.concat([getattr(result, name)[id_column] for name in frames], ignore_index=True)
        assert sorted(seen.tolist()) == sorted(ids.tolist())


def groups(result: ReconcileResult) -> list[tuple[str, list[str], list[str]]]:
    """(rule, line ids, transfer ids) per match group, in the result's order."""
    out = []
    for row in result.matched.itertuples():
        group = row.match_group
        links_l = result.matched_lines[result.matched_lines["match_group"] == group]
        links_t = result.matched_transfers[result.matched_transfers["match_group"] == group]
        out.append((str(row.rule), links_l["line_id"].tolist(), links_t["transfer_id"].tolist()))
    return out


def unmatched(frame: pd.DataFrame, id_column: str) -> dict[str, str]:
    return dict(zip(frame[id_column], frame["reason"].astype(str), strict=True))


def run(lines: pd.DataFrame, transfers: pd.DataFrame, **rules: Any) -> ReconcileResult:
    result = reconcile(lines, transfers, MatchRules(**rules))
    assert_partition(result, lines, transfers)
    return result


# -- 1:1 ---------------------------------------------------------------------------------------


def test_one_to_one_by_reference_ignores_case_and_padding() -> None:
    lines = lines_of(("L1", 150_00, "  po-17 "), ("L2", 99, "E2E-2", "CNY", "debit", 1))
    transfers = transfers_of(("T1", 150_00, "PO-17"), ("T2", 99, "e2e-2", "CNY", "debit"))

    result = run(lines, transfers)

    assert groups(result) == [(ONE_TO_ONE, ["L1"], ["T1"]), (ONE_TO_ONE, ["L2"], ["T2"])]
    first = result.matched.iloc[0]
    assert first["reference"] == "po-17"
    assert (first["currency"], first["direction"]) == ("CNY", "credit")
    assert (first["line_amount_minor"], first["transfer_amount_minor"]) == (15000, 15000)
    assert (first["amount_difference_minor"], first["date_distance_days"]) == (0, 0)
    assert result.matched.iloc[1]["date_distance_days"] == 1
    assert result.mismatched.empty
    assert result.unmatched_lines.empty
    assert result.unmatched_transfers.empty


def test_one_to_one_prefers_the_closest_amount_then_the_closest_date() -> None:
    lines = lines_of(("L1", 1000, "R", "CNY", "credit", 2), ("L2", 1000, "R", "CNY", "credit", 1))
    transfers = transfers_of(("T1", 1000, "R"), ("T2", 1003, "R"))

    result = run(lines, transfers, amount_tolerance_minor=5)

    # Both lines fit T1 exactly; L2 is a day closer, so L1 takes what is left.
    assert groups(result) == [(ONE_TO_ONE, ["L1"], ["T2"]), (ONE_TO_ONE, ["L2"], ["T1"])]


def test_a_duplicate_line_finds_its_transfer_taken() -> None:
    lines = lines_of(("L1", 500, "R1"), ("L2", 500, "R1", "CNY", "credit", 1))
    transfers = transfers_of(("T1", 500, "R1"))

    result = run(lines, transfers)

    assert groups(result) == [(ONE_TO_ONE, ["L1"], ["T1"])]
    assert unmatched(result.unmatched_lines, "line_id") == {"L2": REFERENCE_ALREADY_MATCHED}


@pytest.mark.parametrize(("size", "matched"), [(16, 16), (17, 0)])
def test_a_reference_crowded_on_both_sides_is_left_to_the_report(size: int, matched: int) -> None:
    lines = lines_of(*[(f"L{n}", 100, "R") for n in range(size)])
    transfers = transfers_of(*[(f"T{n}", 100, "R") for n in range(size)])

    result = run(lines, transfers)

    # 16 x 16 = 256 candidate pairs are tried; 17 x 17 would cost more than the cap allows.
    assert len(result.matched) == matched
    assert result.mismatched["reasons"].tolist() == ([] if matched else [GROUPING_NOT_SUPPORTED])


def test_the_line_reference_falls_back_to_the_end_to_end_id() -> None:
    lines = lines_of(("L1", 700, None), ("L2", 800, " "))
    lines["end_to_end_id"] = pd.Series(["E2E-7", "E2E-8"], dtype=object)
    transfers = transfers_of(("T1", 700, "e2e-7"), ("T2", 800, "E2E-8"))

    result = run(lines, transfers, match_without_reference=False)

    assert groups(result) == [(ONE_TO_ONE, ["L1"], ["T1"]), (ONE_TO_ONE, ["L2"], ["T2"])]


# -- 1:N and N:1 -------------------------------------------------------------------------------


def test_one_to_many_a_batch_booked_as_one_line() -> None:
    lines = lines_of(("L1", 600_000, "BATCH-9", "CNY", "debit", 2))
    transfers = transfers_of(
        ("T1", 100_000, "batch-9", "CNY", "debit"),
        ("T2", 200_000, "BATCH-9", "CNY", "debit", 1),
        ("T3", 300_000, "BATCH-9", "CNY", "debit", 2),
    )

    result = run(lines, transfers)

    assert groups(result) == [(ONE_TO_MANY, ["L1"], ["T1", "T2", "T3"])]
    row = result.matched.iloc[0]
    assert (row["line_count"], row["transfer_count"]) == (1, 3)
    assert (row["line_amount_minor"], row["transfer_amount_minor"]) == (600_000, 600_000)
    assert row["date_distance_days"] == 2


def test_many_to_one_a_payment_split_over_lines() -> None:
    lines = lines_of(("L1", 40_000, "INV-3"), ("L2", 60_000, "INV-3", "CNY", "credit", 1))
    transfers = transfers_of(("T1", 100_000, "INV-3"))

    result = run(lines, transfers)

    assert groups(result) == [(MANY_TO_ONE, ["L1", "L2"], ["T1"])]


def test_one_to_many_within_tolerance_and_outside() -> None:
    lines = lines_of(("L1", 299_990, "B1"), ("L2", 299_989, "B2"))
    transfers = transfers_of(
        ("T1", 100_000, "B1"), ("T2", 200_000, "B1"), ("T3", 100_000, "B2"), ("T4", 200_000, "B2")
    )

    result = run(lines, transfers, amount_tolerance_minor=10)

    assert groups(result) == [(ONE_TO_MANY, ["L1"], ["T1", "T2"])]
    row = result.mismatched.iloc[0]
    assert row["reference"] == "b2"
    assert row["reasons"] == AMOUNT_OUTSIDE_TOLERANCE
    assert (row["amount_difference_minor"], row["tolerance_minor"]) == (-11, 10)


def test_one_to_many_needs_every_transfer_inside_the_window() -> None:
    lines = lines_of(("L1", 300, "B1", "CNY", "credit", 3))
    transfers = transfers_of(("T1", 100, "B1", "CNY", "credit", 1), ("T2", 200, "B1"))

    result = run(lines, transfers, date_window_days=2)

    assert result.matched.empty
    row = result.mismatched.iloc[0]
    assert row["reasons"] == DATE_OUTSIDE_WINDOW
    assert row["date_distance_days"] == 3


def test_one_to_one_is_tried_before_one_to_many() -> None:
    lines = lines_of(("L1", 1000, "R"))
    transfers = transfers_of(("T1", 1000, "R"), ("T2", 400, "R"))

    result = run(lines, transfers)

    assert groups(result) == [(ONE_TO_ONE, ["L1"], ["T1"])]
    assert unmatched(result.unmatched_transfers, "transfer_id") == {"T2": REFERENCE_ALREADY_MATCHED}


@pytest.mark.parametrize(
    ("rules", "lines", "transfers"),
    [
        ({"one_to_many": False}, [("L1", 300, "B")], [("T1", 100, "B"), ("T2", 200, "B")]),
        ({"many_to_one": False}, [("L1", 100, "B"), ("L2", 200, "B")], [("T1", 300, "B")]),
        ({}, [("L1", 200, "B"), ("L2", 600, "B")], [("T1", 300, "B"), ("T2", 500, "B")]),
    ],
    ids=["1:N off", "N:1 off", "N:M"],
)
def test_groupings_no_enabled_rule_takes_are_mismatched(
    rules: dict[str, Any], lines: list[LineRow], transfers: list[LineRow]
) -> None:
    result = run(lines_of(*lines), transfers_of(*transfers), **rules)

    assert result.matched.empty
    row = result.mismatched.iloc[0]
    assert row["reasons"] == GROUPING_NOT_SUPPORTED
    assert row["amount_difference_minor"] == 0
    assert (row["line_count"], row["transfer_count"]) == (len(lines), len(transfers))


# -- tolerance ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line_amount", "matches"),
    [(1100, True), (900, True), (1101, False), (899, False)],
)
def test_tolerance_in_minor_units_edges(line_amount: int, matches: bool) -> None:
    result = run(
        lines_of(("L1", line_amount, "R")),
        transfers_of(("T1", 1000, "R")),
        **{"amount_tolerance_minor": 100},
    )

    assert len(result.matched) == int(matches)
    if not matches:
        row = result.mismatched.iloc[0]
        assert row["reasons"] == AMOUNT_OUTSIDE_TOLERANCE
        assert row[AMOUNT_OUTSIDE_TOLERANCE]
        assert (row["line_amount_minor"], row["transfer_amount_minor"]) == (line_amount, 1000)
        assert row["amount_difference_minor"] == line_amount - 1000
        assert row["tolerance_minor"] == 100


@pytest.mark.parametrize(
    ("line_amount", "transfer_amount", "matches"),
    [
        # 25 bps of 1,000,000 is 2,500: exactly at the tolerance matches, one unit more does not.
        (1_000_000, 997_500, True),
        (1_000_000, 997_499, False),
        # The larger side sets the tolerance, whichever side that is.
        (997_500, 1_000_000, True),
        (997_499, 1_000_000, False),
        # Rounded down: 25 bps of 1,000,399 is 2,500.9975, so 2,500.
        (1_000_399, 997_899, True),
        (1_000_399, 997_898, False),
    ],
)
def test_tolerance_in_basis_points_edges(
    line_amount: int, transfer_amount: int, matches: bool
) -> None:
    result = run(
        lines_of(("L1", line_amount, "R")),
        transfers_of(("T1", transfer_amount, "R")),
        amount_tolerance_bps=25,
    )

    assert len(result.matched) == int(matches)
    tolerance = (result.matched if matches else result.mismatched).iloc[0]["tolerance_minor"]
    assert tolerance == 2500


def test_tolerance_is_the_larger_of_minor_units_and_basis_points() -> None:
    lines = lines_of(("L1", 1_000_000, "A"), ("L2", 10_000, "B"))
    transfers = transfers_of(("T1", 997_000, "A"), ("T2", 9_700, "B"))

    result = run(lines, transfers, amount_tolerance_minor=300, amount_tolerance_bps=30)

    # A: 30 bps of 1,000,000 = 3,000 > 300; B: 30 bps of 10,000 = 30 < 300.
    assert result.matched["tolerance_minor"].tolist() == [3000, 300]
    assert len(result.matched) == 2


def test_tolerance_does_not_overflow_on_huge_amounts() -> None:
    huge = 9 * 10**17
    rules = MatchRules(amount_tolerance_bps=10_000)
    assert rules.tolerance(np.array([huge], dtype=np.int64)).tolist() == [huge]
    assert MatchRules(amount_tolerance_bps=1).tolerance(np.array([huge])).tolist() == [
        huge // 10**4
    ]


# -- date window -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "offset", "matches"),
    [(2, 2, True), (2, -2, True), (2, 3, False), (2, -3, False), (0, 0, True), (0, 1, False)],
)
def test_date_window_edges(window: int, offset: int, matches: bool) -> None:
    lines = lines_of(("L1", 1000, "R", "CNY", "credit", offset))
    transfers = transfers_of(("T1", 1000, "R"))

    result = run(lines, transfers, date_window_days=window)

    assert len(result.matched) == int(matches)
    if not matches:
        row = result.mismatched.iloc[0]
        assert row["reasons"] == DATE_OUTSIDE_WINDOW
        assert row["date_distance_days"] == abs(offset)


def test_dates_may_be_date_objects_or_tz_aware_datetimes() -> None:
    lines = lines_of(("L1", 1000, "R"))
    lines["booking_date"] = pd.Series([date(2024, 3, 3)], dtype=object)
    transfers = transfers_of(("T1", 1000, "R"))
    # 23:30 UTC on 1 March is the 2nd in Seoul: the wall-clock date counts.
    transfers["date"] = pd.Series([pd.Timestamp(2024, 3, 1, 23, 30, tz=UTC)]).dt.tz_convert(
        "Asia/Seoul"
    )

    result = run(lines, transfers, date_window_days=1)

    assert result.matched["date_distance_days"].tolist() == [1]


def test_booking_date_falls_back_to_value_date() -> None:
    lines = lines_of(("L1", 1000, "R"))
    lines["booking_date"] = pd.Series([pd.NaT], dtype="datetime64[ns]")
    lines["value_date"] = pd.to_datetime(pd.Series([day(1)], dtype=object))

    result = run(lines, transfers_of(("T1", 1000, "R")), date_window_days=1)

    assert result.matched["date_distance_days"].tolist() == [1]


# -- mismatch reasons --------------------------------------------------------------------------


def test_currency_differs() -> None:
    result = run(lines_of(("L1", 1000, "R", "KRW")), transfers_of(("T1", 1000, "R", "CNY")))

    row = result.mismatched.iloc[0]
    assert row["reasons"] == CURRENCY_DIFFERS
    assert (row["line_currency"], row["transfer_currency"]) == ("KRW", "CNY")
    # Amounts in different currencies are not compared.
    assert pd.isna(row["amount_difference_minor"])
    assert pd.isna(row["tolerance_minor"])
    assert (row["line_amount_minor"], row["transfer_amount_minor"]) == (1000, 1000)


def test_direction_differs() -> None:
    result = run(
        lines_of(("L1", 1000, "R", "CNY", "debit")), transfers_of(("T1", 1000, "R", "CNY"))
    )

    row = result.mismatched.iloc[0]
    assert row["reasons"] == DIRECTION_DIFFERS
    assert (row["line_direction"], row["transfer_direction"]) == ("debit", "credit")
    assert row["amount_difference_minor"] == 0


def test_several_reasons_at_once() -> None:
    lines = lines_of(("L1", 1200, "R", "CNY", "debit", 5))
    transfers = transfers_of(("T1", 1000, "R"))

    result = run(lines, transfers)

    row = result.mismatched.iloc[0]
    assert row["reasons"] == "amount_outside_tolerance,date_outside_window,direction_differs"
    assert [code for code in MISMATCH_REASONS if row[code]] == [
        AMOUNT_OUTSIDE_TOLERANCE,
        DATE_OUTSIDE_WINDOW,
        DIRECTION_DIFFERS,
    ]
    assert result.mismatched_lines["line_id"].tolist() == ["L1"]
    assert result.mismatched_lines["mismatch_group"].tolist() == [0]
    assert result.mismatched_transfers["transfer_id"].tolist() == ["T1"]


def test_a_mixed_currency_side_has_no_amount() -> None:
    lines = lines_of(("L1", 100, "R", "CNY"), ("L2", 200, "R", "KRW"))
    transfers = transfers_of(("T1", 300, "R", "CNY"))

    row = run(lines, transfers).mismatched.iloc[0]

    assert row["reasons"] == CURRENCY_DIFFERS
    assert pd.isna(row["line_amount_minor"])
    assert pd.isna(row["line_currency"])
    assert row["transfer_currency"] == "CNY"


# -- without a reference -----------------------------------------------------------------------


def test_unreferenced_pairs_by_exact_amount_at_the_nearest_date() -> None:
    lines = lines_of(("L1", 5000, None, "CNY", "credit", 5), ("L2", 777, "BANK-REF-1"))
    transfers = transfers_of(
        ("T1", 5000, None, "CNY", "credit", 7),
        ("T2", 5000, "", "CNY", "credit", 4),
        ("T3", 777, None),
    )

    result = run(lines, transfers)

    # The bank's own reference is unknown to the ledger, so it counts as none.
    assert groups(result) == [(UNREFERENCED, ["L1"], ["T2"]), (UNREFERENCED, ["L2"], ["T3"])]
    assert result.matched["reference"].isna().all()
    # T1's only candidate went to a nearer transfer.
    assert unmatched(result.unmatched_transfers, "transfer_id") == {"T1": NO_CANDIDATE}


def test_unreferenced_needs_the_exact_amount_currency_and_direction() -> None:
    lines = lines_of(
        ("L1", 5001, None), ("L2", 6000, None, "KRW"), ("L3", 7000, None, "CNY", "debit")
    )
    transfers = transfers_of(("T1", 5000, None), ("T2", 6000, None), ("T3", 7000, None))

    result = run(lines, transfers, amount_tolerance_minor=10)

    assert result.matched.empty
    assert set(result.unmatched_lines["reason"].astype(str)) == {NO_CANDIDATE}


def test_unreferenced_ties_are_ambiguous() -> None:
    lines = lines_of(("L1", 5000, None), ("L2", 5000, None), ("L3", 800, None, "CNY", "credit", 5))
    transfers = transfers_of(
        ("T1", 5000, None),
        ("T2", 5000, None),
        ("T3", 800, None, "CNY", "credit", 4),
        ("T4", 800, None, "CNY", "credit", 6),
    )

    result = run(lines, transfers)

    assert result.matched.empty
    assert unmatched(result.unmatched_lines, "line_id") == dict.fromkeys(
        ["L1", "L2", "L3"], AMBIGUOUS
    )
    assert unmatched(result.unmatched_transfers, "transfer_id") == dict.fromkeys(
        ["T1", "T2", "T3", "T4"], AMBIGUOUS
    )
    assert result.summary()["unmatched"]["lines_by_reason"][AMBIGUOUS] == 3


def test_a_tie_settles_once_its_rival_has_matched() -> None:
    # L1 is nearest to T1 alone; L2 is one day from both, and T1 goes to L1, so L2 gets T2.
    lines = lines_of(("L1", 5000, None), ("L2", 5000, None, "CNY", "credit", 1))
    transfers = transfers_of(("T1", 5000, None), ("T2", 5000, None, "CNY", "credit", 2))

    result = run(lines, transfers)

    assert groups(result) == [(UNREFERENCED, ["L1"], ["T1"]), (UNREFERENCED, ["L2"], ["T2"])]


def test_matching_without_reference_can_be_turned_off() -> None:
    result = run(
        lines_of(("L1", 5000, None)),
        transfers_of(("T1", 5000, None)),
        match_without_reference=False,
    )

    assert result.matched.empty
    assert unmatched(result.unmatched_lines, "line_id") == {"L1": NO_CANDIDATE}
    assert unmatched(result.unmatched_transfers, "transfer_id") == {"T1": NO_CANDIDATE}


# -- currencies, summary, records --------------------------------------------------------------


def test_krw_and_cny_side_by_side() -> None:
    lines = lines_of(
        ("L1", 150_000, "K1", "KRW"),
        ("L2", 1234_50, "C1", "CNY"),
        ("L3", 300_000, "K2", "KRW", "debit"),
        ("L4", 99, "C2", "CNY"),
    )
    transfers = transfers_of(
        ("T1", 150_050, "K1", "KRW"),
        ("T2", 1234_50, "C1", "CNY"),
        ("T3", 300_000, "K2", "KRW", "debit"),
        ("T4", 99, "C2", "KRW"),
    )

    result = run(lines, transfers, amount_tolerance_minor=50)

    assert [group[1] for group in groups(result)] == [["L1"], ["L2"], ["L3"]]
    assert result.matched["currency"].astype(str).tolist() == ["KRW", "CNY", "KRW"]
    assert result.matched["amount_difference_minor"].tolist() == [-50, 0, 0]
    summary = result.summary()
    assert summary["matched"]["totals"] == {
        "lines": {
            "CNY": {"credit": 123450, "debit": 0},
            "KRW": {"credit": 150000, "debit": 300000},
        },
        "transfers": {
            "CNY": {"credit": 123450, "debit": 0},
            "KRW": {"credit": 150050, "debit": 300000},
        },
    }
    assert summary["mismatched"]["totals"] == {
        "lines": {"CNY": {"credit": 99, "debit": 0}},
        "transfers": {"KRW": {"credit": 99, "debit": 0}},
    }
    assert summary["mismatched"]["groups_by_reason"][CURRENCY_DIFFERS] == 1


def test_summary_and_records_are_plain_json() -> None:
    lines = lines_of(("L1", 1000, "A"), ("L2", 300, "B"), ("L3", 50, None))
    transfers = transfers_of(("T1", 1000, "a"), ("T2", 100, "B"), ("T3", 200, "B"), ("T9", 1, "Z"))

    result = run(lines, transfers)
    records = json.loads(json.dumps(result.to_records()))

    assert records["summary"]["lines"] == 3
    assert records["summary"]["matched"]["groups_by_rule"] == {
        ONE_TO_ONE: 1,
        ONE_TO_MANY: 1,
        MANY_TO_ONE: 0,
        UNREFERENCED: 0,
    }
    assert records["matched"][1] == {
        "match_group": 1,
        "rule": ONE_TO_MANY,
        "reference": "b",
        "currency": "CNY",
        "direction": "credit",
        "line_count": 1,
        "transfer_count": 2,
        "line_amount_minor": 300,
        "transfer_amount_minor": 300,
        "amount_difference_minor": 0,
        "tolerance_minor": 0,
        "date_distance_days": 0,
        "line_ids": ["L2"],
        "transfer_ids": ["T2", "T3"],
    }
    assert records["unmatched_lines"] == [
        {
            "reason": NO_CANDIDATE,
            "line_id": "L3",
            "amount_minor": 50,
            "currency": "CNY",
            "direction": "credit",
            "booking_date": "2024-03-01",
            "reference": None,
        }
    ]
    assert [row["transfer_id"] for row in records["unmatched_transfers"]] == ["T9"]
    assert records["mismatched"] == []


def test_mismatched_records_list_reasons_and_ids() -> None:
    result = run(lines_of(("L1", 1000, "R", "KRW", "debit")), transfers_of(("T1", 1000, "R")))

    (row,) = result.to_records()["mismatched"]

    assert row["reasons"] == [CURRENCY_DIFFERS, DIRECTION_DIFFERS]
    assert (row["line_ids"], row["transfer_ids"]) == (["L1"], ["T1"])
    assert row["amount_difference_minor"] is None
    assert AMOUNT_OUTSIDE_TOLERANCE not in row


def test_output_is_deterministic_and_ordered_by_first_line() -> None:
    lines = lines_of(("L1", 300, "B"), ("L2", 5, None), ("L3", 1000, "A"), ("L4", 2, "Q"))
    transfers = transfers_of(("T1", 1000, "A"), ("T2", 200, "B"), ("T3", 100, "B"), ("T4", 5, None))

    first = run(lines, transfers)
    again = run(lines.copy(), transfers.copy())

    assert groups(first) == [
        (ONE_TO_MANY, ["L1"], ["T2", "T3"]),
        (UNREFERENCED, ["L2"], ["T4"]),
        (ONE_TO_ONE, ["L3"], ["T1"]),
    ]
    for name in ("matched", "matched_lines", "matched_transfers", "unmatched_lines"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(again, name))


def test_extra_columns_are_carried_into_the_exceptions() -> None:
    lines = lines_of(("L1", 1000, "R"), ("L2", 1, None))
    lines["counterparty"] = ["Weihai Trading", "Bank"]
    transfers = transfers_of(("T1", 1200, "R"))

    result = run(lines, transfers)

    assert result.mismatched_lines["counterparty"].tolist() == ["Weihai Trading"]
    assert result.unmatched_lines["counterparty"].tolist() == ["Bank"]


# -- empty and refused input -------------------------------------------------------------------


def test_empty_inputs() -> None:
    result = run(lines_of(), transfers_of())

    assert result.matched.empty
    assert result.mismatched.empty
    summary = result.summary()
    assert (summary["lines"], summary["transfers"]) == (0, 0)
    assert summary["matched"]["groups"] == 0
    assert summary["unmatched"]["totals"] == {"lines": {}, "transfers": {}}


def test_no_lines_leaves_every_transfer_unmatched() -> None:
    transfers = transfers_of(("T1", 100, "R"), ("T2", 5, None))

    result = run(lines_of(), transfers)

    assert unmatched(result.unmatched_transfers, "transfer_id") == {
        "T1": NO_CANDIDATE,
        "T2": NO_CANDIDATE,
    }


def refused(lines: pd.DataFrame, transfers: pd.DataFrame) -> str:
    try:
        reconcile(lines, transfers, MatchRules())
    except ValueError as exc:
        return str(exc)
    pytest.fail("the input was accepted")


def test_float_amounts_are_refused_even_when_whole() -> None:
    lines = lines_of(("L1", 1000, "R"))
    lines["amount_minor"] = lines["amount_minor"].astype("float64")

    message = refused(lines, transfers_of(("T1", 1000, "R")))

    assert message == (
        "lines.amount_minor is float64: amounts must be integer minor units (int64), never float"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["currency", "reference"]), "missing the column(s) currency, "),
        (lambda f: f.assign(amount_minor=f["amount_minor"].astype(str)), "amount_minor is str"),
        (lambda f: f.assign(amount_minor=-f["amount_minor"]), "negative amounts"),
        (lambda f: f.assign(amount_minor=[True]), "amount_minor is bool"),
        (lambda f: pd.concat([f, f]), "line_id is not unique: 'L1'"),
        (lambda f: f.assign(line_id=[None]), "line_id has empty values"),
        (lambda f: f.assign(currency=["cny"]), "not 'cny'"),
        (lambda f: f.assign(currency=[None]), "currency has empty values"),
        (lambda f: f.assign(direction=["in"]), "credit or debit (or CRDT/DBIT), not 'in'"),
        (lambda f: f.assign(booking_date=["2024-03-01"]), "dates must be datetime64 or date"),
        (lambda f: f.assign(booking_date=pd.Series([pd.NaT])), "booking_date has empty values"),
        (lambda f: f.assign(reference=[17]), "reference must hold text"),
    ],
)
def test_bad_lines_are_refused(change: Any, message: str) -> None:
    lines = change(lines_of(("L1", 1000, "R")))

    assert message in refused(lines, transfers_of(("T1", 1000, "R")))


def test_bad_transfers_are_refused() -> None:
    transfers = transfers_of(("T1", 1000, "R")).drop(columns=["date"])

    assert refused(lines_of(("L1", 1000, "R")), transfers) == (
        "transfers is missing the column(s) date"
    )
    assert "must be a pandas DataFrame" in refused(lines_of(), [])


def test_a_grand_total_beyond_int64_is_refused() -> None:
    big = 2**62
    lines = lines_of(("L1", big, "R"), ("L2", big, "S"), ("L3", big, "T"))

    assert "add up to more than int64" in refused(lines, transfers_of())


def test_crdt_and_dbit_are_accepted() -> None:
    lines = lines_of(("L1", 1000, "R", "CNY", "DBIT"))
    transfers = transfers_of(("T1", 1000, "R", "CNY", "debit"))

    assert run(lines, transfers).matched["direction"].astype(str).tolist() == ["debit"]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"amount_tolerance_minor": -1}, "amount_tolerance_minor must be between 0 and"),
        ({"amount_tolerance_bps": -1}, "amount_tolerance_bps must be between 0 and 10000"),
        ({"amount_tolerance_bps": 10_001}, "amount_tolerance_bps must be between 0 and 10000"),
        ({"date_window_days": -1}, "date_window_days must be between 0 and 366"),
        ({"date_window_days": 367}, "date_window_days must be between 0 and 366"),
        ({"amount_tolerance_minor": 0.5}, "amount_tolerance_minor must be an integer"),
        ({"date_window_days": True}, "date_window_days must be an integer"),
        ({"one_to_many": 1}, "one_to_many must be True or False"),
    ],
)
def test_bad_rules_are_refused(rules: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message):
        MatchRules(**rules)


def test_the_partition_check_fails_loudly() -> None:
    _check_partition(3, "line", np.array([0, 2]), np.array([1]))
    with pytest.raises(AssertionError, match="every line must be in exactly one category"):
        _check_partition(3, "line", np.array([0, 2]), np.array([2]))
    with pytest.raises(AssertionError):
        _check_partition(3, "line", np.array([0, 1]))


# -- statements --------------------------------------------------------------------------------


def test_lines_frame_from_statement_entries() -> None:
    entries = (
        Entry(0, 1500_00, "CNY", "CRDT", "BOOK", booking_date=DAY0, end_to_end_id="PO-1"),
        Entry(
            1,
            600_00,
            "CNY",
            "DBIT",
            "BOOK",
            booking_date=DAY0,
            transactions=(
                TransactionDetail(payment_information_id="BATCH-4", amount_minor=200_00),
                TransactionDetail(payment_information_id="BATCH-4", amount_minor=400_00),
            ),
        ),
        Entry(
            2,
            10_00,
            "CNY",
            "CRDT",
            "BOOK",
            value_date=day(1),
            remittance=Remittance(creditor_reference="RF18539007547034"),
        ),
        Entry(3, 1, "CNY", "CRDT", "PDNG", booking_date=DAY0),
    )
    statement = Statement("camt.053.001.02", "S1", Account(iban="CN00"), entries=entries)

    lines = lines_frame([statement])
    transfers = transfers_of(
        ("tr_1", 1500_00, "PO-1"),
        ("tr_2", 200_00, "BATCH-4", "CNY", "debit"),
        ("tr_3", 400_00, "BATCH-4", "CNY", "debit"),
        ("tr_4", 10_00, "rf18539007547034", "CNY", "credit", 1),
    )
    result = run(lines, transfers)

    assert lines["line_id"].tolist() == ["S1:0", "S1:1", "S1:2"]
    assert groups(result) == [
        (ONE_TO_ONE, ["S1:0"], ["tr_1"]),
        (ONE_TO_MANY, ["S1:1"], ["tr_2", "tr_3"]),
        (ONE_TO_ONE, ["S1:2"], ["tr_4"]),
    ]


# -- properties --------------------------------------------------------------------------------


@dataclass
class Truth:
    lines: list[LineRow] = field(default_factory=list)
    transfers: list[LineRow] = field(default_factory=list)
    groups: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    noise_lines: list[str] = field(default_factory=list)
    noise_transfers: list[str] = field(default_factory=list)


GROUP_KINDS = (ONE_TO_ONE, ONE_TO_MANY, MANY_TO_ONE, UNREFERENCED, "noise_line", "noise_transfer")


@st.composite
def truths(draw: st.DrawFn) -> tuple[Truth, MatchRules]:
    rules = MatchRules(
        amount_tolerance_minor=draw(st.integers(0, 50)),
        amount_tolerance_bps=draw(st.integers(0, 20)),
        date_window_days=draw(st.integers(0, 3)),
    )
    window = rules.date_window_days
    truth = Truth()
    kinds = draw(st.lists(st.sampled_from(GROUP_KINDS), max_size=25))
    for i, kind in enumerate(kinds):
        currency = draw(st.sampled_from(["CNY", "KRW"]))
        direction = draw(st.sampled_from(["credit", "debit"]))
        base = draw(st.integers(0, 30))

        def shift(base: int = base) -> int:
            return base + draw(st.integers(0, window))

        reference = draw(st.sampled_from([f"ref-{i}", f" REF-{i} ", f"Ref-{i}"]))
        if kind in (ONE_TO_ONE, ONE_TO_MANY, MANY_TO_ONE):
            pieces = [draw(st.integers(10**6, 10**7)) for _ in range(draw(st.integers(2, 5)))]
            if kind == ONE_TO_ONE:
                pieces = pieces[:1]
            total = sum(pieces)
            tolerance = int(rules.tolerance(np.array([total], dtype=np.int64))[0])
            single = total - draw(st.integers(0, tolerance))
            many = [
                (f"{i}-{n}", p, f"REF-{i}", currency, direction, shift())
                for n, p in enumerate(pieces)
            ]
            one = (f"{i}", single, reference, currency, direction, base)
            if kind == MANY_TO_ONE:
                truth.lines += many
                truth.transfers.append(one)
            else:
                truth.lines.append(one)
                truth.transfers += many
            truth.groups.append(
                (
                    kind,
                    [row[0] for row in (many if kind == MANY_TO_ONE else [one])],
                    [row[0] for row in ([one] if kind == MANY_TO_ONE else many)],
                )
            )
        elif kind == UNREFERENCED:
            amount = 9 * 10**8 + 7 * i  # unique: nothing else can pair with it
            bank_reference = draw(st.sampled_from([None, "", f"BANK-{i}"]))
            truth.lines.append((f"{i}", amount, bank_reference, currency, direction, shift()))
            truth.transfers.append((f"{i}", amount, None, currency, direction, base))
            truth.groups.append((UNREFERENCED, [f"{i}"], [f"{i}"]))
        elif kind == "noise_line":
            amount = 5 * 10**8 + 7 * i
            truth.lines.append(
                (
                    f"{i}",
                    amount,
                    draw(st.sampled_from([None, f"FEE-{i}"])),
                    currency,
                    direction,
                    base,
                )
            )
            truth.noise_lines.append(f"{i}")
        else:
            amount = 5 * 10**8 + 7 * i
            truth.transfers.append((f"{i}", amount, f"PO-{i}", currency, direction, base))
            truth.noise_transfers.append(f"{i}")
    truth.lines = draw(st.permutations(truth.lines))
    truth.transfers = draw(st.permutations(truth.transfers))
    return truth, rules


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(truths())
def test_every_known_group_is_found(case: tuple[Truth, MatchRules]) -> None:
    truth, rules = case
    lines, transfers = lines_of(*truth.lines), transfers_of(*truth.transfers)

    result = reconcile(lines, transfers, rules)

    assert_partition(result, lines, transfers)
    found = {(rule, *map(tuple, map(sorted, ids))) for rule, *ids in groups(result)}
    expected = {(rule, *map(tuple, map(sorted, ids))) for rule, *ids in truth.groups}
    assert found == expected
    assert result.mismatched.empty
    assert unmatched(result.unmatched_lines, "line_id") == dict.fromkeys(
        truth.noise_lines, NO_CANDIDATE
    )
    assert unmatched(result.unmatched_transfers, "transfer_id") == dict.fromkeys(
        truth.noise_transfers, NO_CANDIDATE
    )


def _rows(draw: st.DrawFn, prefix: str) -> list[LineRow]:
    size = draw(st.integers(0, 12))
    return [
        (
            f"{prefix}{n}",
            draw(st.sampled_from([100, 100, 101, 200, 300])),
            draw(st.sampled_from([None, "", "a", "A ", "b", "c"])),
            draw(st.sampled_from(["CNY", "CNY", "CNY", "KRW"])),
            draw(st.sampled_from(["credit", "credit", "credit", "debit"])),
            draw(st.integers(0, 4)),
        )
        for n in range(size)
    ]


@st.composite
def crowded(draw: st.DrawFn) -> tuple[list[LineRow], list[LineRow], MatchRules]:
    rules = MatchRules(
        amount_tolerance_minor=draw(st.integers(0, 60)),
        amount_tolerance_bps=draw(st.integers(0, 500)),
        date_window_days=draw(st.integers(0, 3)),
        one_to_many=draw(st.booleans()),
        many_to_one=draw(st.booleans()),
        match_without_reference=draw(st.booleans()),
    )
    return _rows(draw, "L"), _rows(draw, "T"), rules


@settings(max_examples=200, deadline=None)
@given(crowded())
def test_crowded_data_keeps_every_invariant(
    case: tuple[list[LineRow], list[LineRow], MatchRules],
) -> None:
    """Few amounts, few references, many collisions: whatever matches obeys the rules."""
    line_rows, transfer_rows, rules = case
    lines, transfers = lines_of(*line_rows), transfers_of(*transfer_rows)

    result = reconcile(lines, transfers, rules)

    assert_partition(result, lines, transfers)
    matched = result.matched
    assert (matched["amount_difference_minor"].abs() <= matched["tolerance_minor"]).all()
    assert (matched["date_distance_days"] <= rules.date_window_days).all()
    assert (matched["line_amount_minor"] - matched["transfer_amount_minor"]).equals(
        matched["amount_difference_minor"]
    )
    allowed = {ONE_TO_ONE, UNREFERENCED}
    allowed |= {ONE_TO_MANY} if rules.one_to_many else set()
    allowed |= {MANY_TO_ONE} if rules.many_to_one else set()
    if not rules.match_without_reference:
        allowed.discard(UNREFERENCED)
    assert set(matched["rule"].astype(str)) <= allowed
    by_id = lines.set_index("line_id")
    for group in matched.itertuples():
        ids = result.matched_lines.loc[result.matched_lines["match_group"] == group.match_group]
        assert by_id.loc[ids["line_id"], "amount_minor"].sum() == group.line_amount_minor
    for row in result.mismatched.itertuples():
        assert row.reasons
    assert result.summary()["lines"] == len(lines)
    again = reconcile(lines, transfers, rules)
    pd.testing.assert_frame_equal(result.matched, again.matched)
    pd.testing.assert_frame_equal(result.mismatched, again.mismatched)
