"""What an adapter declares about itself, before the hub lets it near a participant."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from adapters.errors import Rejected


class Capability(enum.StrEnum):
    PAYMENT_INSTITUTION = "payment_institution"
    BANK_PAYOUTS = "bank_payouts"
    BANK_STATEMENTS = "bank_statements"
    DEALING_RATES = "dealing_rates"
    RATE_SOURCE = "rate_source"
    INSURER = "insurer"
    CREDIT_REGISTRY = "credit_registry"


@dataclass(frozen=True)
class ErrorRule:
    """How one provider error code reads to the hub."""

    hub_code: str
    retryable: bool = False  # the same request may succeed later (provider busy, limits)
    decline: bool = True  # a business decline to show the user, final for this request


@dataclass(frozen=True)
class ErrorTable:
    rules: dict[str, ErrorRule] = field(default_factory=dict)
    default: ErrorRule = ErrorRule(hub_code="counterparty_declined")

    def lookup(self, provider_code: str) -> ErrorRule:
        return self.rules.get(provider_code, self.default)

    def rejected(self, provider_code: str, message: str) -> Rejected:
        rule = self.lookup(provider_code)
        error = Rejected(message, hub_code=rule.hub_code, provider_code=provider_code)
        error.retryable = rule.retryable  # the table's word, not the class default
        return error


@dataclass(frozen=True)
class Manifest:
    name: str  # the entry-point name, e.g. "stripe_like"
    version: str
    display_name: str
    capabilities: frozenset[Capability]
    currencies: frozenset[str]
    corridors: frozenset[tuple[str, str]]  # (payer country, payee country)
    auth_scheme: str  # "bearer", "hmac", "mtls", "none"
    # Operations the provider deduplicates by our reference, so that a retry cannot do twice.
    idempotent_operations: frozenset[str]
    errors: ErrorTable = ErrorTable()
    # Credential fields the adapter needs; their values are encrypted at rest and redacted in logs.
    secret_fields: frozenset[str] = frozenset()
    config_fields: frozenset[str] = frozenset({"base_url"})

    def is_idempotent(self, operation: str) -> bool:
        return operation in self.idempotent_operations

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities
