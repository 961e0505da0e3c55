"""One abstract class per capability. An adapter is a translator: each operation builds an httpx
request from a dataclass and reads the response back into one, through the client the hub gives
it (timeouts, host checks, retries, circuit breaker and the attempt log are the hub's)."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from datetime import date

from adapters.http import HubHttpClient
from adapters.interface import (
    InboundWebhook,
    PayinRequest,
    PayinResult,
    PayoutRequest,
    PayoutResult,
    RateQuote,
    ReferenceRate,
    RefundRequest,
    RefundResult,
    StatementFile,
    StatementRequest,
)
from adapters.manifest import Manifest


class Adapter(abc.ABC):
    manifest: Manifest

    def __init__(
        self, *, client: HubHttpClient, config: Mapping[str, str], secrets: Mapping[str, str]
    ):
        self.client = client
        self.config = config
        self.secrets = secrets


class PaymentInstitutionAdapter(Adapter):
    """A payment institution that collects buyers' payments (支付机构)."""

    @abc.abstractmethod
    def create_payin(self, request: PayinRequest) -> PayinResult:
        """Create a payment intent for ``request.reference``."""

    @abc.abstractmethod
    def get_payin(self, *, reference: str, provider_id: str | None) -> PayinResult:
        """Status sync: the provider's authoritative state of a payin."""

    @abc.abstractmethod
    def create_refund(self, request: RefundRequest) -> RefundResult: ...

    @abc.abstractmethod
    def get_refund(self, *, reference: str, provider_id: str | None) -> RefundResult: ...

    @abc.abstractmethod
    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> None:
        """Raise ``WebhookRejected`` unless ``body`` (the raw bytes, as received) is signed."""

    @abc.abstractmethod
    def parse_webhook(self, *, body: bytes) -> InboundWebhook:
        """Read a verified notification; raise ``MalformedResponse`` when it cannot be read."""


class BankAdapter(Adapter):
    """A bank that pays out, reports statements and deals FX."""

    @abc.abstractmethod
    def create_payout(self, request: PayoutRequest) -> PayoutResult: ...

    @abc.abstractmethod
    def get_payout(self, *, reference: str, provider_id: str | None) -> PayoutResult: ...

    @abc.abstractmethod
    def fetch_statement(self, request: StatementRequest) -> StatementFile: ...

    @abc.abstractmethod
    def dealing_quote(self, *, base: str, quote: str) -> RateQuote: ...


class RateSourceAdapter(Adapter):
    @abc.abstractmethod
    def rate_for_date(self, *, base: str, quote: str, on: date) -> ReferenceRate: ...


class WebhookRejected(Exception):
    """A notification whose signature, timestamp or form does not verify."""
