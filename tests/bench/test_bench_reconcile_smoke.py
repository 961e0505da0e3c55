"""`hub bench reconcile --smoke` end to end, and the synthetic data set behind it. Timings are
never asserted (the machine is shared); only the shape of the result and its agreement with the
known answer."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from bench import BenchError
from bench.reconcile import RULES_USED, build_dataset, check
from settlement.reconcile import (
    MISMATCH_REASONS,
    RULES,
    UNMATCHED_REASONS,
    MatchRules,
    reconcile,
)

EXPECTED_KEYS = {
    "bench",
    "lines",
    "transfers",
    "seconds",
    "build_seconds",
    "lines_per_s",
    "baseline_merge_seconds",
    "vs_baseline",
    "matched_groups",
    "matched_groups_by_rule",
    "matched_lines",
    "matched_transfers",
    "mismatched_groups",
    "mismatched_groups_by_reason",
    "mismatched_lines",
    "mismatched_transfers",
    "unmatched_lines",
    "unmatched_lines_by_reason",
    "unmatched_transfers",
    "unmatched_transfers_by_reason",
    "truth_checked",
    "target_seconds",
    "target_met",
    "nproc",
}


def test_bench_reconcile_smoke() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "bench", "reconcile", "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-4000:]
    result = json.loads(lines[-1])

    assert set(result) >= EXPECTED_KEYS, sorted(EXPECTED_KEYS - set(result))
    assert result["bench"] == "reconcile"
    assert result["smoke"] is True
    assert (result["lines"], result["transfers"]) == (20_000, 20_000)
    assert result["truth_checked"] is True
    assert result["target_seconds"] == 15
    assert isinstance(result["target_met"], bool)
    # Every line and every transfer in exactly one category.
    for side in ("lines", "transfers"):
        categories = ("matched", "mismatched", "unmatched")
        assert sum(result[f"{name}_{side}"] for name in categories) == result[side]
    assert sum(result["matched_groups_by_rule"].values()) == result["matched_groups"]
    assert set(result["matched_groups_by_rule"]) == set(RULES)
    assert all(result["matched_groups_by_rule"][rule] > 0 for rule in RULES)
    assert set(result["mismatched_groups_by_reason"]) == set(MISMATCH_REASONS)
    assert all(count > 0 for count in result["mismatched_groups_by_reason"].values())
    assert set(result["unmatched_lines_by_reason"]) == set(UNMATCHED_REASONS)
    assert sum(result["unmatched_lines_by_reason"].values()) == result["unmatched_lines"]
    assert sum(result["unmatched_transfers_by_reason"].values()) == result["unmatched_transfers"]
    assert result["unmatched_lines_by_reason"]["ambiguous"] > 0


def test_bench_reconcile_refuses_a_tiny_size() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "bench", "reconcile", "--lines", "10"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "--lines must be at least 2000" in done.stderr
    assert done.stdout.strip() == ""


def test_the_data_set_is_deterministic() -> None:
    first, again, other = (build_dataset(2_000, seed) for seed in (7, 7, 8))

    pd.testing.assert_frame_equal(first.lines, again.lines)
    pd.testing.assert_frame_equal(first.transfers, again.transfers)
    assert not first.lines["amount_minor"].equals(other.lines["amount_minor"])
    assert (len(first.lines), len(first.transfers)) == (2_000, 2_000)


def test_the_check_catches_a_wrong_answer() -> None:
    dataset = build_dataset(2_000, 7)
    check(dataset, reconcile(dataset.lines, dataset.transfers, RULES_USED))

    # Without tolerance the deducted fees no longer match: the known answer says otherwise.
    strict = MatchRules(date_window_days=RULES_USED.date_window_days)
    with pytest.raises(BenchError, match="disagrees with the known answer"):
        check(dataset, reconcile(dataset.lines, dataset.transfers, strict))
