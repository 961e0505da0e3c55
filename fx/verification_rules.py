"""The rules of forex e-document verification, on whole columns: plain pandas and numpy, no Django.

One row is one movement (a payin, a payout, or an order checked before any money moved) with the
documents found for its order: the order, its payment record, its waybill and, if filed, its
customs declaration. Beside the documents a row carries what the rules cannot see in them: the
movement's currency and amount, what the payer already paid in the year, whether the order
already backs another movement and whether the buyer or the payer is a denied party. ``verify``
gives each row an outcome and its reason codes, sorted; a single verification is a one-row frame
through the same code, so that a batch and one-by-one verification cannot disagree.

Each reason either rejects or sends to review (a bank officer decides):

- rejected: a document is missing (``order_missing``, ``payment_record_missing``,
  ``waybill_missing``), the documents do not name each other (``order_no_mismatch``,
  ``waybill_no_mismatch``), the money does not agree with the order (``currency_mismatch``,
  ``payment_currency_mismatch``, ``amount_mismatch``, ``payment_amount_mismatch``), a document is
  dated in the future (``date_in_future``), a B2C limit is passed
  (``transaction_cap_exceeded``, ``annual_quota_exceeded``), or the buyer or the payer is a
  denied party (``buyer_denied``, ``payer_denied``);
- review: what has an innocent explanation a person can check: someone other than the buyer
  paid (``payer_not_buyer``), dates out of order (``paid_before_ordered``,
  ``shipped_before_ordered``, ``declared_before_ordered``), the customs declaration missing
  where the mode needs one, of another mode, or for another value
  (``customs_declaration_missing``, ``customs_mode_mismatch``, ``customs_amount_mismatch``), or
  the order already backing another movement (``document_reused``: a split payment, or the same
  documents shown twice).

Any rejecting reason makes the outcome ``rejected``; otherwise any reason makes it ``review``;
``verified`` carries none. Amounts are integer minor units (``int64``); times are aware.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

VERIFIED: Final = "verified"
REJECTED: Final = "rejected"
REVIEW: Final = "review"

REJECTING: Final = frozenset(
    {
        "order_missing",
        "payment_record_missing",
        "waybill_missing",
        "order_no_mismatch",
        "waybill_no_mismatch",
        "currency_mismatch",
        "payment_currency_mismatch",
        "amount_mismatch",
        "payment_amount_mismatch",
        "date_in_future",
        "transaction_cap_exceeded",
        "annual_quota_exceeded",
        "buyer_denied",
        "payer_denied",
    }
)
FOR_REVIEW: Final = frozenset(
    {
        "payer_not_buyer",
        "paid_before_ordered",
        "shipped_before_ordered",
        "declared_before_ordered",
        "customs_declaration_missing",
        "customs_mode_mismatch",
        "customs_amount_mismatch",
        "document_reused",
    }
)
# Bit n of a row's mask is CODES[n]: reading the bits upwards gives the codes sorted.
CODES: Final = tuple(sorted(REJECTING | FOR_REVIEW))
_BIT: Final = {code: np.int64(1) << np.int64(n) for n, code in enumerate(CODES)}
_REJECTING_MASK: Final = int(sum(int(_BIT[code]) for code in REJECTING))

# The calendar year of the annual quotas: China's, whose cross-border retail limits they are.
QUOTA_TIME_ZONE: Final = "Asia/Shanghai"

# The input, column by column: the kind of each says how a missing value reads ("" for text, 0
# for amounts, NaT for times, False for flags). An absent document has an empty id.
TEXT: Final = "text"
AMOUNT: Final = "amount"
TIME: Final = "time"
FLAG: Final = "flag"
COLUMNS: Final[dict[str, str]] = {
    # the movement, and the order number it names
    "order_no": TEXT,
    "currency": TEXT,
    "amount": AMOUNT,
    # the order
    "order_id": TEXT,
    "order_order_no": TEXT,
    "trade_type": TEXT,
    "customs_mode": TEXT,
    "buyer_name": TEXT,
    "buyer_id": TEXT,
    "buyer_country": TEXT,
    "order_currency": TEXT,
    "order_amount": AMOUNT,
    "shipping_amount": AMOUNT,
    "tax_amount": AMOUNT,
    "goods_amount": AMOUNT,
    "ordered_at": TIME,
    # its payment record
    "payment_id": TEXT,
    "payment_order_no": TEXT,
    "payer_name": TEXT,
    "payer_id": TEXT,
    "payer_country": TEXT,
    "payment_currency": TEXT,
    "payment_amount": AMOUNT,
    "paid_at": TIME,
    # its waybill
    "waybill_id": TEXT,
    "waybill_no": TEXT,
    "waybill_order_no": TEXT,
    "shipped_at": TIME,
    # its customs declaration
    "customs_id": TEXT,
    "customs_order_no": TEXT,
    "customs_waybill_no": TEXT,
    "declared_mode": TEXT,
    "customs_currency": TEXT,
    "customs_amount": AMOUNT,
    "declared_at": TIME,
    # what the documents do not say
    "payer_ytd": AMOUNT,
    "document_reused": FLAG,
    "buyer_denied": FLAG,
    "payer_denied": FLAG,
}


@dataclass(frozen=True)
class Rules:
    """The knobs of ``settings.HUB["FX_VERIFICATION"]``."""

    tolerance_bps: int = 100
    net_shipping: bool = True
    net_tax: bool = False
    customs_required_modes: frozenset[str] = frozenset({"9710", "9810", "1210"})
    transaction_caps: Mapping[str, int] = field(default_factory=dict)
    annual_quotas: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, conf: Mapping[str, Any]) -> Rules:
        return cls(
            tolerance_bps=int(conf["AMOUNT_TOLERANCE_BPS"]),
            net_shipping=bool(conf["NET_SHIPPING"]),
            net_tax=bool(conf["NET_TAX"]),
            customs_required_modes=frozenset(conf["CUSTOMS_REQUIRED_MODES"]),
            transaction_caps=dict(conf["TRANSACTION_CAPS"]),
            annual_quotas=dict(conf["ANNUAL_QUOTAS"]),
        )


Columns = dict[str, npt.NDArray[Any]]


def prepared(frame: pd.DataFrame) -> Columns:
    """Every column of ``COLUMNS`` as a numpy array of its kind, missing values filled: text as
    objects, amounts as ``int64``, times as ``datetime64[ns]`` in UTC, flags as booleans."""
    n = len(frame)
    out: Columns = {}
    for name, kind in COLUMNS.items():
        column = frame.get(name)
        if kind == TEXT:
            out[name] = (
                np.full(n, "", dtype=object)
                if column is None
                else column.fillna("").to_numpy(dtype=object)
            )
        elif kind == AMOUNT:
            if column is None:
                out[name] = np.zeros(n, dtype=np.int64)
                continue
            values = column.to_numpy()
            if values.dtype.kind == "f" and not np.all(
                np.isnan(values) | (values == values.round())
            ):
                raise ValueError(f"{name}: amounts are integer minor units")
            out[name] = column.fillna(0).to_numpy(dtype=np.int64)
        elif kind == TIME:
            out[name] = (
                np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
                if column is None
                else pd.DatetimeIndex(pd.to_datetime(column, utc=True))
                .tz_convert(None)
                .to_numpy(dtype="datetime64[ns]")
            )
        else:
            out[name] = (
                np.zeros(n, dtype=bool)
                if column is None
                else column.fillna(False).to_numpy(dtype=bool)
            )
    return out


def _within(paid: IntArray, expected: IntArray, base: IntArray, bps: int) -> BoolArray:
    """|paid - expected| <= bps / 10,000 of base, exactly (no float anywhere)."""
    diff = np.abs(paid - expected)
    if len(base) and (int(np.abs(base).max()) > 9 * 10**14 or int(diff.max()) > 9 * 10**14):
        # Beyond what int64 holds once multiplied: Python's integers, slowly but exactly.
        return np.array(
            [d * 10_000 <= bps * b for d, b in zip(diff.tolist(), base.tolist(), strict=True)],
            dtype=bool,
        )
    result: BoolArray = diff * 10_000 <= np.int64(bps) * base
    return result


def _matches_order(paid: IntArray, col: Columns, rules: Rules) -> BoolArray:
    """Whether ``paid`` is the order's amount within the tolerance, or its amount without the
    shipping or the tax that the settings let a payment leave out."""
    total, shipping, tax = col["order_amount"], col["shipping_amount"], col["tax_amount"]
    candidates = [total]
    if rules.net_shipping:
        candidates.append(total - shipping)
    if rules.net_tax:
        candidates.append(total - tax)
    if rules.net_shipping and rules.net_tax:
        candidates.append(total - shipping - tax)
    ok = np.zeros(len(total), dtype=bool)
    for expected in candidates:
        ok |= _within(paid, expected, total, rules.tolerance_bps)
    return ok


def _limit(currencies: npt.NDArray[Any], limits: Mapping[str, int]) -> tuple[BoolArray, IntArray]:
    """Per row: whether its currency has a limit, and the limit (0 where none)."""
    has = np.zeros(len(currencies), dtype=bool)
    limit = np.zeros(len(currencies), dtype=np.int64)
    for currency, value in limits.items():
        rows = currencies == currency
        has |= rows
        limit[rows] = value
    return has, limit


def _same_party(col: Columns) -> BoolArray:
    """Buyer and payer are one party: the same identity number in the same country, or, where
    either number is missing, the same name (ignoring case and spacing)."""
    buyer_id, payer_id = col["buyer_id"], col["payer_id"]
    same: BoolArray = (buyer_id == payer_id) & (col["buyer_country"] == col["payer_country"])
    by_name = (buyer_id == "") | (payer_id == "")
    buyer, payer = col["buyer_name"], col["payer_name"]
    same[by_name] = buyer[by_name] == payer[by_name]
    # Only names that differ as written are normalised (they are few).
    unsure = np.flatnonzero(by_name & ~same)
    if len(unsure):
        same[unsure] = normalised_names(buyer[unsure]) == normalised_names(payer[unsure])
    return same


def normalised_names(names: Iterable[str]) -> npt.NDArray[Any]:
    """Names compared as parties: case folded, runs of white space as one space, trimmed."""
    values = [" ".join(str(name or "").casefold().split()) for name in names]
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def masks(col: Columns, *, rules: Rules, now: datetime) -> IntArray:
    """Each row's reasons as a bit mask (bit n: ``CODES[n]``), from ``prepared`` columns."""
    n = len(col["order_no"])
    mask = np.zeros(n, dtype=np.int64)

    def flag(code: str, condition: BoolArray) -> None:
        nonlocal mask
        mask |= np.where(condition, _BIT[code], np.int64(0))

    has_order = col["order_id"] != ""
    has_payment = has_order & (col["payment_id"] != "")
    has_waybill = has_order & (col["waybill_id"] != "")
    has_customs = has_order & (col["customs_id"] != "")

    flag("order_missing", ~has_order)
    flag("payment_record_missing", has_order & ~has_payment)
    flag("waybill_missing", has_order & ~has_waybill)

    order_no = col["order_order_no"]
    flag(
        "order_no_mismatch",
        (has_order & (order_no != col["order_no"]))
        | (has_payment & (col["payment_order_no"] != order_no))
        | (has_waybill & (col["waybill_order_no"] != order_no))
        | (has_customs & (col["customs_order_no"] != order_no)),
    )
    flag(
        "waybill_no_mismatch",
        has_customs
        & has_waybill
        & (col["customs_waybill_no"] != "")
        & (col["customs_waybill_no"] != col["waybill_no"]),
    )

    # Money: the movement and the payment record against the order.
    order_currency = col["order_currency"]
    flag("currency_mismatch", has_order & (col["currency"] != order_currency))
    flag("payment_currency_mismatch", has_payment & (col["payment_currency"] != order_currency))
    amount, payment_amount = col["amount"], col["payment_amount"]
    flag(
        "amount_mismatch",
        has_order & (col["currency"] == order_currency) & ~_matches_order(amount, col, rules),
    )
    flag(
        "payment_amount_mismatch",
        has_payment
        & (col["payment_currency"] == order_currency)
        & ~_matches_order(payment_amount, col, rules),
    )

    # Dates: none in the future; the order first (equal times are in order).
    ordered, paid = col["ordered_at"], col["paid_at"]
    shipped, declared = col["shipped_at"], col["declared_at"]
    moment = np.datetime64(pd.Timestamp(now).tz_convert("UTC").tz_localize(None), "ns")
    future = np.zeros(n, dtype=bool)
    for present, times in (
        (has_order, ordered),
        (has_payment, paid),
        (has_waybill, shipped),
        (has_customs, declared),
    ):
        future |= present & (times > moment)
    flag("date_in_future", future)
    flag("paid_before_ordered", has_payment & (paid < ordered))
    flag("shipped_before_ordered", has_waybill & (shipped < ordered))
    flag("declared_before_ordered", has_customs & (declared < ordered))

    # Customs.
    required = np.isin(col["customs_mode"], sorted(rules.customs_required_modes))
    flag("customs_declaration_missing", has_order & ~has_customs & required)
    flag("customs_mode_mismatch", has_customs & (col["declared_mode"] != col["customs_mode"]))
    goods, total = col["goods_amount"], col["order_amount"]
    declared_value = col["customs_amount"]
    value_ok = _within(declared_value, goods, total, rules.tolerance_bps) | _within(
        declared_value, total, total, rules.tolerance_bps
    )
    flag(
        "customs_amount_mismatch",
        has_customs & ((col["customs_currency"] != order_currency) | ~value_ok),
    )

    # Parties.
    flag("payer_not_buyer", has_payment & ~_same_party(col))
    flag("buyer_denied", has_order & col["buyer_denied"])
    flag("payer_denied", has_payment & col["payer_denied"])
    flag("document_reused", has_order & col["document_reused"])

    # B2C limits, in the movement's currency.
    b2c = has_order & (col["trade_type"] == "B2C")
    capped, cap = _limit(col["currency"], rules.transaction_caps)
    flag("transaction_cap_exceeded", b2c & capped & (amount > cap))
    quoted, quota = _limit(col["currency"], rules.annual_quotas)
    flag("annual_quota_exceeded", b2c & has_payment & quoted & (col["payer_ytd"] + amount > quota))
    return mask


