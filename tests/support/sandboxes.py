"""The bank sandbox as fixtures (a pytest plugin, see tests/conftest.py): a real HTTP server on
loopback whose payouts settle only when a test says so, and its control API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.sandbox.bank import BankSandbox
from tests.support.adapters import BANK_CLIENT_ID, BANK_SIGNING_KEY, SANDBOX_TIMEOUT, Control


@pytest.fixture
def bank() -> Iterator[BankSandbox]:
    # Payouts settle only when a test says so (the control API), not on the clock.
    with BankSandbox(
        timeout_seconds=SANDBOX_TIMEOUT,
        client_id=BANK_CLIENT_ID,
        signing_key=BANK_SIGNING_KEY,
        settle_delay_seconds=3600,
    ) as server:
        yield server


@pytest.fixture
def ctl(bank: BankSandbox) -> Iterator[Control]:
    control = Control(bank)
    yield control
    control.close()
