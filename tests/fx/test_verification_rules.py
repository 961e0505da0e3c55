"""The verification rules alone (no database): each rule at its edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fx.verification_rules import (
    CODES,
    COLUMNS,
    FOR_REVIEW,
    REJECTING,
    Rules,
    denied_flags,
    payer_year_to_date,
    verify,
)

DAY = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
RULES = Rules(
    tolerance_bps=100,
    net_shipping=True,
    net_tax=False,
    customs_required_modes=frozenset({"9710", "9810", "1210"}),
    transaction_caps={"CNY": 5_000_00, "KRW": 1_000_000},
    annual_quotas={"CNY": 26_000_00, "KRW": 5_200_000},
)


def row(**over: Any) -> dict[str, Any]:
    """A payin of 150,000 KRW against an order of 150,000 KRW (goods 140,000, shipping 10,000)
    with its payment record and waybill, every check passing."""
    base: dict[str, Any] = {
        "order_no": "ORD-1",
        "currency": "KRW",
        "amount": 150_000,
        "order_id": "ord_1",
        "order_order_no": "ORD-1",
        "trade_type": "B2C",
        "customs_mode": "9610",
        "buyer_name": "Kim Minjun",
        "buyer_id": "kr-1",
        "buyer_country": "KR",
        "order_currency": "KRW",
        "order_amount": 150_000,
        "goods_amount": 140_000,
        "shipping_amount": 10_000,
        "tax_amount": 0,
        "ordered_at": DAY,
        "payment_id": "pmr_1",
        "payment_order_no": "ORD-1",
        "payer_name": "Kim Minjun",
        "payer_id": "kr-1",
        "payer_country": "KR",
        "payment_currency": "KRW",
        "payment_amount": 150_000,
        "paid_at": DAY + timedelta(minutes=5),
        "waybill_id": "wb_1",
        "waybill_no": "WB1",
        "waybill_order_no": "ORD-1",
        "shipped_at": DAY + timedelta(days=1),
    }
    base.update(over)
    return base


def customs(**over: Any) -> dict[str, Any]:
    declaration = {
        "customs_id": "cus_1",
        "customs_order_no": "ORD-1",
        "customs_waybill_no": "WB1",
        "declared_mode": "9710",
        "customs_currency": "KRW",
        "customs_amount": 140_000,
        "declared_at": DAY + timedelta(hours=12),
    }
    declaration.update(over)
    return declaration


def check(rules: Rules = RULES, now: datetime = NOW, **over: Any) -> tuple[str, tuple[str, ...]]:
    result = verify(pd.DataFrame([row(**over)]), rules=rules, now=now).iloc[0]
    return result["outcome"], result["reasons"]


def test_the_codes_are_sorted_and_each_rejects_or_sends_to_review():
    assert list(CODES) == sorted(CODES)
    assert REJECTING.isdisjoint(FOR_REVIEW)
    assert set(CODES) == REJECTING | FOR_REVIEW


def test_matching_documents_are_verified_with_no_reason():
    assert check() == ("verified", ())


# --- amounts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paid", "expected"),
    [
        (151_500, ()),  # 100 bps of 150,000 above: exactly at the tolerance
        (151_501, ("amount_mismatch", "payment_amount_mismatch")),  # one won beyond
        (148_500, ()),
        (148_499, ("amount_mismatch", "payment_amount_mismatch")),
        (140_000, ()),  # the shipping left out, as the settings allow
        (138_500, ()),  # ... within the tolerance of the order's whole amount
        (138_499, ("amount_mismatch", "payment_amount_mismatch")),
    ],
)
def test_amounts_within_the_tolerance_at_its_edges(paid, expected):
    outcome, reasons = check(amount=paid, payment_amount=paid)
    assert reasons == expected
    assert outcome == ("rejected" if expected else "verified")


def test_the_tolerance_is_one_minor_unit_exact_in_a_currency_with_cents():
    order: dict[str, Any] = {"currency": "CNY", "order_currency": "CNY", "payment_currency": "CNY"}
    order |= {"order_amount": 1000_00, "goods_amount": 1000_00, "shipping_amount": 0}
    assert check(**order, amount=1010_00, payment_amount=1010_00)[1] == ()
    assert check(**order, amount=1010_01, payment_amount=1010_00)[1] == ("amount_mismatch",)


def test_netting_follows_the_settings():
    no_netting = Rules(**{**RULES.__dict__, "net_shipping": False})
    assert check(no_netting, amount=140_000, payment_amount=140_000)[1] == (
        "amount_mismatch",
        "payment_amount_mismatch",
    )
    taxed: dict[str, Any] = {"order_amount": 155_000, "tax_amount": 5_000, "amount": 150_000}
    taxed["payment_amount"] = 150_000
    assert check(**taxed)[1] == ("amount_mismatch", "payment_amount_mismatch")
    with_tax = Rules(**{**RULES.__dict__, "net_tax": True})
    assert check(with_tax, **taxed)[1] == ()
    both = Rules(**{**RULES.__dict__, "net_tax": True})
    assert check(both, **{**taxed, "amount": 140_000, "payment_amount": 140_000})[1] == ()


def test_the_movement_in_another_currency_is_rejected_once():
    outcome, reasons = check(currency="CNY", amount=800_00)
    assert (outcome, reasons) == ("rejected", ("currency_mismatch",))
    assert check(payment_currency="CNY", payment_amount=800_00)[1] == ("payment_currency_mismatch",)


# --- links and missing documents -----------------------------------------------------------------


def test_a_missing_order_is_the_one_reason():
    assert check(order_id=None, payment_id=None, waybill_id=None) == (
        "rejected",
        ("order_missing",),
    )
    only_number = verify(
        pd.DataFrame([{"order_no": "X", "currency": "KRW", "amount": 1}]), rules=RULES, now=NOW
    ).iloc[0]
    assert only_number["reasons"] == ("order_missing",)


def test_missing_payment_record_and_waybill_reject():
    assert check(payment_id="") == ("rejected", ("payment_record_missing",))
    assert check(waybill_id=None) == ("rejected", ("waybill_missing",))


def test_documents_naming_another_order_or_waybill_reject():
    assert check(payment_order_no="ORD-2") == ("rejected", ("order_no_mismatch",))
    assert check(waybill_order_no="ORD-2")[1] == ("order_no_mismatch",)
    assert check(order_no="ORD-2")[1] == ("order_no_mismatch",)
    assert check(**customs(customs_order_no="ORD-2"), customs_mode="9710")[1] == (
        "order_no_mismatch",
    )
    assert check(**customs(customs_waybill_no="WB2"), customs_mode="9710")[1] == (
        "waybill_no_mismatch",
    )
    # A declaration naming no waybill is not a mismatch.
    assert check(**customs(customs_waybill_no=""), customs_mode="9710")[1] == ()


# --- dates ---------------------------------------------------------------------------------------


def test_equal_dates_are_in_order():
    same: dict[str, Any] = {"paid_at": DAY, "shipped_at": DAY}
    assert check(**same, **customs(declared_at=DAY), customs_mode="9710") == ("verified", ())


def test_dates_before_the_order_go_to_review():
    early = DAY - timedelta(microseconds=1)
    assert check(paid_at=early) == ("review", ("paid_before_ordered",))
    assert check(shipped_at=early) == ("review", ("shipped_before_ordered",))
    assert check(**customs(declared_at=early), customs_mode="9710") == (
        "review",
        ("declared_before_ordered",),
    )


def test_a_date_in_the_future_rejects_and_now_does_not():
    assert check(now=DAY, ordered_at=DAY, paid_at=DAY, shipped_at=DAY) == ("verified", ())
    later = DAY + timedelta(seconds=1)
    assert check(now=DAY, paid_at=DAY, shipped_at=later) == ("rejected", ("date_in_future",))
    both = check(now=DAY, ordered_at=later, paid_at=later, shipped_at=later)
    assert both == ("rejected", ("date_in_future",))


# --- customs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["9710", "9810", "1210"])
def test_modes_that_need_a_declaration(mode):
    assert check(customs_mode=mode) == ("review", ("customs_declaration_missing",))
    assert check(customs_mode=mode, **customs(declared_mode=mode)) == ("verified", ())


def test_a_retail_export_needs_no_declaration_of_its_own():
    assert check(customs_mode="9610") == ("verified", ())


def test_a_declaration_of_another_mode_or_value_goes_to_review():
    assert check(customs_mode="9710", **customs(declared_mode="9810")) == (
        "review",
        ("customs_mode_mismatch",),
    )
    # The goods' value or the whole order's, within the tolerance (1,500 here).
    assert check(customs_mode="9710", **customs(customs_amount=150_000))[1] == ()
    assert check(customs_mode="9710", **customs(customs_amount=141_500))[1] == ()
    assert check(customs_mode="9710", **customs(customs_amount=141_501))[1] == (
        "customs_amount_mismatch",
    )
    assert check(customs_mode="9710", **customs(customs_currency="CNY"))[1] == (
        "customs_amount_mismatch",
    )


# --- parties -------------------------------------------------------------------------------------


def test_a_payer_other_than_the_buyer_goes_to_review():
    assert check(payer_id="kr-2") == ("review", ("payer_not_buyer",))
    assert check(payer_country="CN") == ("review", ("payer_not_buyer",))
    # Without identity numbers the names decide, ignoring case and spacing.
    unnumbered: dict[str, Any] = {"buyer_id": "", "payer_id": ""}
    assert check(**unnumbered, payer_name="  kim   MINJUN ") == ("verified", ())
    assert check(**unnumbered, payer_name="Lee Minjun") == ("review", ("payer_not_buyer",))


def test_denied_parties_reject():
    assert check(buyer_denied=True) == ("rejected", ("buyer_denied",))
    assert check(payer_denied=True, payer_id="kr-9") == (
        "rejected",
        ("payer_denied", "payer_not_buyer"),
    )


def test_denied_party_matching():
    parties = [
        ("Blocked One", "ID-1", "KR"),  # by number, in Korea
        ("Blocked Two", "ID-2", ""),  # by number, anywhere
        ("  Blocked   THREE ", "", ""),  # by name
    ]
    names = ["x", "x", "x", "x", "blocked three", "Blocked One", ""]
    ids = ["ID-1", "ID-1", "ID-2", "ID-3", "", "", ""]
    countries = ["KR", "CN", "US", "KR", "KR", "KR", ""]
    flags = denied_flags(parties, names=names, id_numbers=ids, countries=countries)
    assert flags.tolist() == [True, False, True, False, True, False, False]


def test_a_document_backing_another_movement_goes_to_review():
    assert check(document_reused=True) == ("review", ("document_reused",))


# --- caps and quotas -----------------------------------------------------------------------------


def big(amount: int, **over: Any) -> dict[str, Any]:
    return {
        "amount": amount,
        "payment_amount": amount,
        "order_amount": amount,
        "goods_amount": amount,
        "shipping_amount": 0,
        **over,
    }


def test_the_transaction_cap_exactly_at_and_beyond():
    assert check(**big(1_000_000)) == ("verified", ())
    assert check(**big(1_000_001)) == ("rejected", ("transaction_cap_exceeded",))
    assert check(**big(1_000_001, trade_type="B2B")) == ("verified", ())
    # A currency without a cap has none.
    usd: dict[str, Any] = {"currency": "USD", "order_currency": "USD", "payment_currency": "USD"}
    assert check(**big(10**9, **usd)) == ("verified", ())


def test_the_annual_quota_exactly_at_and_beyond():
    assert check(**big(1_000_000, payer_ytd=4_200_000)) == ("verified", ())
    assert check(**big(1_000_000, payer_ytd=4_200_001)) == (
        "rejected",
        ("annual_quota_exceeded",),
    )
    assert check(**big(1_000_000, payer_ytd=9_000_000, trade_type="B2B")) == ("verified", ())


def history(*payments: tuple[str, str, datetime, int]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "payment_id": pid,
                "payer_id": payer,
                "payer_country": "KR",
                "currency": "KRW",
                "paid_at": at,
                "amount": amount,
            }
            for pid, payer, at, amount in payments
        ]
    )


def test_year_to_date_starts_again_on_the_first_of_january_in_shanghai():
    last_second = datetime(2026, 12, 31, 15, 59, 59, tzinfo=UTC)  # 23:59:59 in Shanghai
    new_year = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)  # 00:00 on 1 January there
    frame = history(
        ("pmr_a", "p1", datetime(2026, 3, 1, tzinfo=UTC), 3_000_000),
        ("pmr_b", "p1", last_second, 2_000_000),
        ("pmr_c", "p1", new_year, 1_000_000),
        ("pmr_d", "p1", new_year + timedelta(days=1), 500_000),
        ("pmr_e", "p2", last_second, 7_000_000),  # another payer
        ("pmr_f", "p1", datetime(2025, 12, 31, 15, 59, 59, tzinfo=UTC), 9_000_000),
    )
    ids = ["pmr_a", "pmr_b", "pmr_c", "pmr_d", "pmr_e", "pmr_f", "pmr_unknown"]
    ytd = payer_year_to_date(frame, ids)
    assert ytd.tolist() == [0, 3_000_000, 0, 1_000_000, 0, 0, 0]
    assert ytd.dtype == np.int64


def test_year_to_date_orders_payments_at_the_same_moment_by_id():
    at = datetime(2026, 6, 1, tzinfo=UTC)
    frame = history(("pmr_b", "p", at, 2), ("pmr_a", "p", at, 1), ("pmr_c", "p", at, 4))
    assert payer_year_to_date(frame, ["pmr_a", "pmr_b", "pmr_c"]).tolist() == [0, 1, 3]


def test_year_to_date_across_the_boundary_decides_the_quota():
    last_second = datetime(2026, 12, 31, 15, 59, 59, tzinfo=UTC)
    new_year = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    frame = history(("pmr_a", "kr-1", last_second, 5_000_000), ("pmr_b", "kr-1", new_year, 1))
    frame_late = history(
        ("pmr_a", "kr-1", last_second, 5_000_000), ("pmr_b", "kr-1", last_second, 1)
    )
    now = datetime(2027, 1, 2, tzinfo=UTC)
    for payments, expected in ((frame, ()), (frame_late, ("annual_quota_exceeded",))):
        ytd = int(payer_year_to_date(payments, ["pmr_b"])[0])
        payment = big(1_000_000, payer_ytd=ytd, payment_id="pmr_b", paid_at=new_year)
        assert check(now=now, **payment)[1] == expected


# --- the frame as a whole ------------------------------------------------------------------------


def test_rejecting_and_review_reasons_together_reject_with_all_codes_sorted():
    outcome, reasons = check(payer_id="kr-2", payment_order_no="X", shipped_at=DAY - timedelta(1))
    assert outcome == "rejected"
    assert reasons == ("order_no_mismatch", "payer_not_buyer", "shipped_before_ordered")


def test_a_row_alone_and_in_a_frame_of_others_gets_the_same_answer():
    rows = [
        row(),
        row(amount=1),
        row(order_id=None),
        row(payer_id="x", customs_mode="1210"),
        row(**big(2_000_000)),
    ]
    together = verify(pd.DataFrame(rows, index=range(10, 15)), rules=RULES, now=NOW)
    assert list(together.index) == list(range(10, 15))
    for n, one in enumerate(rows):
        alone = verify(pd.DataFrame([one]), rules=RULES, now=NOW).iloc[0]
        assert (alone["outcome"], alone["reasons"]) == tuple(
            together.iloc[n][["outcome", "reasons"]]
        )


def test_float_amounts_with_fractions_are_refused():
    with pytest.raises(ValueError, match="minor units"):
        verify(pd.DataFrame([row(amount=1.5)]), rules=RULES, now=NOW)


def test_every_column_has_a_kind():
    assert set(COLUMNS.values()) == {"text", "amount", "time", "flag"}


def year_to_date_by_hand(payments: pd.DataFrame, ids: list[str]) -> list[int]:
    """The definition, payment by payment: earlier payments of the same payer (number and
    country) and currency in the same Shanghai year, earlier meaning (paid_at, id) smaller."""
    rows = payments.drop_duplicates("payment_id").to_dict("records")

    def year(at: datetime) -> int:
        return pd.Timestamp(at).tz_convert("Asia/Shanghai").year

    out = []
    for wanted in ids:
        [this] = [r for r in rows if r["payment_id"] == wanted] or [None]
        if this is None:
            out.append(0)
            continue
        out.append(
            sum(
                r["amount"]
                for r in rows
                if (r["payer_id"], r["payer_country"], r["currency"])
                == (this["payer_id"], this["payer_country"], this["currency"])
                and year(r["paid_at"]) == year(this["paid_at"])
                and (r["paid_at"], r["payment_id"]) < (this["paid_at"], this["payment_id"])
            )
        )
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["pmr_a", "pmr_b", "pmr_B", "pmr_c", "pmr_0", "pmr_z", "pmr_aa"]),
            st.sampled_from(["p1", "p2", ""]),
            st.sampled_from(["KR", "CN"]),
            st.sampled_from(["KRW", "CNY"]),
            # Around the new year in Shanghai, with ties.
            st.sampled_from([-86_400, -1, 0, 0, 1, 3_600, 86_400 * 200]),
            st.integers(0, 10**12),
        ),
        max_size=12,
    )
)
def test_year_to_date_is_the_sum_of_the_earlier_payments(payments):
    new_year = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    frame = pd.DataFrame(
        [
            {
                "payment_id": pid,
                "payer_id": payer,
                "payer_country": country,
                "currency": currency,
                "paid_at": new_year + timedelta(seconds=seconds),
                "amount": amount,
            }
            for pid, payer, country, currency, seconds, amount in payments
        ],
        columns=["payment_id", "payer_id", "payer_country", "currency", "paid_at", "amount"],
    )
    ids = ["pmr_a", "pmr_b", "pmr_B", "pmr_c", "pmr_0", "pmr_z", "pmr_aa", "pmr_none", ""]
    ytd = payer_year_to_date(frame, ids)
    assert ytd.tolist() == year_to_date_by_hand(frame, ids)
    assert ytd.dtype == np.int64