def codes_of(mask: int) -> tuple[str, ...]:
    """The reason codes of one mask, sorted."""
    return tuple(code for n, code in enumerate(CODES) if mask >> n & 1)


def outcome_of(mask: int) -> str:
    if mask & _REJECTING_MASK:
        return REJECTED
    return REVIEW if mask else VERIFIED


def verify(frame: pd.DataFrame, *, rules: Rules, now: datetime) -> pd.DataFrame:
    """Per row of ``frame`` (columns of ``COLUMNS``; missing ones read as absent): ``outcome``
    (``verified``, ``rejected``, ``review``), ``reasons`` (a tuple of codes, sorted) and
    ``mask`` (the same reasons as bits), on ``frame``'s index."""
    row_masks = masks(prepared(frame), rules=rules, now=now)
    # Few distinct masks however many rows: each is decoded once.
    distinct, inverse = np.unique(row_masks, return_inverse=True)
    outcomes = np.array([outcome_of(int(m)) for m in distinct], dtype=object)
    reasons = np.empty(len(distinct), dtype=object)
    reasons[:] = [codes_of(int(m)) for m in distinct]
    return pd.DataFrame(
        {"outcome": outcomes[inverse], "reasons": reasons[inverse], "mask": row_masks},
        index=frame.index,
    )


