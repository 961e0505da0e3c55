"""Frozen dataclasses that cross the adapter boundary. Amounts are integer minor units with an
ISO 4217 code; times are aware datetimes; nothing here knows about Django."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal


class Outcome(enum.StrEnum):
    """Where an operation stands at the provider. ``unknown`` is a state, not an error: the hub
    keeps asking (status sync) until the provider says one of the others."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in (Outcome.SUCCEEDED, Outcome.FAILED)


@dataclass(frozen=True)
class Amount:
    minor: int
    currency: str

    def __post_init__(self) -> None:
        if self.minor < 0:
            raise ValueError("amounts crossing an adapter are never negative")
        if len(self.currency) != 3 or not self.currency.isupper():
            raise ValueError(f"not an ISO 4217 code: {self.currency!r}")


@dataclass(frozen=True)
class PayinRequest:
    reference: str  # the hub's id; the provider's idempotency key
    amount: Amount
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PayinResult:
    reference: str
    provider_id: str
    amount: Amount
    outcome: Outcome
    failure_code: str | None = None  # the hub's code, from the adapter's error table
    failure_reason: str | None = None  # the provider's own code and words


@dataclass(frozen=True)
class RefundRequest:
    reference: str
    payin_provider_id: str
    amount: Amount
    reason: str = ""


@dataclass(frozen=True)
class RefundResult:
    reference: str
    provider_id: str
    amount: Amount
    outcome: Outcome
    failure_code: str | None = None  # the hub's code, from the adapter's error table
    failure_reason: str | None = None  # the provider's own code and words


@dataclass(frozen=True)
class BankAccount:
    account_number: str
    account_name: str
    bank_code: str
    country: str


@dataclass(frozen=True)
class PayoutRequest:
    reference: str
    amount: Amount
    beneficiary: BankAccount
    remittance_info: str = ""


@dataclass(frozen=True)
class PayoutResult:
    reference: str
    provider_id: str | None
    amount: Amount
    outcome: Outcome
    failure_code: str | None = None
    failure_reason: str | None = None


@dataclass(frozen=True)
class StatementRequest:
    account: str
    date_from: date
    date_to: date


@dataclass(frozen=True)
class StatementFile:
    """A statement exactly as the bank produced it (camt.053 XML or CSV bytes)."""

    media_type: str
    content: bytes


@dataclass(frozen=True)
class RateQuote:
    base: str
    quote: str
    rate: Decimal  # units of ``quote`` per one unit of ``base``
    as_of: datetime
    source: str
    valid_until: datetime | None = None


@dataclass(frozen=True)
class ReferenceRate:
    base: str
    quote: str
    rate: Decimal
    date: date  # the date of the rate actually used (the last business day on or before)
    source: str


@dataclass(frozen=True)
class InboundWebhook:
    """A provider's notification after its signature was verified and its body parsed."""

    provider_event_id: str
    event_type: str
    object_type: str  # "payin" | "refund" | "payout"
    reference: str | None
    provider_id: str
    outcome: Outcome
    amount: Amount | None
    occurred_at: datetime
