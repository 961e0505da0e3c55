"""The hook an adapter implements so that the conformance kit can test it, and the drivers it hands
back: one small object per capability that does at the sandbox what a real buyer, bank clerk or
clock would do (pay, settle a payout, reject it).

An adapter class opts in with a classmethod::

    class MyBankAdapter(BankAdapter):
        manifest = Manifest(name="my_bank", ...)

        @classmethod
        def conformance_sandbox(cls) -> SandboxHandle:
            server = MyBankSandbox(timeout_seconds=3).start()
            return SandboxHandle(
                base_url=server.base_url,
                config={"base_url": server.base_url},
                credentials={"api_key": "sandbox-key"},
                driver=MyBankDriver(server),
                stop=server.stop,
            )

The kit calls it once per run, builds the adapter exactly as the hub would (``config`` and
``credentials`` are what an operator would POST to ``/v1/adapter_connections``), runs the checks
of every capability in the manifest, and calls ``stop()`` at the end.

Nothing here imports the hub or pytest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol, runtime_checkable

HOOK = "conformance_sandbox"

# The kit's client gives up reading after ``FAULT_READ_TIMEOUT`` seconds when it provokes a lost
# answer (``CALL_READ_TIMEOUT`` otherwise), so a sandbox must hold a "timeout" connection longer
# than that: 2 s or more (``SandboxServer(timeout_seconds=...)``).
FAULT_READ_TIMEOUT = 0.5
CALL_READ_TIMEOUT = 10.0

# Faults the kit queues for a create. Both mean "the request was processed, then the answer was
# lost": a read timeout, and a 500 sent after the object was created (``adapters.sandbox.base``).
CREATE_FAULTS = ("timeout_after", "http_500_after")

# How old a "stale" notification is: an adapter's signature tolerance must be shorter.
STALE_SECONDS = 3600


def _nothing() -> None:
    return None


@dataclass
class SandboxHandle:
    """A started sandbox institution, and what the kit needs to test an adapter against it."""

    # Exactly the manifest's ``config_fields`` and ``secret_fields``.
    config: dict[str, str]
    credentials: dict[str, str]
    # An object implementing the driver protocol of each capability in the manifest (and
    # ``FaultDriver`` where the sandbox injects faults).
    driver: object
    # Where the sandbox listens; the kit's client allows only this host. ``None`` for an adapter
    # that makes no HTTP call (a rate source reading offline data).
    base_url: str | None = None
    stop: Callable[[], None] = field(default=_nothing)

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Notification:
    """A webhook exactly as the hub's endpoint would receive it: headers and the raw body."""

    headers: dict[str, str]
    body: bytes


@runtime_checkable
class PaymentDriver(Protocol):
    """Controls of a payment institution's sandbox (``Capability.PAYMENT_INSTITUTION``)."""

    currency: str  # a currency the sandbox collects in

    def pay(self, *, provider_id: str) -> None:
        """The buyer pays the payin (it becomes ``succeeded`` at the institution)."""

    def notification(self, *, provider_id: str, age_seconds: int = 0) -> Notification:
        """The latest notification the institution sent about the payin, as delivered; with
        ``age_seconds``, the same event delivered again, signed that many seconds ago."""
        ...


@runtime_checkable
class BankDriver(Protocol):
    """Controls of a bank's sandbox (``BANK_PAYOUTS``, ``BANK_STATEMENTS``, ``DEALING_RATES``)."""

    currency: str  # a currency the bank pays out in
    statement_account: str  # the account payouts in ``currency`` are debited from
    quote_pair: tuple[str, str]  # (base, quote) the bank deals

    def complete_payout(self, *, reference: str, provider_id: str | None) -> None:
        """The bank settles the payout now (completed, booked on today's statement)."""

    def reject_payout(self, *, reference: str, provider_id: str | None) -> None:
        """The bank rejects the payout now (e.g. the creditor's account is closed)."""


@runtime_checkable
class RateSourceDriver(Protocol):
    """What the kit asks a rate source for (``Capability.RATE_SOURCE``)."""

    pair: tuple[str, str]  # (base, quote)
    business_day: date  # a weekday with a published rate; its weekend falls back to that week


@runtime_checkable
class FaultDriver(Protocol):
    """Optional: a sandbox that injects faults (every ``adapters.sandbox.base`` sandbox does)."""

    def inject_fault(self, *, operation: str, fault: str) -> None:
        """Make the next ``operation`` (the adapter method: ``create_payin``, ``create_payout``)
        misbehave with ``fault``, one of ``CREATE_FAULTS``."""

    def count(self, *, reference: str) -> int:
        """How many payins or payouts the sandbox holds for the hub's ``reference``."""
        ...