# --- inputs the documents do not carry --------------------------------------------------------


def _text(values: Iterable[str]) -> npt.NDArray[Any]:
    if isinstance(values, pd.Series):
        return values.fillna("").to_numpy(dtype=object)
    array = np.empty(0, dtype=object) if values is None else np.asarray(list(values), dtype=object)
    return array


def denied_flags(
    parties: Iterable[tuple[str, str, str]],
    *,
    names: Iterable[str],
    id_numbers: Iterable[str],
    countries: Iterable[str],
) -> BoolArray:
    """Whether each (name, id number, country) is a denied party. ``parties`` are (name,
    id_number, country): one with a number matches that number in its country (in any country
    when it names none); one without matches the name, ignoring case and spacing."""
    numbered: set[str] = set()
    anywhere: set[str] = set()
    named: set[str] = set()
    for name, id_number, country in parties:
        if id_number:
            (numbered.add(f"{id_number}\x1f{country}") if country else anywhere.add(id_number))
        else:
            named.add(str(normalised_names([name])[0]))
    ids = _text(id_numbers)
    result: BoolArray = np.zeros(len(ids), dtype=bool)
    if numbered:
        keyed = ids + "\x1f" + _text(countries)
        result |= pd.Series(keyed, dtype=object).isin(numbered).to_numpy()
    if anywhere:
        result |= pd.Series(ids, dtype=object).isin(anywhere).to_numpy() & (ids != "")
    if named:
        normal = normalised_names(_text(names))
        result |= pd.Series(normal, dtype=object).isin(named).to_numpy()
    return result


