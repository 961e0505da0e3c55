"""The adapter error tree. What an outbound call can end in, from the hub's point of view:

- ``CounterpartyUnavailable``: the institution did not take the request (connection refused,
  circuit open, 429); nothing happened there, trying later is safe.
- ``AdapterTimeout`` / ``UnknownOutcome``: the request may have landed; the hub must not guess and
  resolves it by a status sync. A timeout on an operation that is idempotent at the provider is
  retried instead.
- ``Rejected``: a business decline the user sees (insufficient funds, account closed), with the
  hub's code and the provider's.
- ``IntegrityMismatch``: the provider reported another amount or currency than was asked; the
  result is held for an operator, never booked.
- ``HostNotAllowed`` / ``AdapterMisconfigured``: the hub refused to make the call.
"""

from __future__ import annotations


class AdapterError(Exception):
    code = "adapter_error"
    retryable = False

    def __init__(self, message: str, *, provider_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider_code = provider_code


class CounterpartyUnavailable(AdapterError):
    code = "counterparty_unavailable"
    retryable = True


class UnknownOutcome(AdapterError):
    code = "counterparty_outcome_unknown"


class AdapterTimeout(UnknownOutcome):
    code = "counterparty_timeout"


class Rejected(AdapterError):
    code = "counterparty_rejected"

    def __init__(self, message: str, *, hub_code: str, provider_code: str | None = None) -> None:
        super().__init__(message, provider_code=provider_code)
        self.hub_code = hub_code


class IntegrityMismatch(AdapterError):
    code = "counterparty_integrity_mismatch"


class MalformedResponse(UnknownOutcome):
    """The provider answered, but not in a form the adapter understands; the outcome is unknown."""

    code = "counterparty_malformed_response"


class OperationNotFound(AdapterError):
    """A status sync found no such operation at the provider (it never arrived, or not yet)."""

    code = "counterparty_operation_not_found"


class HostNotAllowed(AdapterError):
    code = "counterparty_host_not_allowed"


class AdapterMisconfigured(AdapterError):
    code = "adapter_misconfigured"