# A payer is its identity number in its country; with the currency, what a year to date sums by.
_PAYER_KEYS: Final = ("payer_country", "payer_id", "currency")


def payer_year_to_date(history: pd.DataFrame, payment_ids: Iterable[str]) -> IntArray:
    """What each payer paid in the calendar year (``QUOTA_TIME_ZONE``) before the payment
    ``payment_ids[i]``: the sum of the earlier payments in ``history`` (columns ``payment_id``,
    ``payer_id``, ``payer_country``, ``currency``, ``paid_at``, ``amount``) of the same payer,
    currency and year, earlier meaning a smaller (``paid_at``, ``payment_id``). A payment not in
    ``history`` has 0."""
    wanted = pd.Series(list(payment_ids), dtype=object)
    if history.empty:
        return np.zeros(len(wanted), dtype=np.int64)
    history = history.drop_duplicates("payment_id")
    paid_at = pd.DatetimeIndex(pd.to_datetime(history["paid_at"], utc=True))
    at = paid_at.asi8
    year = paid_at.tz_convert(QUOTA_TIME_ZONE).year.to_numpy()
    # The payer, the currency and the year as integer codes: a sort of integers, not of text.
    keys = [pd.factorize(history[name], use_na_sentinel=False)[0] for name in _PAYER_KEYS]
    ids = history["payment_id"].to_numpy(dtype=object)
    order = np.lexsort((at, year, *reversed(keys)))
    sorted_keys = [key[order] for key in (*keys, year)]
    sorted_at = at[order]
    # Payments of one payer at the same moment are ordered by id (as text): only those ties need
    # the ids' ranks.
    same_group = np.ones(len(order), dtype=bool)
    same_group[0] = False
    for key in sorted_keys:
        same_group[1:] &= key[1:] == key[:-1]
    if (same_group[1:] & (sorted_at[1:] == sorted_at[:-1])).any():
        rank = pd.factorize(ids, sort=True)[0]
        order = np.lexsort((rank, at, year, *reversed(keys)))
    amounts = history["amount"].to_numpy(dtype=np.int64)[order]
    # What came before in the whole sorted history, less what came before the group's first.
    before_all = np.cumsum(amounts) - amounts
    starts = np.flatnonzero(~same_group)
    group_start = starts[np.cumsum(~same_group) - 1]
    before = np.empty(len(order), dtype=np.int64)
    before[order] = before_all - before_all[group_start]
    where = pd.Index(ids).get_indexer(wanted)
    result: IntArray = np.where(where >= 0, before[where], 0).astype(np.int64)
    return result
